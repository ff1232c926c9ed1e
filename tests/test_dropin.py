"""This package's Swin as a drop-in for mmdet's and mmseg's: every Swin backbone dict of their installed
configs, with only ``type`` switched, builds and gives their Swin's outputs from weights their Swin wrote
(as a whole-model checkpoint) and mmengine's ``load_checkpoint`` loaded. The configs are found by walking
the packages' own ``.mim/configs``, not from a list."""
import importlib
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint

from .helpers import WholeModel, randomize_, scaled_diff, whole_model_checkpoint

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
