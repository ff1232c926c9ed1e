"""Swin Transformer V2 numerics against the plainly written reference of docs/design.md ("Swin Transformer V2")
(tests/swinv2_reference.py) and against mmpretrain 1.2.0's own SwinTransformerV2 (``pad_small_map=True``), plus the
constructor."""
import importlib
import importlib.util
import math
import os
import sys
import types

import pytest
import torch

from swin_backbones import SwinTransformerV2
from swin_backbones.models.swinv2 import convert_swinv2_state_dict

from .conftest import assert_close, randomize_swinv2_
from .swinv2_reference import reference_forward

SMALL = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
GRAD_REL = 5e-5


def v2_model(seed=0, **kwargs):
    kwargs = {**SMALL, 'drop_path_rate': 0.0, **kwargs}
    return randomize_swinv2_(SwinTransformerV2(**kwargs), seed).eval()


def reference(model, image):
    return reference_forward(dict(model.named_parameters()), image, model.depths, model.num_heads,
                             model.window_sizes, model.pretrained_window_sizes, model.out_indices)


def image(batch, height, width, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


# (window_size, pretrained_window_sizes, (batch, height, width)): odd and even sizes, maps smaller than a
# window, windows 8, 12, 16 and per stage, pretrained windows other than the window.
REFERENCE_CASES = [
    (8, 0, (2, 97, 131)),
    (8, 0, (1, 256, 256)),
    (8, 0, (1, 1, 1)),
    (12, 8, (1, 225, 301)),
    (12, 8, (2, 50, 70)),
    (16, 8, (2, 61, 45)),
    (16, (8, 8, 8, 6), (1, 129, 97)),
    ((16, 12, 8, 4), (8, 0, 12, 4), (2, 75, 113)),
]


@pytest.mark.parametrize('window_size, pretrained, size', REFERENCE_CASES)
def test_matches_reference(window_size, pretrained, size):
    model = v2_model(window_size=window_size, pretrained_window_sizes=pretrained)
    x = image(*size, seed=size[1])
    with torch.no_grad():
        assert_close(model(x), reference(model, x))


def test_tiny_arch_matches_reference():
    model = v2_model(arch='tiny', embed_dims=None, depths=None, num_heads=None)
    x = image(1, 61, 97)
    with torch.no_grad():
        assert_close(model(x), reference(model, x))


@pytest.mark.parametrize('impl', ['fast', 'plain'])
def test_gradients_match_reference(impl):
    """Input and every parameter gradient of a training step (the fast path's recomputing attention backward;
    logit scales, q/v biases and the position bias MLP included)."""
    model = v2_model(seed=4, window_size=(8, 8, 4, 4), pretrained_window_sizes=(0, 12, 8, 0), impl=impl).train()
    x = image(2, 45, 61, seed=9).requires_grad_(True)
    weights = [torch.randn(shape, generator=torch.Generator().manual_seed(i))
               for i, shape in enumerate([(2, 32, 12, 16), (2, 64, 6, 8), (2, 128, 3, 4), (2, 256, 2, 2)])]

    def loss(outs):
        return sum((out * weight).sum() for out, weight in zip(outs, weights))
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(loss(model(x)), [x, *params.values()])
    ref_x = x.detach().clone().requires_grad_(True)
    ref_params = {name: param.detach().clone().requires_grad_(True) for name, param in params.items()}
    ref_grads = torch.autograd.grad(
        loss(reference_forward(ref_params, ref_x, model.depths, model.num_heads, model.window_sizes,
                               model.pretrained_window_sizes, model.out_indices)), [ref_x, *ref_params.values()])
    # Backward through eight blocks of sharp softmaxes (logit scales up to 100) amplifies rounding: a looser
    # bound than for outputs, still far below what a wrong term changes.
    assert_close(grads[0], ref_grads[0], rel=GRAD_REL)
    scale = max(g.abs().max().item() for g in ref_grads[1:])
    for name, grad, ref_grad in zip(params, grads[1:], ref_grads[1:]):
        # Relative to the model's largest parameter gradient: some (the position bias MLP's output weights)
        # are differences of softmax gradients and close to zero.
        assert (grad - ref_grad).abs().max().item() <= GRAD_REL * scale, name


def test_any_size_gives_ceil_shapes_and_batch_items_do_not_mix():
    model = v2_model(window_size=8)
    x = image(3, 37, 70)
    with torch.no_grad():
        outs = model(x)
        alone = model(x[1:2])
    for out, stride, channels in zip(outs, (4, 8, 16, 32), (32, 64, 128, 256)):
        assert out.shape == (3, channels, math.ceil(37 / stride), math.ceil(70 / stride)) and out.is_contiguous()
    assert_close([o[1:2] for o in outs], alone)


# ------------------------------------------------------------------------------------ mmpretrain
def load_mmpretrain_swinv2():
    """mmpretrain 1.2.0's SwinTransformerV2 class, imported without running mmpretrain's package __init__
    files (they import its whole API, which needs packages a backbone does not: importlib_metadata,
    transformers ...): its packages are stood in for by empty ones, filled with what the backbone imports."""
    spec = importlib.util.find_spec('mmpretrain')
    if spec is None:
        pytest.skip('mmpretrain is not installed (tools/install.sh installs mmpretrain==1.2.0 without dependencies)')
    root = os.path.dirname(spec.origin)
    saved = {name: sys.modules.get(name) for name in ('mmpretrain', 'mmpretrain.models', 'mmpretrain.models.utils',
                                                       'mmpretrain.models.backbones')}
    try:
        for name in saved:
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(root, *name.split('.')[1:])]
            sys.modules[name] = package
        utils = sys.modules['mmpretrain.models.utils']
        for module in ('attention', 'embed', 'helpers'):
            module = importlib.import_module(f'mmpretrain.models.utils.{module}')
            utils.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith('_')})
        return importlib.import_module('mmpretrain.models.backbones.swin_transformer_v2').SwinTransformerV2
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


