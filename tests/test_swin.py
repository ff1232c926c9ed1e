"""Swin numerics against mmdet 3.3.0's own SwinTransformer holding the same weights (our layout is mmdet's up to
the names inside a block, so each tensor is moved by name, unchanged)."""
import math

import pytest
import torch
from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin

from swin_backbones import ConfigError, SwinTransformer
from swin_backbones.models.swin import ARCH_SETTINGS

from .helpers import SMALL, assert_close, max_abs_diff, mmdet_swin_twin, randomize_, to_mmdet_keys

# Gradients sum over many more terms than outputs, and each parameter's is compared to its own magnitude.
GRADIENT_REL = 1e-4


def paired_models(seed=0, **kwargs):
    """Our Swin with random weights and mmdet's with the same weights, both in eval mode."""
    kwargs.setdefault('drop_path_rate', 0.0)
    ours = randomize_(SwinTransformer(**kwargs), seed).eval()
    return ours, mmdet_swin_twin(ours, **kwargs)


@pytest.fixture(scope='module')
def tiny_pair():
    return paired_models(**ARCH_SETTINGS['tiny'])


@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('size', [(224, 224), (225, 301), (97, 131), (31, 45), (1, 1), (2, 250)])
def test_tiny_matches_mmdet(tiny_pair, size, batch):
    ours, reference = tiny_pair
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(size[0] * batch))
    with torch.no_grad():
        outs = ours(x)
        expected = reference(x)
    assert isinstance(outs, tuple)
    assert [tuple(o.shape[2:]) for o in outs] == [(math.ceil(size[0] / s), math.ceil(size[1] / s))
                                                  for s in (4, 8, 16, 32)]
    assert_close(outs, expected)


def test_tiny_matches_mmdet_at_detection_size(tiny_pair):
    ours, reference = tiny_pair
    x = torch.randn(1, 3, 800, 1333, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        outs = ours(x)
        expected = reference(x)
    assert [tuple(o.shape) for o in outs] == [(1, 96, 200, 334), (1, 192, 100, 167), (1, 384, 50, 84),
                                              (1, 768, 25, 42)]
    assert_close(outs, expected)


@pytest.mark.parametrize('options', [
    dict(window_size=12, pretrain_img_size=96, use_abs_pos_embed=True),
    dict(patch_norm=False, qk_scale=0.3, mlp_ratio=2),
    dict(out_indices=(1, 3), qkv_bias=False),
    dict(window_size=5, act_cfg=dict(type='ReLU')),
    dict(window_size=1),
])
def test_options_match_mmdet(options):
    ours, reference = paired_models(seed=3, **SMALL, **options)
    # mmdet adds the absolute position embedding unresized, so it only runs at the pretraining size.
    size = (96, 96) if options.get('use_abs_pos_embed') else (75, 113)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert_close(ours(x), reference(x))


def _weighted_loss(outs, seed=11):
    generator = torch.Generator().manual_seed(seed)
    return sum((out * torch.randn(out.shape, generator=generator)).sum() for out in outs)


def _grads(model, x, with_params=True):
    x = x.clone().requires_grad_(True)
    model.zero_grad()
    _weighted_loss(model(x)).backward()
    params = {name: param.grad for name, param in model.named_parameters()} if with_params else {}
    return x.grad, params


def test_gradients_match_mmdet():
    ours, reference = paired_models(seed=4, **SMALL, window_size=5)
    ours.train()
    reference.train()
    x = torch.randn(2, 3, 83, 61, generator=torch.Generator().manual_seed(9))
    input_grad, param_grads = _grads(ours, x)
    ref_input_grad, ref_param_grads = _grads(reference, x)
    assert_close(input_grad, ref_input_grad, rel=GRADIENT_REL)
    converted = to_mmdet_keys(param_grads, buffers=False)
    assert set(converted) == set(ref_param_grads)
    assert_close([converted[k] for k in sorted(converted)], [ref_param_grads[k] for k in sorted(converted)],
                 rel=GRADIENT_REL)


def test_with_cp_same_outputs_and_gradients_less_saved_memory():
    plain = randomize_(SwinTransformer(**SMALL, drop_path_rate=0.0), seed=5).train()
    checkpointed = SwinTransformer(**SMALL, drop_path_rate=0.0, with_cp=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 70, 90, generator=torch.Generator().manual_seed(1))

    with torch.no_grad():
        assert max_abs_diff(plain(x), checkpointed(x)) == 0
    input_grad, param_grads = _grads(plain, x)
    cp_input_grad, cp_param_grads = _grads(checkpointed, x)
    assert_close(input_grad, cp_input_grad)
    assert_close([param_grads[k] for k in param_grads], [cp_param_grads[k] for k in param_grads])

    def saved_bytes(model):
        total = 0

        def pack(tensor):
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _weighted_loss(model(x.clone().requires_grad_(True)))
        return total

    assert saved_bytes(checkpointed) < 0.5 * saved_bytes(plain)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 4])
