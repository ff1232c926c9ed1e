"""This package's Swin as a drop-in for mmdet's and mmseg's: every Swin backbone dict of their installed
configs, with only ``type`` switched, builds and gives their Swin's outputs from weights their Swin wrote
(as a whole-model checkpoint) and mmengine's ``load_checkpoint`` loaded, and mmengine's optimizer constructor
gives every backbone parameter the same learning rate and weight decay under each config's ``optim_wrapper``
(its ``paramwise_cfg.custom_keys`` name mmdet's module paths). The configs are found by walking the packages'
own ``.mim/configs``, not from a list."""
import copy
import importlib
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from swin_backbones.checkpoint import read_checkpoint as read_checkpoint_safely

from .helpers import WholeModel, randomize_, scaled_diff, to_mmdet_keys, whole_model_checkpoint

PACKAGES = ('mmdet', 'mmseg')
THEIR_TYPE = 'SwinTransformer'
OUR_TYPE = 'swin_backbones.SwinTransformer'
REL = 1e-4  # the same weights and the same function: float32 rounding over up to 24 blocks
ODD_SIZE = (97, 75)
TINY = dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8])


def config_root(package: str) -> str:
    return osp.join(osp.dirname(importlib.import_module(package).__file__), '.mim', 'configs')


def candidate_config_files(package: str):
    """The config files of ``package`` that can hold a Swin backbone: those that name SwinTransformer and,
    until none is added, those that name one of them (a child names its ``_base_`` files). Only these are
    parsed, which takes seconds instead of minutes."""
    texts = {}
    for folder, _, names in os.walk(config_root(package)):
        for name in names:
            if name.endswith('.py'):
                with open(osp.join(folder, name)) as file:
                    texts[osp.join(folder, name)] = file.read()
    found = {path for path, text in texts.items() if THEIR_TYPE in text}
    while True:
        stems = {osp.splitext(osp.basename(path))[0] for path in found}
        added = {path for path, text in texts.items() if path not in found and any(stem in text for stem in stems)}
        if not added:
            return sorted(found)
        found |= added


def swin_dicts_in(model_cfg):
    """Every dict of type SwinTransformer in a (nested) model config."""
    if isinstance(model_cfg, dict):
        if str(model_cfg.get('type', '')).rsplit('.', 1)[-1] == THEIR_TYPE:
            yield model_cfg
        for value in model_cfg.values():
            yield from swin_dicts_in(value)
    elif isinstance(model_cfg, (list, tuple)):
        for value in model_cfg:
            yield from swin_dicts_in(value)


def without_weights(backbone_cfg: dict) -> dict:
    """The dict without its pretrained weights (URLs; the test writes its own)."""
    return {key: value for key, value in backbone_cfg.items() if key not in ('init_cfg', 'pretrained')}


def swin_backbones_of(package: str):
    """{repr: (backbone dict, [config files])}: the distinct Swin backbone dicts of the package's configs."""
    found = {}
    for path in candidate_config_files(package):
        if f'{osp.sep}_base_{osp.sep}' in path:
            continue  # fragments; the configs that use them are parsed whole
        model_cfg = Config.fromfile(path).to_dict().get('model', {})
        for backbone_cfg in swin_dicts_in(model_cfg):
            backbone_cfg = without_weights(backbone_cfg)
            found.setdefault(repr(sorted(backbone_cfg.items())), (backbone_cfg, []))[1].append(path)
    return found


def build(package: str, backbone_cfg: dict) -> nn.Module:
    """As the package's config would build it: its registry, under its default scope."""
    registry = importlib.import_module(f'{package}.registry').MODELS
    with DefaultScope.overwrite_default_scope(package):
        return registry.build(dict(backbone_cfg))