@pytest.fixture(scope='module')
def mmpretrain_swinv2():
    return load_mmpretrain_swinv2()


@pytest.mark.parametrize('window_size, pretrained', [(8, 0), ((16, 16, 12, 8), (8, 8, 8, 6))])
def test_matches_mmpretrain_with_pad_small_map(mmpretrain_swinv2, window_size, pretrained):
    """mmpretrain's own backbone with random weights, loaded through this package's mmpretrain converter."""
    per_stage = [window_size] * 4 if isinstance(window_size, int) else list(window_size)
    pretrained_per_stage = [pretrained] * 4 if isinstance(pretrained, int) else list(pretrained)
    theirs = mmpretrain_swinv2(arch=dict(SMALL, extra_norm_every_n_blocks=0), window_size=per_stage,
                               pretrained_window_sizes=pretrained_per_stage, out_indices=(0, 1, 2, 3),
                               pad_small_map=True, drop_path_rate=0.0)
    theirs.eval()  # not chained: mmpretrain's train() returns None
    randomize_swinv2_(theirs, seed=3)
    ours = SwinTransformerV2(**SMALL, window_size=window_size, pretrained_window_sizes=pretrained).eval()
    state_dict, layout = convert_swinv2_state_dict(theirs.state_dict())
    assert layout == 'mmpretrain'
    ours.load_state_dict(state_dict)
    for size in [(2, 97, 131), (1, 225, 301), (1, 1, 1), (2, 64, 64)]:
        x = image(*size)
        with torch.no_grad():
            assert_close(ours(x), theirs(x))


# ------------------------------------------------------------------------------------ arguments
def test_arch_sets_sizes_and_default_window():
    with torch.device('meta'):  # structure only: no weights allocated
        assert SwinTransformerV2(arch='small').window_sizes == (8, 8, 8, 8)
        large = SwinTransformerV2(arch='large')
        assert (large.embed_dims, large.depths, large.num_heads) == (192, (2, 2, 18, 2), (6, 12, 24, 48))
        assert large.window_sizes == (12, 12, 12, 12)
        assert large.layers[3].blocks[1].attn.relative_position_index.shape == (144, 144)
        assert SwinTransformerV2(arch='large', window_size=16).window_sizes == (16, 16, 16, 16)
        assert SwinTransformerV2(arch='base', window_size=(16, 16, 16, 8), pretrained_window_sizes=(12, 12, 12, 6)) \
            .position_bias_normalisers == (12, 12, 12, 6)
        assert SwinTransformerV2(arch='tiny', pretrained_window_sizes=(0, 6, 0, 12)).position_bias_normalisers == \
            (8, 6, 8, 12)


