"""The configs under configs/: they load through mmdet's/mmseg's base configs, build the models their metafile
entries describe (the backbone they name, the parameters they record), and exempt from weight decay what they
say. The published training recipes themselves are checked field by field against the authors' files in
test_recipes.py, the published figures against the metafiles' counts in test_model_index.py."""
import argparse
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import DefaultScope

from swin_backbones.api import list_backbones
from swin_backbones.model_index import load_model_index
from swin_backbones.registry import registered_backbones

from .helpers import CONFIGS, build, build_on_meta, count_parameters, load, load_cached, read_config

# The model index (configs/*/metafile.yml) is the one record of each config's backbone and parameter count:
# {config path under configs/: metafile entry}.
INDEXED = {osp.relpath(model['Config'], 'configs'): model
           for model in load_model_index(osp.join(osp.dirname(CONFIGS), 'model-index.yml'))['Models']}
TOY = sorted(osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, 'toy', '*.py')))
SWINV2 = [name for name in INDEXED if name.startswith('swinv2/')]


def _ids(names):
    return [osp.basename(name) for name in names]


def test_every_config_is_indexed_or_a_toy():
    found = {osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))}
    assert found == set(INDEXED) | set(TOY)
    assert len(TOY) == 9


def test_parameter_counts_are_counted_from_the_built_model():
    """The counts below come from models built on the meta device: the same modules as on the CPU."""
    name = 'crossformer/retinanet_crossformer-s-g7_fpn_1x_coco.py'
    on_cpu = build(load(name))
    on_meta = build_on_meta(name)
    assert [(n, p.shape) for n, p in on_cpu.named_parameters()] == [(n, p.shape) for n, p in on_meta.named_parameters()]
    assert count_parameters(on_cpu) == INDEXED[name]['Metadata']['Parameters']
    assert all(p.is_meta for p in on_meta.parameters()) and not any(p.is_meta for p in on_cpu.parameters())


@pytest.mark.parametrize('name', list(INDEXED), ids=_ids(INDEXED))
def test_parameter_count_is_the_metafiles(name):
    """Every parameter of the whole model (80 COCO classes, 150 ADE20K classes, auxiliary heads included); the
    metafile's count is what the model zoo tables show (python tools/model_index.py NAME recounts it)."""
    assert count_parameters(build_on_meta(name)) == INDEXED[name]['Metadata']['Parameters']


@pytest.mark.parametrize('name', list(INDEXED), ids=_ids(INDEXED))
def test_backbone_is_the_metafiles(name):
    """The metafile's ``Backbone`` is the create_backbone name of the config's backbone class and arch, and the
    built backbone has that preset's parameters (with the config's output stages, which have norms in Swin)."""
    presets = {preset: (backbone_type, arch) for backbone_type in registered_backbones()
               for preset, arch in backbone_type.presets.items()}
    backbone_name = INDEXED[name]['Metadata']['Backbone']
    assert backbone_name in list_backbones()
    backbone_type, arch = presets[backbone_name]
    backbone = build_on_meta(name).backbone
    assert type(backbone) is backbone_type and load_cached(name).model.backbone.arch == arch
    with torch.device('meta'):
        preset = backbone_type(arch=arch, out_indices=backbone.out_indices)
    assert count_parameters(backbone) == count_parameters(preset)


@pytest.mark.parametrize('name', [n for n in INDEXED if '-pp-' in n], ids=_ids(n for n in INDEXED if '-pp-' in n))
def test_crossformer_pp_configs_build(name):
    cfg = load_cached(name)
    backbone = build_on_meta(name).backbone
    assert type(backbone).__name__ == 'CrossFormer'
    assert cfg.model.backbone.arch == 'pp-small'
    assert (backbone.lda_type, backbone.use_acl, backbone.adaptive_interval) == ('pp', True, False)
    assert any(n.endswith('ex_conv.weight') for n, _ in backbone.named_parameters())  # ACL blocks


@pytest.mark.parametrize('name', SWINV2, ids=_ids(SWINV2))
def test_swinv2_configs_fine_tune_at_window_16_from_window_8_checkpoints(name):
    model = build_on_meta(name)
    assert type(model.backbone).__name__ == 'SwinTransformerV2'
    assert model.backbone.window_sizes == (16,) * 4 and model.backbone.pretrained_window_sizes == (8,) * 4
    assert load_cached(name).model.backbone.init_cfg is None  # load() drops the authors' checkpoint
    checkpoint = read_config(name).model.backbone.init_cfg.checkpoint
    assert checkpoint == f'checkpoints/swinv2_{model.backbone.arch}_patch4_window8_256.pth'


# ------------------------------------------------------------------------------- SwinV2 recipes
# SwinV2 has no published detection or segmentation recipe: its configs take the Swin ones (test_recipes.py
# holds those to the authors' files) with the SwinV2 backbone.
def _scheduler(cfg, kind):
    found = [s for s in cfg.param_scheduler if s.type == kind]
    assert len(found) == 1, cfg.param_scheduler
    return found[0]


