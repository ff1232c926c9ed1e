"""Swin Transformer V2 numerics against the plainly written reference of docs/design.md ("Swin Transformer V2")
(tests/swinv2_reference.py, in the authors' layout) and against mmpretrain 1.2.0's own SwinTransformerV2, plus the
constructor, which takes mmpretrain's arguments with mmpretrain's meaning."""
import math

import pytest
import torch

from swin_backbones import ConfigError, SwinTransformerV2
from swin_backbones.models.swinv2 import convert_swinv2_state_dict

from .helpers import SMALL, assert_close, load_mmpretrain_swinv2, randomize_swinv2_, to_authors_layout
from .swinv2_reference import reference_forward

GRAD_REL = 5e-5


def v2_model(seed=0, **kwargs):
    kwargs = {**SMALL, 'drop_path_rate': 0.0, **kwargs}
    return randomize_swinv2_(SwinTransformerV2(**kwargs), seed).eval()


def reference(model, image):
    return reference_forward(to_authors_layout(dict(model.named_parameters())), image, model.depths, model.num_heads,
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
        loss(reference_forward(to_authors_layout(ref_params), ref_x, model.depths, model.num_heads, model.window_sizes,
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
def mmpretrain_twin(mmpretrain_swinv2, ours, **theirs_kwargs):
    """mmpretrain's SwinTransformerV2 built with ``theirs_kwargs``, holding ``ours``'s weights (converted from
    ours to mmpretrain's names through the package's converter run backwards: the converter maps each
    mmpretrain key to one of ours, and every tensor of each model must have a place in the other)."""
    theirs = mmpretrain_swinv2(**theirs_kwargs)
    theirs.eval()  # not chained: mmpretrain's train() returns None
    names = {}
    for key in theirs.state_dict():
        converted, _ = convert_swinv2_state_dict({key: torch.empty(0), 'stages.0.blocks.0.attn.w_msa.x': None})
        names.update({key: name for name in converted if name != 'stages.0.blocks.0.attn.x'})
    ours_state = ours.state_dict()
    theirs_state = {key: ours_state[name] for key, name in names.items() if name in ours_state}
    missing, unexpected = theirs.load_state_dict(theirs_state, strict=False)
    assert not unexpected and all(key.endswith(('relative_position_index', 'relative_coords_table'))
                                  for key in missing), missing
    return theirs


def test_arch_names_and_dicts_as_mmpretrain():
    with torch.device('meta'):  # structure only: no weights allocated
        for name, full in [('t', 'tiny'), ('S', 'small'), ('b', 'base'), ('l', 'large')]:
            short, long = SwinTransformerV2(arch=name), SwinTransformerV2(arch=full)
            assert (short.embed_dims, short.depths, short.num_heads) == (long.embed_dims, long.depths, long.num_heads)
        custom = SwinTransformerV2(arch=dict(embed_dims=64, depths=[2, 2, 4, 2], num_heads=[2, 4, 8, 16],
                                             extra_norm_every_n_blocks=0))
        assert (custom.embed_dims, custom.depths, custom.num_heads) == (64, (2, 2, 4, 2), (2, 4, 8, 16))
        # mmpretrain's window default is 8 for every arch, large included.
        assert SwinTransformerV2(arch='large').window_sizes == (8, 8, 8, 8)
        assert SwinTransformerV2(arch='large', window_size=12).stages[3].blocks[1].attn.relative_position_index.shape \
            == (144, 144)
        assert SwinTransformerV2(arch='base', window_size=(16, 16, 16, 8), pretrained_window_sizes=(12, 12, 12, 6)) \
            .position_bias_normalisers == (12, 12, 12, 6)
        assert SwinTransformerV2(arch='tiny', pretrained_window_sizes=(0, 6, 0, 12)).position_bias_normalisers == \
            (8, 6, 8, 12)


@pytest.mark.parametrize('arch', ['tiny', 'small', 'base', 'large'])
def test_arch_parameter_counts_equal_mmpretrain(mmpretrain_swinv2, arch):
    with torch.device('meta'):
        ours = SwinTransformerV2(arch=arch)
    theirs = mmpretrain_swinv2(arch=arch, out_indices=(0, 1, 2, 3))  # on the CPU: it calls .item() while building
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='huge'), 'huge and giant'),
    (dict(arch='g'), 'huge and giant'),
    (dict(arch='enormous'), 'unknown Swin V2 arch'),
    (dict(arch=dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))), 'exactly the keys'),
    (dict(arch=dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), extra_norm_every_n_blocks=6)),
     'extra_norm_every_n_blocks must be 0'),
    (dict(arch=dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), extra_norm_every_n_blocks=0),
          embed_dims=64), 'conflicts'),
    (dict(arch=['tiny']), 'arch must be'),
    (dict(arch='base', embed_dims=96), 'conflicts'),
    (dict(window_size=0), 'window_size must be a positive int'),
    (dict(window_size=(8, 8, 8)), 'window_size must be a positive int or one positive int per stage'),
    (dict(pretrained_window_sizes=-1), 'pretrained_window_sizes must be a int >= 0'),
    (dict(pretrained_window_sizes=(8, 8)), 'pretrained_window_sizes'),
    (dict(window_size=1), 'a window of 1 has no offsets'),
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(frozen_stages=4), 'counts as mmpretrain does'),
    (dict(embed_dims=30, num_heads=(4, 8, 16, 32)), 'divisible'),
    (dict(impl='fused'), 'impl must be one of'),
    (dict(norm_cfg=dict(type='BN')), 'norm_cfg'),
    (dict(interpolate_mode='area'), 'interpolate_mode'),
    (dict(img_size=(256, 256, 3)), 'img_size'),
    (dict(stage_cfgs=dict(block_cfgs=dict(ffn_cfgs=dict(ffn_drop=0.1)))), r'block_cfgs=.*not supported'),
    (dict(stage_cfgs=dict(downsample_cfg=dict(use_post_norm=False))), 'downsample_cfg'),
    (dict(stage_cfgs=dict(mystery=1)), "'mystery' is not supported"),
    (dict(stage_cfgs=[dict()] * 3), 'one dict per stage'),
    (dict(patch_cfg=dict(kernel_size=7)), 'kernel_size=7'),
    (dict(patch_cfg=dict(conv_type='Conv3d')), 'conv_type'),
    (dict(unknown_argument=1), "does not take the argument"),
])
def test_bad_construction_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        SwinTransformerV2(**kwargs)
    assert isinstance(error.value, AssertionError)  # mmpretrain asserts: code catching that catches ours