def relative_difference(package: str, backbone_cfg: dict, folder, seed: int) -> float:
    """Their Swin with random weights, saved as a whole model; ours, switched by ``type`` only, loaded by
    mmengine's load_checkpoint; the largest output difference relative to their output's magnitude."""
    theirs = randomize_(build(package, backbone_cfg), seed)
    theirs.eval()  # not chained: their train() returns None
    path = osp.join(folder, f'{package}_whole_model.pth')
    whole_model_checkpoint(path, theirs)
    model = WholeModel(build(package, dict(backbone_cfg, type=OUR_TYPE)))
    load_checkpoint(model, path)
    os.remove(path)
    image = torch.randn(1, backbone_cfg.get('in_channels', 3), *ODD_SIZE, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return scaled_diff(model.backbone.eval()(image), theirs(image))


@pytest.mark.parametrize('package, config', [
    ('mmdet', 'swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'),
    ('mmseg', 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'),
])
def test_a_representative_config_backbone_scaled_down(package, config, tmp_path):
    """The quick stand-in for the test below: one config of each, its backbone dict at a tenth of the width."""
    backbone_cfg, = swin_dicts_in(Config.fromfile(osp.join(config_root(package), config)).to_dict()['model'])
    assert relative_difference(package, dict(without_weights(backbone_cfg), **TINY), str(tmp_path), seed=1) <= REL


@pytest.mark.slow
def test_every_swin_backbone_of_mmdet_and_mmseg_configs(tmp_path):
    results, failures = [], []
    for package in PACKAGES:
        found = swin_backbones_of(package)
        assert found, f'no Swin backbone found in the configs under {config_root(package)}'
        for seed, (backbone_cfg, configs) in enumerate(found.values()):
            try:
                difference = relative_difference(package, backbone_cfg, str(tmp_path), seed)
            except Exception as error:  # reported with the others below
                failures.append(f'{package} {osp.relpath(configs[0], config_root(package))}: '
                                f'{type(error).__name__}: {error}')
                continue
            results.append((difference, package, configs))
            if difference > REL:
                failures.append(f'{package} {osp.relpath(configs[0], config_root(package))}: relative difference '
                                f'{difference:.1e}')
    counts = {package: sum(1 for _, p, _ in results if p == package) for package in PACKAGES}
    files = sum(len(configs) for _, _, configs in results)
    worst = max(results)
    print(f'\n{len(results)} distinct Swin backbone dicts checked ({counts["mmdet"]} in mmdet\'s configs, '
          f'{counts["mmseg"]} in mmseg\'s), used by {files} config files; worst relative difference '
          f'{worst[0]:.1e} ({worst[1]} {osp.relpath(worst[2][0], config_root(worst[1]))})')
    assert not failures, '\n'.join(failures)


# ------------------------------------------------------------------------------------- optimizer groups
def parameter_settings(model: nn.Module, optim_wrapper_cfg: dict) -> dict:
    """{parameter name: (lr, weight decay)} as mmengine's optimizer constructor sets them for ``model`` under
    a config's ``optim_wrapper`` (its AMP wrapper replaced by the plain one: the groups are the same)."""
    cfg = copy.deepcopy(optim_wrapper_cfg)
    cfg['type'] = 'OptimWrapper'
    for amp_only in ('loss_scale', 'dtype', 'use_fsdp'):
        cfg.pop(amp_only, None)
    optimizer = build_optim_wrapper(model, cfg).optimizer
    settings = {id(param): (group['lr'], group.get('weight_decay', 0.0))
                for group in optimizer.param_groups for param in group['params']}
    return {name: settings.get(id(param)) for name, param in model.named_parameters()}


def optimizer_differences(package: str, backbone_cfg: dict, optim_wrapper_cfg: dict):
    """The backbone parameters whose (lr, weight decay) differ between their Swin and ours, by mmdet's names."""
    theirs = parameter_settings(WholeModel(build(package, backbone_cfg)), optim_wrapper_cfg)
    ours = parameter_settings(WholeModel(build(package, dict(backbone_cfg, type=OUR_TYPE))), optim_wrapper_cfg)
    ours = {'backbone.' + key: value for key, value in to_mmdet_keys(
        {name[len('backbone.'):]: value for name, value in ours.items() if name.startswith('backbone.')},
        buffers=False).items()}
    theirs = {name: value for name, value in theirs.items() if name.startswith('backbone.')}
    assert set(ours) == set(theirs)
    return {name: (theirs[name], ours[name]) for name in theirs if theirs[name] != ours[name]}, theirs


def test_optimizer_groups_of_a_mask2former_config_scaled_down():
    """The quick stand-in for the sweep below: custom keys on mmdet's module paths
    (``backbone.stages.{i}.blocks.{j}.norm``, ``backbone.stages.{i}.downsample.norm``, ...)."""
    cfg = Config.fromfile(osp.join(config_root('mmdet'), 'mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py'))
    backbone_cfg, = swin_dicts_in(cfg.to_dict()['model'])
    differences, theirs = optimizer_differences('mmdet', dict(without_weights(backbone_cfg), **TINY),
                                                cfg.optim_wrapper.to_dict())
    assert differences == {}
    # The custom keys did apply: block and merging norms without decay and a tenth of the learning rate.
    base_lr = cfg.optim_wrapper.optimizer.lr
    assert theirs['backbone.stages.1.blocks.0.norm1.weight'] == (base_lr * 0.1, 0.0)
    assert theirs['backbone.stages.0.downsample.norm.weight'] == (base_lr * 0.1, 0.0)
    assert theirs['backbone.stages.0.blocks.0.attn.w_msa.qkv.weight'][1] > 0


def configs_with_swin(package: str):
    """{(backbone dict repr, optim_wrapper repr): (backbone dict, optim_wrapper dict, [config files])}."""
    found = {}
    for path in candidate_config_files(package):
        if f'{osp.sep}_base_{osp.sep}' in path:
            continue
        cfg = Config.fromfile(path).to_dict()
        optim_wrapper = cfg.get('optim_wrapper')
        for backbone_cfg in swin_dicts_in(cfg.get('model', {})):
            if optim_wrapper is None:
                continue
            backbone_cfg = without_weights(backbone_cfg)
            key = (repr(sorted(backbone_cfg.items())), repr(optim_wrapper))
            found.setdefault(key, (backbone_cfg, optim_wrapper, []))[2].append(path)
    return found


@pytest.mark.slow
def test_every_swin_config_of_mmdet_and_mmseg_gives_the_same_optimizer_groups():
    failures, checked, with_custom_keys = [], 0, 0
    for package in PACKAGES:
        found = configs_with_swin(package)
        assert found, f'no config with a Swin backbone and an optim_wrapper under {config_root(package)}'
        for backbone_cfg, optim_wrapper, configs in found.values():
            name = f'{package} {osp.relpath(configs[0], config_root(package))}'
            try:
                differences, _ = optimizer_differences(package, backbone_cfg, optim_wrapper)
            except Exception as error:  # reported with the others below
                failures.append(f'{name}: {type(error).__name__}: {error}')
                continue
            checked += 1
            with_custom_keys += bool(optim_wrapper.get('paramwise_cfg', {}).get('custom_keys'))
            if differences:
                failures.append(f'{name}: {len(differences)} parameters differ, e.g. {next(iter(differences.items()))}')
    print(f'\n{checked} distinct (Swin backbone, optim_wrapper) pairs of mmdet\'s and mmseg\'s configs, '
          f'{with_custom_keys} with custom keys: the same lr and weight decay for every backbone parameter')
    assert not failures, '\n'.join(failures)


# ---------------------------------------------------------------------------------------------- end to end
TOY_SWIN = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=7, drop_path_rate=0.0,
                out_indices=(0, 1, 2, 3))


def toy_config_with(folder, name: str, base: str, backbone_type: str) -> str:
    """A config of ``base`` whose backbone is a toy Swin of ``backbone_type``: the two only differ by it."""
    path = osp.join(folder, f'{name}.py')
    with open(path, 'w') as file:
        file.write(f'_base_ = {base!r}\n'
                   f'model = dict(backbone=dict(_delete_=True, type={backbone_type!r}, **{TOY_SWIN!r}))\n')
    return path


def metrics_in(log: str) -> dict:
    import re
    return {name: float(value) for name, value in re.findall(r'coco/(\w+): (-?[\d.]+)', log)}


@pytest.mark.slow
def test_mmdet_test_py_with_a_checkpoint_of_mmdets_own_swin(tmp_path):
    """mmdet's own train.py trains a toy Mask R-CNN with mmdet's Swin; mmdet's own test.py then evaluates its
    checkpoint with that config and with the config switched to this package's Swin by ``type`` only:
    the same metrics and the same detections."""
    import pickle
    import sys

    from .helpers import MIM_TOOLS, TOY_CONFIGS, check, make_small_toy_data, run, short_run_options
    toy_data = make_small_toy_data(str(tmp_path / 'toy_data'))
    theirs = toy_config_with(str(tmp_path), 'mmdet_swin', TOY_CONFIGS['det', 'swin'], THEIR_TYPE)
    ours = toy_config_with(str(tmp_path), 'our_swin', TOY_CONFIGS['det', 'swin'], OUR_TYPE)
    check(run([sys.executable, osp.join(MIM_TOOLS['mmdet'], 'train.py'), theirs, '--work-dir', tmp_path / 'train',
               '--cfg-options', *short_run_options(iters=40, val=False)], toy_data))
    checkpoint = tmp_path / 'train' / 'iter_40.pth'
    logs, predictions = {}, {}
    for name, config in (('theirs', theirs), ('ours', ours)):
        out = tmp_path / f'{name}.pkl'
        logs[name] = check(run([sys.executable, osp.join(MIM_TOOLS['mmdet'], 'test.py'), config, checkpoint,
                                '--work-dir', tmp_path / name, '--out', out], toy_data))
        with open(out, 'rb') as file:
            predictions[name] = pickle.load(file)
    assert "SwinTransformer at 'backbone': loaded the state dict under 'backbone.' (mmdet layout" in logs['ours']
    assert metrics_in(logs['theirs']) and metrics_in(logs['ours']) == metrics_in(logs['theirs'])
    print('\nmetrics with either Swin:', metrics_in(logs['ours']))
    assert len(predictions['ours']) == len(predictions['theirs']) == 8
    assert sum(len(prediction['pred_instances']['scores']) for prediction in predictions['theirs']) > 0
    for mine, reference in zip(predictions['ours'], predictions['theirs']):
        mine, reference = mine['pred_instances'], reference['pred_instances']
        assert torch.equal(mine['labels'], reference['labels'])
        assert torch.allclose(mine['scores'], reference['scores'], rtol=1e-4, atol=1e-5)
        assert torch.allclose(mine['bboxes'], reference['bboxes'], rtol=1e-4, atol=1e-2)


def resumed(config: str, checkpoint: str):
    """What ``--resume`` does with a checkpoint (mmengine's Runner.resume): the config's model loads its weights,
    then the optimizer built from the config's ``optim_wrapper`` loads its state; returns (model, optim wrapper)."""
    cfg = Config.fromfile(config)
    model = build('mmdet', cfg.model)
    load_checkpoint(model, checkpoint)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    optim_wrapper.load_state_dict(read_checkpoint_safely(checkpoint)['optimizer'])
    return model, optim_wrapper


@pytest.mark.slow
def test_resuming_a_run_of_mmdets_swin_continues_it_exactly(tmp_path):
    """mmdet's train.py runs a toy Mask R-CNN with mmdet's Swin for 2 iterations (AdamW) and saves it; resumed
    with mmdet's Swin and with the config switched to ours, every backbone parameter gets the same AdamW moments
    (the same parameter order, the merging layers' channels in mmdet's order), and one more step from the same
    gradients gives the same weights, bit for bit."""
    import sys

    from .helpers import MIM_TOOLS, TOY_CONFIGS, check, make_small_toy_data, run, short_run_options
    toy_data = make_small_toy_data(str(tmp_path / 'toy_data'))
    configs = {name: toy_config_with(str(tmp_path), name, TOY_CONFIGS['det', 'swin'], backbone_type)
               for name, backbone_type in (('theirs', THEIR_TYPE), ('ours', OUR_TYPE))}
    check(run([sys.executable, osp.join(MIM_TOOLS['mmdet'], 'train.py'), configs['theirs'], '--work-dir',
               tmp_path / 'run', '--cfg-options', *short_run_options(iters=2, val=False)], toy_data))
    checkpoint = str(tmp_path / 'run' / 'iter_2.pth')
    models, wrappers, params = {}, {}, {}
    for name, config in configs.items():
        models[name], wrappers[name] = resumed(config, checkpoint)
        named = dict(models[name].backbone.named_parameters())
        params[name] = named if name == 'theirs' else to_mmdet_keys(named, buffers=False)
    assert list(params['ours']) == list(params['theirs'])  # mmdet's order, so the saved moments map by position
    for key, theirs in params['theirs'].items():
        assert torch.equal(theirs, params['ours'][key]), key  # each weight as saved, channels in the same order
        state, state_ours = wrappers['theirs'].optimizer.state[theirs], wrappers['ours'].optimizer.state[params['ours'][key]]
        assert torch.equal(state['exp_avg'], state_ours['exp_avg']), key
        assert torch.equal(state['exp_avg_sq'], state_ours['exp_avg_sq']), key
    merging = [params['theirs'][key] for key in params['theirs'] if '.downsample.' in key]
    # The merging layers were trained: their moments are not trivially equal.
    assert merging and all(wrappers['theirs'].optimizer.state[param]['exp_avg'].abs().sum() > 0 for param in merging)
    generator = torch.Generator().manual_seed(0)
    for key, theirs in params['theirs'].items():
        gradient = torch.randn(theirs.shape, generator=generator)
        theirs.grad, params['ours'][key].grad = gradient.clone(), gradient.clone()
    for name, wrapper in wrappers.items():
        for param in models[name].parameters():
            if param.grad is None:
                param.grad = torch.zeros_like(param)
        wrapper.optimizer.step()
    for key, theirs in params['theirs'].items():
        assert torch.equal(theirs, params['ours'][key]), key


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_inferencers_load_a_checkpoint_of_their_own_swin(task, tmp_path):
    """DetInferencer / MMSegInferencer(weights=...) with a whole-model checkpoint of mmdet's / mmseg's Swin
    and the config switched to this package's: the backbone gives their Swin's outputs."""
    from .helpers import TOY_CONFIGS
    package = 'mmdet' if task == 'det' else 'mmseg'
    theirs_cfg = Config.fromfile(toy_config_with(str(tmp_path), 'theirs', TOY_CONFIGS[task, 'swin'], THEIR_TYPE))
    model = randomize_(build(package, theirs_cfg.model), seed=3)
    model.eval()
    checkpoint = str(tmp_path / 'whole.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    ours_config = toy_config_with(str(tmp_path), 'ours', TOY_CONFIGS[task, 'swin'], OUR_TYPE)
    if task == 'det':
        from mmdet.apis import DetInferencer as Inferencer
    else:
        from mmseg.apis import MMSegInferencer as Inferencer
    with DefaultScope.overwrite_default_scope(package):  # the inferencer sets its scope and leaves it
        inferencer = Inferencer(model=ours_config, weights=checkpoint, device='cpu')
    backbone = inferencer.model.backbone
    assert type(backbone).__module__.startswith('swin_backbones.')
    image = torch.randn(1, 3, *ODD_SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert scaled_diff(backbone.eval()(image), model.backbone(image)) <= REL