@pytest.mark.parametrize('name, swin, epochs, steps', [
    ('swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-1x_coco.py', 'swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py',
     12, [8, 11]),
    ('swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-3x_coco.py', 'swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py',
     36, [27, 33]),
    ('swinv2/mask-rcnn_swinv2-s-p4-w16_fpn_ms-crop-1x_coco.py', 'swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py',
     12, [8, 11]),
    ('swinv2/mask-rcnn_swinv2-s-p4-w16_fpn_ms-crop-3x_coco.py', 'swin/mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco.py',
     36, [27, 33]),
])
def test_swinv2_detection_recipe_is_swins(name, swin, epochs, steps):
    cfg, swin_cfg = load_cached(name), load_cached(swin)
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'MaskRCNN'
    assert cfg.custom_imports == dict(imports=['swin_backbones'], allow_failed_imports=False)
    assert cfg.optim_wrapper.optimizer == swin_cfg.optim_wrapper.optimizer
    assert cfg.param_scheduler == swin_cfg.param_scheduler
    assert (cfg.train_cfg.max_epochs, _scheduler(cfg, 'MultiStepLR').milestones) == (epochs, steps)
    assert cfg.train_dataloader == swin_cfg.train_dataloader  # multi-scale with the crop step, batch 2
    assert cfg.auto_scale_lr == swin_cfg.auto_scale_lr
    assert cfg.model.backbone.drop_path_rate == 0.2


@pytest.mark.parametrize('name', ['swinv2/swinv2-tiny-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
                                  'swinv2/swinv2-base-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'])
def test_swinv2_segmentation_recipe_is_swins(name):
    cfg = load_cached(name)
    swin_cfg = load_cached('swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
    assert cfg.default_scope == 'mmseg'
    for key in ('param_scheduler', 'train_cfg', 'train_dataloader', 'test_pipeline', 'crop_size', 'auto_scale_lr'):
        assert cfg[key] == swin_cfg[key], key
    assert cfg.optim_wrapper.optimizer == swin_cfg.optim_wrapper.optimizer
    assert cfg.model.decode_head.type == 'UPerHead' and cfg.model.auxiliary_head.in_index == 2
    assert cfg.model.backbone.drop_path_rate == 0.3


# ----------------------------------------------------------------------------------- weight decay
def _decay_free(cfg: Config, model: torch.nn.Module):
    """Names of the parameters that a built optimizer gives weight decay 0, and the decay of the others."""
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    free, decays = set(), set()
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            if group['weight_decay'] == 0:
                free.add(names[id(param)])
            else:
                decays.add(group['weight_decay'])
    return free, decays


def _backbone_layer_norms(model):
    return {f'backbone.{n}.{p}' for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.LayerNorm)
            for p in ('weight', 'bias')}


@pytest.mark.parametrize('name', ['swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py',
                                  'swin/cascade-mask-rcnn_swin-b-p4-w7_fpn_4conv1f-giou_ms-crop-3x_coco.py',
                                  'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'])
def test_swin_weight_decay_exemptions(name):
    """The authors' 'absolute_pos_embed', 'relative_position_bias_table' and 'norm' keys select every LayerNorm
    of the backbone (blocks, patch embedding, merging, outputs) and every bias table, nothing else."""
    cfg = load_cached(name)
    model = build_on_meta(name)
    free, decays = _decay_free(cfg, model)
    assert decays == {cfg.optim_wrapper.optimizer.weight_decay}
    tables = {n for n, _ in model.named_parameters() if n.endswith('relative_position_bias_table')}
    assert len(tables) == sum(model.backbone.depths)
    assert free == _backbone_layer_norms(model) | tables
    weights = {n for n, _ in model.named_parameters() if n.endswith('.attn.qkv.weight')}
    assert weights and not weights & free
    # The heads' norms (SyncBN in the Cascade box heads and the UPerHead) keep their decay.
    assert not any(n.startswith(('roi_head.', 'decode_head.', 'auxiliary_head.')) for n in free)


def test_swin_retinanet_decays_everything():
    """mmdet's RetinaNet Swin-T recipe: SGD with weight decay 1e-4 on every parameter."""
    name = 'swin/retinanet_swin-t-p4-w7_fpn_1x_coco.py'
    free, decays = _decay_free(load_cached(name), build_on_meta(name))
    assert (free, decays) == (set(), {1e-4})


@pytest.mark.parametrize('name', ['swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-1x_coco.py',
                                  'swinv2/swinv2-tiny-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
                                  'toy/mask-rcnn_swinv2-toy_fpn_toy-coco.py'])
def test_swinv2_weight_decay_exemptions(name):
    """The authors' decay-free SwinV2 parameters (position bias MLP, logit scales) and every backbone norm."""
    cfg = load_cached(name)
    model = build_on_meta(name)
    free, decays = _decay_free(cfg, model)
    assert decays == {cfg.optim_wrapper.optimizer.weight_decay}
    position = {n for n, _ in model.named_parameters() if '.cpb_mlp.' in n or n.endswith('.logit_scale')}
    assert len(position) == 4 * sum(model.backbone.depths)  # per block: the MLP's two weights and bias, the scale
    assert free == _backbone_layer_norms(model) | position
    biases = {n for n, _ in model.named_parameters() if n.endswith('.attn.q_bias')}
    assert biases and not biases & free