def test_mmpretrain_arguments_that_describe_this_model_are_accepted(mmpretrain_swinv2):
    kwargs = dict(arch='t', img_size=224, window_size=[8, 8, 8, 8], drop_rate=0., drop_path_rate=0.2,
                  out_indices=(0, 1, 2, 3), use_abs_pos_embed=False, interpolate_mode='bicubic', with_cp=False,
                  frozen_stages=-1, norm_eval=True, pad_small_map=True, norm_cfg=dict(type='LN'),
                  stage_cfgs=dict(downsample_cfg=dict(use_post_norm=True)),
                  patch_cfg=dict(padding='corner', conv_type='Conv2d'), pretrained_window_sizes=[0, 0, 0, 0])
    ours = randomize_swinv2_(SwinTransformerV2(**kwargs)).eval()
    theirs = mmpretrain_twin(mmpretrain_swinv2, ours, **kwargs)
    x = image(1, 97, 130)
    with torch.no_grad():
        assert_close(ours(x), theirs(x))
    assert ours.norm_eval and ours.train().training  # no BatchNorm: norm_eval changes nothing, as in mmpretrain


@pytest.mark.parametrize('mode', ['bicubic', 'bilinear'])
def test_absolute_position_embedding_matches_mmpretrain(mmpretrain_swinv2, mode):
    kwargs = dict(arch=dict(SMALL, extra_norm_every_n_blocks=0), img_size=(96, 128), use_abs_pos_embed=True,
                  interpolate_mode=mode, pad_small_map=True, out_indices=(0, 1, 2, 3), drop_path_rate=0.0)
    ours = randomize_swinv2_(SwinTransformerV2(**kwargs), seed=2).eval()
    assert ours.absolute_pos_embed.shape == (1, 24 * 32, 32)
    theirs = mmpretrain_twin(mmpretrain_swinv2, ours, **kwargs)
    for size in [(1, 96, 128), (2, 75, 113)]:
        x = image(*size)
        with torch.no_grad():
            assert_close(ours(x), theirs(x))


