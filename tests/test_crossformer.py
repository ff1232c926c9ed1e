"""CrossFormer / CrossFormer++: numerics against the plain reference of docs/design.md ("CrossFormer"), any input size,
statelessness, no leakage across the batch, checkpoints, gradient checkpointing, frozen stages, registry, parameter
counts."""
import math
import os
import subprocess
import sys

import pytest
import torch

import swin_backbones
from swin_backbones import CheckpointMismatchError, CrossFormer, SwinTransformer
from swin_backbones.models.crossformer import convert_crossformer_state_dict, detect_crossformer_layout

from .helpers import assert_close, max_abs_diff, randomize_, scaled_diff, to_authors_layout
from .crossformer_reference import reference_forward

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small models that keep every feature: SDA and LDA in every stage, and for ++ one ACL block (stage 3, j=2).
SMALL = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
SMALL_PP = dict(embed_dims=32, depths=(2, 2, 4, 2), num_heads=(1, 2, 4, 8), lda_type='pp', use_acl=True)
DEFAULT_GROUPS = dict(group_size=(7, 7, 7, 7), crs_interval=(8, 4, 2, 1))


def build(seed=0, **kwargs):
    kwargs.setdefault('drop_path_rate', 0.0)
    return randomize_(CrossFormer(**kwargs), seed).eval()


def image(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def reference_cfg(structure, lda, acl, group_size=(7, 7, 7, 7), crs_interval=(8, 4, 2, 1), adaptive=False):
    return dict(depths=structure['depths'], num_heads=structure['num_heads'], group_size=group_size,
                crs_interval=crs_interval, lda=lda, acl=acl, adaptive_interval=adaptive)


# id: (model kwargs, reference cfg, (H, W), batch). Stage maps are H/4 ... H/32.
REFERENCE_CASES = {
    # 16x24: 64 LDA groups of 2x3; 8x12: SDA padded to 14x14, masked; 4x6 and 2x3: small-map fallback.
    'paper-64x96': (SMALL, reference_cfg(SMALL, 'paper', False), (64, 96), 2),
    # 56, 28, 14: LDA groups of 7x7 (64, 16, 4 of them); 7: fallback with G' = 7.
    'paper-224': (SMALL, reference_cfg(SMALL, 'paper', False), (224, 224), 1),
    'paper-group5-interval3-96x160': (
        dict(SMALL, group_size=(5, 4, 3, 2), crs_interval=(3, 2, 2, 1)),
        reference_cfg(SMALL, 'paper', False, (5, 4, 3, 2), (3, 2, 2, 1)), (96, 160), 1),
    # Regions of 56 padded from 16x24 (most groups all padding), ACL, fallback with G' = max(H, W).
    'pp-64x96': (SMALL_PP, reference_cfg(SMALL_PP, 'pp', True), (64, 96), 2),
    'pp-224': (SMALL_PP, reference_cfg(SMALL_PP, 'pp', True), (224, 224), 1),
    # Several (G*I)-regions per map.
    'pp-group4-interval2-64x128': (
        dict(SMALL_PP, group_size=4, crs_interval=(2, 2, 2, 1)),
        reference_cfg(SMALL_PP, 'pp', True, (4, 4, 4, 4), (2, 2, 2, 1)), (64, 128), 1),
    'pp-adaptive-96x64': (dict(SMALL_PP, adaptive_interval=True),
                          reference_cfg(SMALL_PP, 'pp', True, adaptive=True), (96, 64), 1),
    # Sides that are not multiples of 32: the package's padding extension, grouping and masking as above.
    'paper-odd-50x70': (SMALL, reference_cfg(SMALL, 'paper', False), (50, 70), 3),
    'pp-odd-50x70': (SMALL_PP, reference_cfg(SMALL_PP, 'pp', True), (50, 70), 3),
    # Every stage falls back to SDA (stage 1 is 5x7).
    'paper-fallback-20x28': (SMALL, reference_cfg(SMALL, 'paper', False), (20, 28), 2),
    'pp-fallback-20x28': (SMALL_PP, reference_cfg(SMALL_PP, 'pp', True), (20, 28), 2),
}


@pytest.mark.parametrize('case', sorted(REFERENCE_CASES))
def test_matches_reference(case):
    kwargs, cfg, size, batch = REFERENCE_CASES[case]
    model = build(**kwargs)
    x = image(batch, 3, *size)
    with torch.no_grad():
        outs = model(x)
        expected = reference_forward(to_authors_layout(model.state_dict()), cfg, x)
    assert_close(outs, expected)


# The published architectures at 224 x 224 with their default (detection) settings (docs/design.md, "CrossFormer").
FULL_ARCHS = {
    'small': (dict(depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)), 'paper', False),
    'pp-small': (dict(depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16)), 'pp', True),
}