@pytest.mark.parametrize('name', [n for n in INDEXED if n.startswith('crossformer/') and 'upernet' in n],
                         ids=_ids(n for n in INDEXED if n.startswith('crossformer/') and 'upernet' in n))
def test_crossformer_upernet_weight_decay_exemptions(name):
    """The authors' UperNet key 'norm' selects norm1, norm2, patch_embed.norm and downsample.norm (their names
    are the authors'), not the position bias MLP's LayerNorms nor CrossFormer++'s ACL norms (ex_ln)."""
    cfg = load_cached(name)
    model = build_on_meta(name)
    free, decays = _decay_free(cfg, model)
    assert decays == {0.01}
    named_norm = {n for n in _backbone_layer_norms(model)
                  if re.search(r'\.(norm[12]|patch_embed\.norm|downsample\.norm)\.', n)}
    assert free == named_norm
    assert len(named_norm) == 2 * (2 * sum(model.backbone.depths) + 1 + 3)
    dpb_norms = {n for n in _backbone_layer_norms(model) if '.attn.pos.' in n}
    assert dpb_norms and not dpb_norms & free
    if model.backbone.use_acl:
        assert any('.ex_ln.' in n for n in _backbone_layer_norms(model) - free)


@pytest.mark.parametrize('name', [n for n in INDEXED if n.startswith('crossformer/') and 'upernet' not in n],
                         ids=_ids(n for n in INDEXED if n.startswith('crossformer/') and 'upernet' not in n))
def test_crossformer_detection_and_fpn_decay_everything(name):
    """The authors' CrossFormer Mask R-CNN, RetinaNet and Semantic FPN files exempt nothing from weight decay."""
    free, decays = _decay_free(load_cached(name), build_on_meta(name))
    assert (free, decays) == (set(), {1e-4})


# -------------------------------------------------------------------------------------- toy configs
@pytest.mark.parametrize('name', TOY, ids=_ids(TOY))
def test_toy_config_builds_and_runs(name):
    cfg = load(name)
    assert cfg.model.backbone.get('init_cfg') is None  # trained from scratch
    model = build(cfg).eval()
    assert count_parameters(model) < 5e6
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(2, 3, 128, 128))
    if cfg.default_scope == 'mmseg':
        expected = [64] * 4 if cfg.model.get('neck') else [32, 64, 128, 256]
    else:
        expected = [64] * 5
    assert [f.shape[1] for f in feats] == expected


# ----------------------------------------------------------------------- --cfg-options on every config
def cfg_options(*options: str) -> dict:
    """``--cfg-options`` parsed as mmengine's, mmdet's and mmseg's tools parse it."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


@pytest.fixture(scope='module')
def toy_swin_weights(tmp_path_factory):
    """A checkpoint of the toy Swin, which fits none of the full-size backbones."""
    from swin_backbones.registry import build_backbone_from_cfg
    path = str(tmp_path_factory.mktemp('toy') / 'toy_swin.pth')
    toy = build_backbone_from_cfg(load('toy/mask-rcnn_swin-toy_fpn_toy-coco.py').model.backbone)
    torch.save(toy.state_dict(), path)
    return path


@pytest.mark.parametrize('name', [pytest.param(osp.relpath(p, CONFIGS), id=osp.relpath(p, CONFIGS))
                                  for p in sorted(glob.glob(osp.join(CONFIGS, '*', '*.py')))])
def test_pretrained_weights_from_the_command_line(name, tmp_path, toy_swin_weights):
    """``--cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=X`` reaches
    the loader with X. The toy backbones load X; the full-size ones are built on the meta device (no
    memory, no time) and given the toy Swin's weights, which must fail to fit, naming X."""
    from swin_backbones import CheckpointMismatchError
    from swin_backbones.registry import build_backbone_from_cfg
    toy = name.startswith('toy/')
    checkpoint = str(tmp_path / 'weights.pth') if toy else toy_swin_weights
    cfg = read_config(name)
    cfg.merge_from_dict(cfg_options('model.backbone.init_cfg.type=Pretrained',
                                    f'model.backbone.init_cfg.checkpoint={checkpoint}'))
    assert cfg.model.backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    if not toy:
        with torch.device('meta'):
            backbone = build_backbone_from_cfg(cfg.model.backbone)
        with pytest.raises(CheckpointMismatchError, match=f'checkpoint {checkpoint}'):
            backbone.init_weights()
        return
    source = build_backbone_from_cfg(dict(cfg.model.backbone, init_cfg=None))
    torch.save({'state_dict': {key: torch.randn_like(value) for key, value in source.state_dict().items()}},
               checkpoint)
    backbone = build_backbone_from_cfg(cfg.model.backbone)
    backbone.init_weights()
    expected = torch.load(checkpoint, weights_only=True)['state_dict']
    assert all(torch.equal(value, expected[key]) for key, value in backbone.state_dict().items())