def test_pad_small_map_false_as_mmpretrain(mmpretrain_swinv2):
    """mmpretrain's classification rule: a map whose shorter side equals the window is not shifted; a smaller
    one is refused. 64 x 96 gives stage maps 16 x 24, 8 x 12, 4 x 6 and 2 x 3 for windows 16, 8, 4, 2."""
    kwargs = dict(arch=dict(SMALL, extra_norm_every_n_blocks=0), window_size=[16, 8, 4, 2],
                  pretrained_window_sizes=[8, 8, 4, 4], pad_small_map=False, out_indices=(0, 1, 2, 3),
                  drop_path_rate=0.0)
    ours = randomize_swinv2_(SwinTransformerV2(**kwargs), seed=4).eval()
    theirs = mmpretrain_twin(mmpretrain_swinv2, ours, **kwargs)
    x = image(2, 64, 96)
    with torch.no_grad():
        outs = ours(x)
        assert_close(outs, theirs(x))
        padded = SwinTransformerV2(**{**kwargs, 'pad_small_map': True, 'arch': None, **SMALL}).eval()
        padded.load_state_dict(ours.state_dict())
        assert not torch.allclose(padded(x)[0], outs[0])  # the unshifted first stage is another function
        with pytest.raises(ValueError, match='smaller than the window'):
            ours(image(1, 60, 96))
    assert ours.minimum_input_size() == max(16 * 4, 8 * 8, 4 * 16, 2 * 32) + 1


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 3])
def test_frozen_stages_freeze_what_mmpretrain_freezes(mmpretrain_swinv2, frozen_stages):
    kwargs = dict(arch=dict(SMALL, extra_norm_every_n_blocks=0), out_indices=(0, 1, 2, 3),
                  frozen_stages=frozen_stages, pad_small_map=True)
    ours = SwinTransformerV2(**kwargs)
    assert ours.train() is ours
    theirs = mmpretrain_twin(mmpretrain_swinv2, ours, **kwargs)
    theirs.train()
    names = {key: convert_swinv2_state_dict({key: torch.empty(0), 'x.attn.w_msa.y': None})[0] for key, _ in
             theirs.named_parameters()}
    their_frozen = {name for key, param in theirs.named_parameters() if not param.requires_grad
                    for name in names[key] if name != 'x.attn.y'}
    frozen = {name for name, param in ours.named_parameters() if not param.requires_grad}
    assert frozen == their_frozen and bool(frozen) == (frozen_stages >= 0)
    # Frozen blocks do not drop paths in training (eval mode), as mmpretrain's.
    assert all(not block.drop_path.training for stage in ours.stages[:frozen_stages + 1] for block in stage.blocks)


def test_window_1_runs_with_a_pretrained_normaliser():
    model = v2_model(window_size=1, pretrained_window_sizes=8)
    x = image(1, 9, 13)
    with torch.no_grad():
        assert_close(model(x), reference(model, x))


def test_initialisation_follows_the_authors():
    model = SwinTransformerV2(**SMALL)
    model.init_weights()
    block = model.stages[1].blocks[1]
    assert torch.equal(block.attn.logit_scale, torch.full((2, 1, 1), math.log(10.0)))
    assert not block.attn.q_bias.any() and not block.attn.v_bias.any()
    assert not block.norm1.weight.any() and not block.norm2.bias.any()  # res-post-norms start at zero
    assert block.attn.cpb_mlp[0].weight.std() < 0.03 and model.norm0.weight.eq(1).all()
    with torch.no_grad():  # every block starts as the identity: the stage outputs are merged patch embeddings
        outs = model(image(1, 32, 32))
    assert torch.isfinite(torch.cat([o.flatten() for o in outs])).all()


def test_without_qkv_bias():
    model = v2_model(qkv_bias=False)
    assert model.stages[0].blocks[0].attn.q_bias is None
    assert not any(name.endswith(('q_bias', 'v_bias')) for name in model.state_dict())
    x = image(2, 40, 56)
    with torch.no_grad():
        assert_close(model(x), reference(model, x))


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