def test_frozen_stages_match_mmdet(frozen_stages):
    ours = SwinTransformer(**SMALL, frozen_stages=frozen_stages, use_abs_pos_embed=True)
    reference = MMDetSwin(**SMALL, frozen_stages=frozen_stages, use_abs_pos_embed=True)
    assert ours.train() is ours
    reference.train()
    frozen = {name: param for name, param in ours.named_parameters() if not param.requires_grad}
    ref_frozen = {name for name, param in reference.named_parameters() if not param.requires_grad}
    assert set(to_mmdet_keys(frozen, buffers=False)) == ref_frozen
    assert bool(frozen) == (frozen_stages >= 0)
    for index, stage in enumerate(ours.stages):
        assert all(m.training == (index >= frozen_stages) for m in stage.modules())
    assert ours.patch_embed.training == (frozen_stages < 0)
    # Frozen parameters get no gradient; the others do.
    _weighted_loss(ours(torch.randn(1, 3, 64, 64, requires_grad=True))).backward()
    assert all(p.grad is None for p in frozen.values())
    assert all(p.grad is not None for n, p in ours.named_parameters() if n not in frozen)


def test_train_and_eval_return_the_module():
    model = SwinTransformer(**SMALL)
    assert model.train() is model
    assert model.eval() is model
    assert not model.training


@pytest.mark.parametrize('size', [(1, 1), (3, 1000), (1000, 3), (127, 1), (33, 33)])
def test_any_size_gives_ceil_shapes(size):
    model = SwinTransformer(**SMALL).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    for out, stride, channels in zip(outs, (4, 8, 16, 32), (32, 64, 128, 256)):
        assert out.shape == (1, channels, math.ceil(size[0] / stride), math.ceil(size[1] / stride))
        assert out.is_contiguous()
        assert torch.isfinite(out).all()


def test_arch_sets_sizes_and_conflicts_are_errors():
    base = SwinTransformer(arch='base')
    assert (base.embed_dims, base.depths, base.num_heads) == (128, (2, 2, 18, 2), (4, 8, 16, 32))
    assert SwinTransformer(arch='base', embed_dims=128).embed_dims == 128
    with pytest.raises(ValueError, match='conflicts'):
        SwinTransformer(arch='base', embed_dims=96)
    with pytest.raises(ValueError, match='unknown Swin arch'):
        SwinTransformer(arch='huge')


@pytest.mark.parametrize('kwargs, message', [
    (dict(out_indices=(4,)), 'out_indices'),
    (dict(out_indices=(1, 1)), 'out_indices'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(strides=(2, 2, 2, 2)), 'strides'),
    (dict(strides=(4, 2, 2)), 'strides'),
    (dict(strides=(4, 0, 2, 2)), 'strides'),
    (dict(pretrain_img_size=(224, 224, 224)), 'pretrain_img_size'),
    (dict(window_size=0), 'window_size'),
    (dict(depths=(2, 2, 2), num_heads=(1, 2, 4, 8), embed_dims=32, strides=(4, 2, 2)), 'one entry per stage'),
    (dict(embed_dims=30, num_heads=(4, 8, 16, 32)), 'divisible'),
    (dict(norm_cfg=dict(type='BN')), 'norm_cfg'),
    (dict(act_cfg=dict(type='Mystery')), 'act_cfg'),
    (dict(pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth')), 'same time'),
])
def test_bad_construction_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        SwinTransformer(**kwargs)
    # Code written against mmdet, which asserts, catches these as AssertionError; ours as ValueError.
    assert isinstance(error.value, AssertionError) and isinstance(error.value, ValueError)


@pytest.mark.parametrize('strides', [(4, 2, 2, 1), (4, 1, 2, 2), (4, 1, 1, 1), (4, 3, 2, 2)])
def test_every_strides_mmdet_accepts_matches_mmdet(strides):
    ours, reference = paired_models(seed=6, **SMALL, strides=strides, window_size=5)
    x = torch.randn(2, 3, 75, 61, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        outs, expected = ours(x), reference(x)
    assert [o.shape for o in outs] == [e.shape for e in expected]
    assert_close(outs, expected)
    assert ours.out_strides == [4 * math.prod(strides[1:i + 1]) for i in range(4)]