@pytest.mark.parametrize('arch', sorted(FULL_ARCHS))
def test_full_arch_matches_reference(arch):
    structure, lda, acl = FULL_ARCHS[arch]
    model = build(arch=arch)
    x = image(1, 3, 224, 224)
    with torch.no_grad():
        outs = model(x)
        expected = reference_forward(to_authors_layout(model.state_dict()), reference_cfg(structure, lda, acl), x)
    assert_close(outs, expected)


# ------------------------------------------------------------------------------- any input size
@pytest.mark.parametrize('kwargs', [SMALL, SMALL_PP], ids=['paper', 'pp'])
@pytest.mark.parametrize('size', [(1, 1), (3, 5), (31, 33), (45, 61), (64, 96), (7, 300)])
@pytest.mark.parametrize('batch', [1, 2])
def test_any_size_gives_ceil_shapes(kwargs, size, batch):
    model = build(**kwargs)
    with torch.no_grad():
        outs = model(image(batch, 3, *size))
    assert len(outs) == 4
    for i, out in enumerate(outs):
        stride = 4 * 2 ** i
        assert out.shape == (batch, 32 * 2 ** i, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert torch.isfinite(out).all()


@pytest.mark.parametrize('kwargs', [SMALL, SMALL_PP], ids=['paper', 'pp'])
def test_small_input_does_not_change_later_inputs(kwargs):
    model = build(**kwargs)
    large, small = image(1, 3, 64, 96), image(1, 3, 20, 28, seed=2)  # small: every stage falls back
    settings = [(stage.group_size, stage.interval) for stage in model.stages]
    with torch.no_grad():
        first = model(large)
        small_out = model(small)
        again = model(large)
        fresh_small = build(**kwargs)(small)
    assert max_abs_diff(first, again) == 0
    assert max_abs_diff(small_out, fresh_small) == 0
    assert [(stage.group_size, stage.interval) for stage in model.stages] == settings


@pytest.mark.parametrize('backbone', ['crossformer', 'crossformer++', 'swin'])
def test_no_leakage_across_the_batch(backbone):
    if backbone == 'swin':
        model = randomize_(SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                                           drop_path_rate=0.0)).eval()
    else:
        model = build(**(SMALL if backbone == 'crossformer' else SMALL_PP))
    x = image(3, 3, 45, 61)  # 12x16, 6x8, 3x4, 2x2: windows / groups need padding in every stage
    with torch.no_grad():
        batched = model(x)
        alone = [model(x[i:i + 1]) for i in range(3)]
    for i in range(3):
        assert_close([out[i:i + 1] for out in batched], alone[i])
    assert scaled_diff(alone[0], alone[1]) > 1e-2  # the images do differ


# -------------------------------------------------------------------------- architectures, layout
PARAMS_M = {'tiny': 27.263, 'small': 29.887, 'base': 51.201, 'large': 90.944,
            'pp-small': 22.811, 'pp-base': 51.224, 'pp-large': 90.975}
ARCH_TABLE = {  # C, depths, heads, drop path, LDA, ACL
    'tiny': (64, (1, 1, 8, 6), (2, 4, 8, 16), 0.1, 'paper', False),
    'small': (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2, 'paper', False),
    'base': (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3, 'paper', False),
    'large': (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5, 'paper', False),
    'pp-small': (64, (2, 2, 18, 2), (2, 4, 8, 16), 0.2, 'pp', True),
    'pp-base': (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3, 'pp', True),
    'pp-large': (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5, 'pp', True),
}


def build_on_meta(**kwargs):
    with torch.device('meta'):
        return CrossFormer(**kwargs)


@pytest.mark.parametrize('arch', sorted(PARAMS_M))
def test_parameter_count_and_defaults(arch):
    model = build_on_meta(arch=arch)
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - PARAMS_M[arch]) <= 0.001
    embed_dims, depths, heads, drop_path, lda, acl = ARCH_TABLE[arch]
    assert (model.embed_dims, model.depths, model.num_heads) == (embed_dims, depths, heads)
    assert (model.lda_type, model.use_acl, model.adaptive_interval) == (lda, acl, False)
    assert model.group_size == (7, 7, 7, 7) and model.crs_interval == (8, 4, 2, 1)
    assert model.stages[-1].blocks[-1].drop_path.drop_prob == pytest.approx(drop_path)
    assert model.num_features == [embed_dims * 2 ** i for i in range(4)]