@pytest.mark.parametrize('arch, parameters', [('tiny', 27_579_498), ('small', 48_960_762), ('base', 86_895_608),
                                              ('large', 195_205_620)])
def test_arch_parameter_counts(arch, parameters):
    """The README's counts; equal to mmpretrain 1.2.0's SwinTransformerV2 with out_indices (0, 1, 2, 3)."""
    with torch.device('meta'):
        assert sum(p.numel() for p in SwinTransformerV2(arch=arch).parameters()) == parameters


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='huge'), 'unknown Swin V2 arch'),
    (dict(arch='base', embed_dims=96), 'conflicts'),
    (dict(window_size=0), 'window_size must be a positive int'),
    (dict(window_size=(8, 8, 8)), 'window_size must be a positive int or one positive int per stage'),
    (dict(pretrained_window_sizes=-1), 'pretrained_window_sizes must be a int >= 0'),
    (dict(pretrained_window_sizes=(8, 8)), 'pretrained_window_sizes'),
    (dict(window_size=1), 'a window of 1 has no offsets'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(embed_dims=30, num_heads=(4, 8, 16, 32)), 'divisible'),
    (dict(impl='fused'), 'impl must be one of'),
    (dict(norm_cfg=dict(type='BN')), 'norm_cfg'),
])
def test_bad_construction_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SwinTransformerV2(**kwargs)


def test_window_1_runs_with_a_pretrained_normaliser():
    model = v2_model(window_size=1, pretrained_window_sizes=8)
    x = image(1, 9, 13)
    with torch.no_grad():
        assert_close(model(x), reference(model, x))


def test_initialisation_follows_the_authors():
    model = SwinTransformerV2(**SMALL)
    model.init_weights()
    block = model.layers[1].blocks[1]
    assert torch.equal(block.attn.logit_scale, torch.full((2, 1, 1), math.log(10.0)))
    assert not block.attn.q_bias.any() and not block.attn.v_bias.any()
    assert not block.norm1.weight.any() and not block.norm2.bias.any()  # res-post-norms start at zero
    assert block.attn.cpb_mlp[0].weight.std() < 0.03 and model.norm0.weight.eq(1).all()
    with torch.no_grad():  # every block starts as the identity: the stage outputs are merged patch embeddings
        outs = model(image(1, 32, 32))
    assert torch.isfinite(torch.cat([o.flatten() for o in outs])).all()


def test_without_qkv_bias():
    model = v2_model(qkv_bias=False)
    assert model.layers[0].blocks[0].attn.q_bias is None
    assert not any(name.endswith(('q_bias', 'v_bias')) for name in model.state_dict())
    x = image(2, 40, 56)
    with torch.no_grad():
        assert_close(model(x), reference(model, x))


@pytest.mark.parametrize('frozen_stages', [-1, 0, 2, 4])
def test_frozen_stages(frozen_stages):
    model = SwinTransformerV2(**SMALL, frozen_stages=frozen_stages)
    assert model.train() is model
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    expected = {name for name, _ in model.named_parameters()
                if (frozen_stages >= 0 and name.startswith('patch_embed.'))
                or any(name.startswith((f'layers.{i}.', f'norm{i}.')) for i in range(frozen_stages))}
    assert frozen == expected
    for index, stage in enumerate(model.layers):
        assert all(m.training == (index >= frozen_stages) for m in stage.modules())


def test_with_cp_same_outputs_and_gradients():
    model = v2_model(seed=5).train()
    checkpointed = SwinTransformerV2(**SMALL, drop_path_rate=0.0, with_cp=True).train()
    checkpointed.load_state_dict(model.state_dict())
    x = image(2, 70, 90)
    results = []
    for m in (model, checkpointed):
        xi = x.clone().requires_grad_(True)
        outs = m(xi)
        sum(o.sum() for o in outs).backward()
        results.append((outs, xi.grad))
    assert_close(results[0][0], results[1][0])
    assert_close(results[0][1], results[1][1])
