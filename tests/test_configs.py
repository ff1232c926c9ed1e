"""The configs under configs/: they load through mmdet's/mmseg's base configs, build, reproduce the
published parameter counts, and carry the published training recipes."""
import argparse
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, DefaultScope

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'configs')


def config_path(name: str) -> str:
    return osp.join(CONFIGS, name)


def load(name: str) -> Config:
    cfg = Config.fromfile(config_path(name))
    # The authors' checkpoints are not part of the repository.
    if cfg.model.backbone.get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    return cfg


def build(cfg: Config) -> torch.nn.Module:
    # Only for this build: a default scope left behind would redirect other tests' registry look-ups.
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Published parameter counts (SPEC section 4; the authors' exact counts), in millions.
PUBLISHED = [
    ('swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 47.795),
    ('swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', 47.795),
    ('swin/mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco.py', 69.113),
    ('crossformer/mask-rcnn_crossformer-s-g7_fpn_1x_coco.py', 50.161),
    ('crossformer/mask-rcnn_crossformer-s-g7_fpn_ms-crop-3x_coco.py', 50.161),
    ('crossformer/mask-rcnn_crossformer-b-g7_fpn_1x_coco.py', 71.475),
    ('swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 59.942),
    ('swin/swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 81.260),
    ('swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 121.280),
    ('crossformer/crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 62.308),
    ('crossformer/crossformer-b-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 83.622),
    ('crossformer/crossformer-l-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 125.479),
]
# No published count: built and checked for structure only.
UNPUBLISHED = [
    'crossformer/mask-rcnn_crossformer-pp-s-g7_fpn_1x_coco.py',
    'crossformer/crossformer-pp-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
]
# SwinV2 has no published Mask R-CNN or UperNet counts: these are the counts of the models as built (whole
# model, backbone), the numbers the README lists. The backbones equal mmpretrain 1.2.0's SwinTransformerV2
# with its four output norms (tiny 27,579,498).
SWINV2 = [
    ('swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_1x_coco.py', 47_853_402, 27_579_498),
    ('swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-3x_coco.py', 47_853_402, 27_579_498),
    ('swinv2/mask-rcnn_swinv2-s-p4-w16_fpn_1x_coco.py', 69_234_666, 48_960_762),
    ('swinv2/mask-rcnn_swinv2-s-p4-w16_fpn_ms-crop-3x_coco.py', 69_234_666, 48_960_762),
    ('swinv2/swinv2-tiny-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 60_000_662, 27_579_498),
    ('swinv2/swinv2-base-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 121_430_308, 86_895_608),
]
TOY = sorted(osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, 'toy', '*.py')))


def test_every_config_is_listed():
    listed = {name for name, _ in PUBLISHED} | set(UNPUBLISHED) | {name for name, _, _ in SWINV2} | set(TOY)
    found = {osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))}
    assert found == listed
    assert len(TOY) == 6


@pytest.mark.parametrize('name, millions', [pytest.param(n, m, id=osp.basename(n))
                                            for n, m in PUBLISHED])
def test_parameter_count_matches_published(name, millions):
    model = build(load(name))
    assert abs(count_parameters(model) / 1e6 - millions) <= 0.01, count_parameters(model)


@pytest.mark.parametrize('name', [pytest.param(n, id=osp.basename(n)) for n in UNPUBLISHED])
def test_crossformer_pp_configs_build(name):
    cfg = load(name)
    model = build(cfg)
    backbone = model.backbone
    assert type(backbone).__name__ == 'CrossFormer'
    assert cfg.model.backbone.arch == 'pp-small'
    assert any(n.endswith('ex_conv.weight') for n, _ in backbone.named_parameters())  # ACL blocks


@pytest.mark.parametrize('name, total, backbone', [pytest.param(*case, id=osp.basename(case[0])) for case in SWINV2])
def test_swinv2_configs_build_with_their_parameter_counts(name, total, backbone):
    cfg = load(name)
    model = build(cfg)
    assert type(model.backbone).__name__ == 'SwinTransformerV2'
    assert (count_parameters(model), count_parameters(model.backbone)) == (total, backbone)
    assert model.backbone.window_sizes == (16,) * 4 and model.backbone.pretrained_window_sizes == (8,) * 4
    assert cfg.model.backbone.init_cfg is None  # load() drops the authors' checkpoint
    checkpoint = Config.fromfile(config_path(name)).model.backbone.init_cfg.checkpoint
    assert checkpoint == f'checkpoints/swinv2_{model.backbone.arch}_patch4_window8_256.pth'


# ------------------------------------------------------------------------------------------ recipes
def _scheduler(cfg, kind):
    found = [s for s in cfg.param_scheduler if s.type == kind]
    assert len(found) == 1, cfg.param_scheduler
    return found[0]


@pytest.mark.parametrize('name, epochs, steps, warmup, weight_decay, drop_path', [
    ('swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py', 12, [8, 11], 1000, 0.05, 0.2),
    ('swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py', 36, [27, 33], 1000, 0.05, 0.2),
    ('swin/mask-rcnn_swin-s-p4-w7_fpn_ms-crop-3x_coco.py', 36, [27, 33], 1000, 0.05, 0.2),
    ('crossformer/mask-rcnn_crossformer-s-g7_fpn_1x_coco.py', 12, [8, 11], 500, 1e-4, 0.2),
    ('crossformer/mask-rcnn_crossformer-s-g7_fpn_ms-crop-3x_coco.py', 36, [27, 33], 500, 1e-4, 0.2),
    ('crossformer/mask-rcnn_crossformer-b-g7_fpn_1x_coco.py', 12, [8, 11], 500, 1e-4, 0.3),
    ('crossformer/mask-rcnn_crossformer-pp-s-g7_fpn_1x_coco.py', 12, [8, 11], 500, 1e-4, 0.2),
    ('swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_1x_coco.py', 12, [8, 11], 1000, 0.05, 0.2),
    ('swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_ms-crop-3x_coco.py', 36, [27, 33], 1000, 0.05, 0.2),
    ('swinv2/mask-rcnn_swinv2-s-p4-w16_fpn_1x_coco.py', 12, [8, 11], 1000, 0.05, 0.2),
    ('swinv2/mask-rcnn_swinv2-s-p4-w16_fpn_ms-crop-3x_coco.py', 36, [27, 33], 1000, 0.05, 0.2),
])
def test_detection_recipe(name, epochs, steps, warmup, weight_decay, drop_path):
    cfg = Config.fromfile(config_path(name))
    assert cfg.default_scope == 'mmdet'
    assert cfg.custom_imports == dict(imports=['swin_backbones'], allow_failed_imports=False)
    assert cfg.model.type == 'MaskRCNN' and cfg.model.neck.type == 'FPN'
    assert cfg.model.roi_head.bbox_head.num_classes == 80
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 1e-4, weight_decay)
    assert cfg.train_cfg.max_epochs == epochs
    assert _scheduler(cfg, 'MultiStepLR').milestones == steps
    assert _scheduler(cfg, 'LinearLR').end == warmup
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.model.backbone.init_cfg.checkpoint.startswith('checkpoints/')
    resizes = [t for t in cfg.train_dataloader.dataset.pipeline if t.type in ('Resize', 'RandomChoice')]
    assert resizes[0].type == ('RandomChoice' if '3x' in name else 'Resize')  # 3x: multi-scale 480-800


@pytest.mark.parametrize('name, drop_path', [
    ('swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.3),
    ('swin/swin-small-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.3),
    ('swin/swin-base-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.3),
    ('crossformer/crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.2),
    ('crossformer/crossformer-b-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.3),
    ('crossformer/crossformer-l-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.5),
    ('crossformer/crossformer-pp-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.2),
    ('swinv2/swinv2-tiny-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.3),
    ('swinv2/swinv2-base-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py', 0.3),
])
def test_segmentation_recipe(name, drop_path):
    cfg = Config.fromfile(config_path(name))
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports == dict(imports=['swin_backbones'], allow_failed_imports=False)
    assert cfg.model.decode_head.type == 'UPerHead' and cfg.model.decode_head.num_classes == 150
    aux = cfg.model.auxiliary_head
    assert aux.type == 'FCNHead' and aux.in_index == 2 and aux.num_classes == 150
    assert aux.in_channels == cfg.model.decode_head.in_channels[2]
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 6e-5, 0.01)
    warmup, poly = _scheduler(cfg, 'LinearLR'), _scheduler(cfg, 'PolyLR')
    assert (warmup.end, poly.begin, poly.end, poly.power) == (1500, 1500, 160000, 1.0)
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_dataloader.batch_size * 8 == 16
    assert cfg.crop_size == (512, 512) and cfg.model.data_preprocessor.size == (512, 512)
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'


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


def test_swin_weight_decay_exemptions():
    cfg = load('swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py')
    model = build(cfg)
    free, decays = _decay_free(cfg, model)
    assert decays == {0.05}
    expected = {n for n, _ in model.named_parameters()
                if n.startswith('backbone.') and ('relative_position_bias_table' in n or '.norm' in n)}
    assert free == expected
    # Every LayerNorm of the backbone (blocks, patch embedding, merging, outputs) and every table, nothing else.
    norms = {f'backbone.{n}.{p}' for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.LayerNorm)
             for p in ('weight', 'bias')}
    tables = {n for n in expected if n.endswith('relative_position_bias_table')}
    assert free == norms | tables
    assert len(tables) == sum(cfg.model.backbone.get('depths') or (2, 2, 6, 2))
    assert 'backbone.layers.0.blocks.0.attn.qkv.weight' not in free


@pytest.mark.parametrize('name', ['swinv2/mask-rcnn_swinv2-t-p4-w16_fpn_1x_coco.py',
                                  'swinv2/swinv2-tiny-patch4-window16-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',
                                  'toy/mask-rcnn_swinv2-toy_fpn_toy-coco.py'])
def test_swinv2_weight_decay_exemptions(name):
    """The authors' decay-free SwinV2 parameters (position bias MLP, logit scales) and every backbone norm."""
    cfg = load(name)
    model = build(cfg)
    free, decays = _decay_free(cfg, model)
    assert decays == {cfg.optim_wrapper.optimizer.weight_decay}
    norms = {f'backbone.{n}.{p}' for n, m in model.backbone.named_modules() if isinstance(m, torch.nn.LayerNorm)
             for p in ('weight', 'bias')}
    position = {n for n, _ in model.named_parameters() if '.cpb_mlp.' in n or n.endswith('.logit_scale')}
    assert len(position) == 4 * sum(model.backbone.depths)  # per block: the MLP's two weights and bias, the scale
    assert free == norms | position
    assert 'backbone.layers.0.blocks.0.attn.q_bias' not in free


def test_crossformer_weight_decay_exemptions():
    cfg = load('crossformer/crossformer-pp-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py')
    model = build(cfg)
    free, decays = _decay_free(cfg, model)
    assert decays == {0.01}
    backbone_norms = {f'backbone.{n}.{p}' for n, m in model.backbone.named_modules()
                      if isinstance(m, torch.nn.LayerNorm) for p in ('weight', 'bias')}
    dpb = {n for n, _ in model.named_parameters() if '.attn.pos.' in n}
    assert any('.ex_ln.' in n for n in backbone_norms)  # CrossFormer++'s ACL norms
    assert any('.pos1.0.' in n for n in backbone_norms)  # the position bias MLP's norms
    assert free == backbone_norms | dpb
    # The heads' BatchNorms and the attention / MLP weights keep their decay.
    assert not any(n.startswith(('decode_head.', 'auxiliary_head.')) for n in free)
    assert not any('.attn.qkv.' in n or '.mlp.' in n or '.ex_conv.' in n for n in free)


# -------------------------------------------------------------------------------------- toy configs
@pytest.mark.parametrize('name', [pytest.param(n, id=osp.basename(n)) for n in TOY])
def test_toy_config_builds_and_runs(name):
    cfg = load(name)
    assert cfg.model.backbone.get('init_cfg') is None  # trained from scratch
    model = build(cfg).eval()
    assert count_parameters(model) < 5e6
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(2, 3, 128, 128))
    expected = [32, 64, 128, 256] if cfg.default_scope == 'mmseg' else [64] * 5
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
    cfg = Config.fromfile(config_path(name))
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