def expected_keys(depths, acl):
    keys = [f'patch_embed.projs.{i}.{p}' for i in range(4) for p in ('weight', 'bias')]
    keys += ['patch_embed.norm.weight', 'patch_embed.norm.bias']
    block_modules = ['norm1', 'attn.qkv', 'attn.proj', 'attn.pos.pos_proj', 'norm2', 'mlp.fc1', 'mlp.fc2']
    block_modules += [f'attn.pos.pos{k}.{i}' for k in (1, 2, 3) for i in (0, 2)]
    for i, depth in enumerate(depths):
        for j in range(depth):
            modules = block_modules + (['ex_conv', 'ex_ln'] if acl and (j + 1) % 3 == 0 and j < depth - 1 else [])
            keys += [f'stages.{i}.blocks.{j}.{m}.{p}' for m in modules for p in ('weight', 'bias')]
        if i < len(depths) - 1:
            keys += [f'stages.{i}.downsample.{m}.{p}' for m in ('norm', 'reductions.0', 'reductions.1')
                     for p in ('weight', 'bias')]
    return set(keys)


@pytest.mark.parametrize('arch', ['small', 'pp-base'])
def test_key_layout_and_shapes(arch):
    model = build_on_meta(arch=arch)
    embed_dims, depths, heads, _, _, acl = ARCH_TABLE[arch]
    state = model.state_dict()
    assert set(state) == expected_keys(depths, acl)
    C = embed_dims
    for i, (k, d) in enumerate(zip((4, 8, 16, 32), (C // 2, C // 4, C // 8, C // 8))):
        assert state[f'patch_embed.projs.{i}.weight'].shape == (d, 3, k, k)
        proj = model.patch_embed.projs[i]
        assert (proj.stride, proj.padding) == ((4, 4), ((k - 4) // 2, (k - 4) // 2))
    for i in range(4):
        dim = C * 2 ** i
        assert state[f'stages.{i}.blocks.0.attn.pos.pos_proj.weight'].shape == (dim // 16, 2)
        assert state[f'stages.{i}.blocks.0.attn.pos.pos3.2.weight'].shape == (heads[i], dim // 16)
        if i < 3:
            assert state[f'stages.{i}.downsample.reductions.0.weight'].shape == (dim, dim, 2, 2)
            assert state[f'stages.{i}.downsample.reductions.1.weight'].shape == (dim, dim, 4, 4)
            assert model.stages[i].downsample.reductions[1].padding == (1, 1)


def test_arguments_are_checked():
    with pytest.raises(ValueError, match='conflicts'):
        CrossFormer(arch='small', embed_dims=64)
    with pytest.raises(ValueError, match='unknown CrossFormer arch'):
        CrossFormer(arch='huge')
    with pytest.raises(ValueError, match='adaptive_interval'):
        CrossFormer(**SMALL, adaptive_interval=True)
    with pytest.raises(ValueError, match='lda_type'):
        CrossFormer(**SMALL, lda_type='dilated')
    with pytest.raises(ValueError, match='group_size'):
        CrossFormer(**SMALL, group_size=(7, 7, 7))
    with pytest.raises(ValueError, match='crs_interval'):
        CrossFormer(**SMALL, crs_interval=(8, 4, 0, 1))
    with pytest.raises(ValueError, match='embed_dims'):
        CrossFormer(embed_dims=36, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    with pytest.raises(ValueError, match='num_heads'):
        CrossFormer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(3, 2, 4, 8))
    # The grouping, ACL and drop path of an arch are defaults that explicit values override.
    model = build_on_meta(arch='small', lda_type='pp', adaptive_interval=True, drop_path_rate=0.0)
    assert (model.lda_type, model.adaptive_interval, model.use_acl) == ('pp', True, False)
    assert build_on_meta(arch='pp-small', use_acl=False, lda_type='paper').use_acl is False


def test_init_from_scratch():
    model = CrossFormer(**SMALL_PP)
    model.init_weights()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all((m.bias == 0).all() for m in linears)
    assert all((m.weight == 1).all() and (m.bias == 0).all() for m in norms)
    fc1 = model.stages[3].blocks[0].mlp.fc1.weight
    assert 0.017 < fc1.std().item() < 0.023


# ------------------------------------------------------------------------------------ registry
def test_registry_builds():
    from swin_backbones.registry import MODELS
    model = MODELS.build(dict(type='CrossFormer', arch='small'))
    assert isinstance(model, CrossFormer) and model.depths == (2, 2, 6, 2)
    from mmdet.registry import MODELS as DET_MODELS
    assert isinstance(DET_MODELS.build(dict(type='swin_backbones.CrossFormer', **SMALL_PP)), CrossFormer)
    from mmseg.registry import MODELS as SEG_MODELS
    assert isinstance(SEG_MODELS.build(dict(type='swin_backbones.CrossFormer', **SMALL)), CrossFormer)
    assert 'CrossFormer' in swin_backbones.__all__


# --------------------------------------------------------------------------------- checkpoints
CLASSIFIER_EXTRAS = {
    'norm.weight': torch.ones(256), 'norm.bias': torch.zeros(256),
    'head.weight': torch.zeros(1000, 256), 'head.bias': torch.zeros(1000),
    'layers.0.blocks.0.attn.biases': torch.zeros(169, 2),
    'layers.0.blocks.0.attn.relative_position_index': torch.zeros(2401, dtype=torch.long),
    'layers.1.blocks.1.attn.biases': torch.zeros(169, 2),
    'layers.1.blocks.1.attn.relative_position_index': torch.zeros(2401, dtype=torch.long),
}


def assert_same_outputs(a, b, size=(50, 70)):
    x = image(1, 3, *size)
    with torch.no_grad():
        assert max_abs_diff(a(x), b(x)) == 0


@pytest.mark.parametrize('kwargs', [SMALL, SMALL_PP], ids=['paper', 'pp'])
def test_loads_authors_classification_checkpoint(kwargs, tmp_path):
    source = build(seed=3, **kwargs)
    path = tmp_path / 'crossformer.pth'
    torch.save({'model': {**to_authors_layout(source.state_dict()), **CLASSIFIER_EXTRAS}, 'epoch': 300}, path)
    model = CrossFormer(**kwargs, drop_path_rate=0.0, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_same_outputs(model.eval(), source)


def test_loads_detector_checkpoint_with_backbone_prefix(tmp_path):
    source = build(seed=4, **SMALL)
    state = {'backbone.' + key: value for key, value in source.state_dict().items()}
    state.update({'neck.lateral_convs.0.conv.weight': torch.zeros(8, 32, 1, 1),
                  'rpn_head.rpn_cls.bias': torch.zeros(3)})
    path = tmp_path / 'mask_rcnn.pth'
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, path)
    model = CrossFormer(**SMALL, drop_path_rate=0.0, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    assert_same_outputs(model.eval(), source)


def test_group_size_and_interval_may_differ_from_pretraining(tmp_path):
    source = build(seed=5, **SMALL_PP)
    path = tmp_path / 'pp.pth'
    torch.save({'model': source.state_dict()}, path)
    settings = dict(group_size=(4, 5, 6, 3), crs_interval=(2, 2, 1, 1), adaptive_interval=True)
    model = CrossFormer(**SMALL_PP, **settings, drop_path_rate=0.0,
                        init_cfg=dict(type='Pretrained', checkpoint=str(path))).eval()
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    x = image(1, 3, 64, 96)
    cfg = reference_cfg(SMALL_PP, 'pp', True, settings['group_size'], settings['crs_interval'], adaptive=True)
    with torch.no_grad():
        assert_close(model(x), reference_forward(to_authors_layout(source.state_dict()), cfg, x))


def test_pretrained_argument_is_deprecated_but_works(tmp_path):
    source = build(seed=6, **SMALL)
    path = tmp_path / 'crossformer.pth'
    torch.save(source.state_dict(), path)
    with pytest.warns(DeprecationWarning):
        model = CrossFormer(**SMALL, drop_path_rate=0.0, pretrained=str(path))
    model.init_weights()
    assert_same_outputs(model.eval(), source)


def test_swin_checkpoint_into_crossformer_fails_with_key_lists(tmp_path):
    swin = SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
    path = tmp_path / 'swin.pth'
    torch.save({'model': swin.state_dict()}, path)
    model = CrossFormer(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError) as error:
        model.init_weights()
    message = str(error.value)
    assert 'missing keys' in message and 'patch_embed.projs.0.weight' in message
    assert 'unexpected keys' in message and 'patch_embed.proj.weight' in message


def test_crossformer_checkpoint_into_swin_fails_with_key_lists(tmp_path):
    path = tmp_path / 'crossformer.pth'
    torch.save({'model': CrossFormer(**SMALL).state_dict()}, path)
    swin = SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                           init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError) as error:
        swin.init_weights()
    message = str(error.value)
    assert 'missing keys' in message and 'patch_embed.proj.weight' in message
    assert 'unexpected keys' in message and 'patch_embed.projs.0.weight' in message


def test_crossformer_pp_checkpoint_into_model_without_acl_fails(tmp_path):
    path = tmp_path / 'pp.pth'
    torch.save({'model': CrossFormer(**SMALL_PP).state_dict()}, path)
    model = CrossFormer(**dict(SMALL_PP, use_acl=False), init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError, match='ex_conv'):
        model.init_weights()


@pytest.mark.parametrize('wrapping', ['authors', 'detector'])
def test_conversion_tool_writes_a_loadable_checkpoint(wrapping, tmp_path):
    from swin_backbones.convert import convert_checkpoint
    source = build(seed=8, **SMALL_PP)
    if wrapping == 'authors':
        checkpoint = {'model': {**to_authors_layout(source.state_dict()), **CLASSIFIER_EXTRAS}}
    else:
        checkpoint = {'state_dict': {**{'backbone.' + k: v for k, v in source.state_dict().items()},
                                     'rpn_head.rpn_conv.weight': torch.zeros(4, 4, 3, 3)}}
    torch.save(checkpoint, tmp_path / 'in.pth')
    conversion = convert_checkpoint(str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth'))
    layout = 'original' if wrapping == 'authors' else 'swin_backbones'
    assert (conversion.backbone, conversion.source_layout) == ('CrossFormer', layout)
    assert set(torch.load(tmp_path / 'out.pth', weights_only=True)['state_dict']) == set(source.state_dict())
    model = CrossFormer(**SMALL_PP, drop_path_rate=0.0,
                        init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'out.pth')))
    model.init_weights()
    assert_same_outputs(model.eval(), source)


def test_conversion_tool_command_line(tmp_path):
    torch.save({'model': {**to_authors_layout(CrossFormer(**SMALL).state_dict()), **CLASSIFIER_EXTRAS}},
               tmp_path / 'in.pth')
    tool = os.path.join(REPO, 'tools', 'convert_checkpoint.py')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get('PYTHONPATH')])))
    result = subprocess.run([sys.executable, tool, str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert 'CrossFormer in the original layout' in result.stdout


def test_convert_and_detect():
    state = CrossFormer(**SMALL).state_dict()
    converted, layout = convert_crossformer_state_dict({**to_authors_layout(state), **CLASSIFIER_EXTRAS})
    assert layout == 'original' and set(converted) == set(state)
    assert CrossFormer.convert_state_dict(state) == (state, 'swin_backbones')
    assert detect_crossformer_layout(state) == 'swin_backbones'
    swin_state = SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)).state_dict()
    assert detect_crossformer_layout(swin_state) is None
    assert CrossFormer.recognizes(state) and not CrossFormer.recognizes(swin_state)
    # Nothing but the classification extras is dropped, so foreign keys reach the strict load.
    assert 'stages.0.blocks.0.attn.relative_position_bias_table' in convert_crossformer_state_dict(swin_state)[0]


# ----------------------------------------------------------------------- training-time options
@pytest.mark.parametrize('kwargs', [SMALL, SMALL_PP], ids=['paper', 'pp'])
def test_gradient_checkpointing_gives_equal_outputs_and_gradients(kwargs, monkeypatch):
    plain, checkpointed = build(seed=7, **kwargs).train(), build(seed=7, with_cp=True, **kwargs).train()
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kw):
        calls.append(kw.get('use_reentrant'))
        return original(*args, **kw)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting)
    x = image(2, 3, 50, 70)
    results = []
    for model in (plain, checkpointed):
        outs = model(x)
        sum((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() for out in outs).backward()
        results.append((outs, {name: p.grad for name, p in model.named_parameters()}))
    assert calls == [False] * sum(kwargs['depths'])
    assert_close(results[0][0], results[1][0])
    grads_plain, grads_cp = results[0][1], results[1][1]
    assert all(grad is not None for grad in grads_cp.values())
    assert_close([grads_plain[k] for k in grads_plain], [grads_cp[k] for k in grads_plain])


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2])
def test_frozen_stages(frozen_stages):
    model = CrossFormer(**SMALL, frozen_stages=frozen_stages)
    model.train()
    frozen = ([model.patch_embed] if frozen_stages >= 0 else []) + list(model.stages[:max(frozen_stages, 0)])
    trainable = list(model.stages[max(frozen_stages, 0):]) + ([] if frozen_stages >= 0 else [model.patch_embed])
    for module in frozen:
        assert not module.training and all(not p.requires_grad for p in module.parameters())
    for module in trainable:
        assert module.training and all(p.requires_grad for p in module.parameters())
    outs = model(image(1, 3, 64, 64))
    sum(out.sum() for out in outs).backward()
    for module in frozen:
        assert all(p.grad is None for p in module.parameters())
    with pytest.raises(ValueError, match='frozen_stages'):
        CrossFormer(**SMALL, frozen_stages=5)
