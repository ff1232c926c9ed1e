"""The fixed kernel rules of the fast path (swin_backbones.models.ops.rules), the FastPath each backbone builds
once from its arguments and shares with its layers, and what a backbone tells about them. Whether each kernel
computes the right numbers is tests/test_fast_paths.py's business."""
import pytest
import torch

from swin_backbones import SwinTransformer
from swin_backbones.models.ops import rules as kernels
from swin_backbones.models.ops.rules import SHORT_GROUP, FastPath

from .helpers import BACKBONES, SMALL

CPU, CUDA, META = torch.device('cpu'), torch.device('cuda'), torch.device('meta')
onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='torch built without oneDNN')


def on_cpu_with(monkeypatch, capability: str) -> None:
    """Make ATen report ``capability`` ('AVX512', 'AVX2', ...) as this CPU's."""
    monkeypatch.setattr(torch.backends.cpu, 'get_cpu_capability', lambda: capability)


@onednn
def test_cpu_rules(monkeypatch):
    f32 = torch.float32
    on_cpu_with(monkeypatch, 'AVX512')
    assert kernels.rule('linear', CPU, f32) == 'onednn'
    assert kernels.rule('linear', CPU, torch.float16) == 'aten'  # oneDNN's matmul does not take fp16
    on_cpu_with(monkeypatch, 'AVX2')
    assert kernels.rule('linear', CPU, f32) == 'aten'  # MKL's matmul is the faster one on AVX2-only CPUs
    assert FastPath.from_arguments(kernels=dict(linear='onednn')).kernel('linear', CPU, f32) == 'onednn'
    lengths = (1, 49, SHORT_GROUP, SHORT_GROUP + 1, 256, 1050)
    assert [kernels.rule('attention_backward', CPU, f32, length=n) for n in lengths] == [
        'store', 'store', 'store', 'recompute', 'recompute', 'recompute']
    assert [kernels.rule('strided_conv', CPU, f32, kernel_to_stride=ratio) for ratio in (1, 2, 4, 8)] == [
        'direct', 'direct', 'space_to_depth', 'space_to_depth']
    assert [kernels.rule('tiles', CPU, f32, width=width) for width in (96, 192, 255, 256, 384, 768)] == [
        'tiled', 'tiled', 'tiled', 'whole', 'whole', 'whole']


def test_gpu_rules():
    """Devices other than CPUs get PyTorch's own kernels: no oneDNN, SDPA with its fused backward, F.conv2d."""
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert kernels.rule('linear', CUDA, dtype) == 'aten'
        assert kernels.rule('attention_backward', CUDA, dtype, length=49) == 'sdpa'
        assert kernels.rule('strided_conv', CUDA, dtype, kernel_to_stride=8) == 'direct'
        assert kernels.rule('tiles', CUDA, dtype, width=96) == 'whole'
    assert FastPath(save_memory=True).kernel('attention_backward', CUDA, torch.float32, length=49) == 'sdpa'


def test_every_rule_picks_an_available_kernel():
    for device in (CPU, CUDA, META):
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            for name in kernels.DECISIONS:
                for shape in (dict(length=49), dict(length=1050), dict(kernel_to_stride=8), dict(width=96), {}):
                    if ('length' in shape) != (name == 'attention_backward') and shape:
                        continue
                    assert kernels.rule(name, device, dtype, **shape) in kernels.available(name, device, dtype)


def test_overrides_and_save_memory():
    options = FastPath.from_arguments(save_memory=True, kernels=dict(linear='aten'))
    assert options.kernel('linear', CPU, torch.float32) == 'aten'
    assert options.kernel('attention_backward', CPU, torch.float32, length=49) == 'recompute'
    pinned = FastPath.from_arguments(save_memory=True, kernels=dict(attention_backward='store'))
    assert pinned.kernel('attention_backward', CPU, torch.float32, length=1050) == 'store'  # explicit wins


def test_an_override_the_device_cannot_run_is_an_error():
    with pytest.raises(ValueError, match=r"linear='onednn' cannot run on meta .* available there: \('aten',\)"):
        FastPath.from_arguments(kernels=dict(linear='onednn')).kernel('linear', META, torch.float32)
    with pytest.raises(ValueError, match="attention_backward='sdpa' cannot run on cpu"):
        FastPath.from_arguments(kernels=dict(attention_backward='sdpa')).kernel(
            'attention_backward', CPU, torch.float32, length=49)


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_fast_path_arguments_are_checked_once_at_the_constructor(backbone):
    build = BACKBONES[backbone]
    with pytest.raises(ValueError, match="impl must be one of"):
        build(impl='fused')
    with pytest.raises(ValueError, match="impl must be one of"):
        build(impl=None)
    with pytest.raises(ValueError, match="kernels: unknown kernel decision 'matmul'"):
        build(kernels=dict(matmul='aten'))
    with pytest.raises(ValueError, match=r"kernels: linear must be one of \('aten', 'onednn'\), got 'mkl'"):
        build(kernels=dict(linear='mkl'))
    with pytest.raises(TypeError, match='kernels must be a dict'):
        build(kernels='aten')
    with pytest.raises(ValueError, match="save_memory and kernels .* need impl='fast'"):
        build(impl='plain', save_memory=True)
    with pytest.raises(ValueError, match="save_memory and kernels .* need impl='fast'"):
        build(impl='plain', kernels=dict(attention_backward='store'))


@pytest.mark.parametrize('backbone', list(BACKBONES))
def test_every_layer_shares_the_backbones_fast_path(backbone):
    model = BACKBONES[backbone](**SMALL, save_memory=True, kernels=dict(linear='aten'))
    holders = [module for module in model.modules() if hasattr(module, 'fast_path')]
    assert len(holders) > 2 * sum(model.depths)
    assert all(module.fast_path is model.fast_path for module in holders)


@onednn
def test_the_repr_says_which_kernels_run(monkeypatch):
    on_cpu_with(monkeypatch, 'AVX512')
    two_stages = dict(embed_dims=16, depths=(2, 2), num_heads=(1, 2), strides=(4, 2), out_indices=(0, 1))
    text = repr(SwinTransformer(**two_stages))
    assert ('kernels: cpu float32: linear=onednn, attention_backward=store (<= 64 tokens) / '
            'recompute (longer), strided_conv=direct (kernel < 4 x stride) / space_to_depth (wider), '
            'tiles=tiled (< 256 channels) / whole (wider)') in text
    assert "kernels: impl='plain'" in repr(SwinTransformer(**two_stages, impl='plain'))
    pinned = SwinTransformer(**two_stages, save_memory=True,
                             kernels=dict(linear='aten', strided_conv='direct', tiles='whole')).bfloat16()
    assert ('kernels: cpu bfloat16: linear=aten, attention_backward=recompute, strided_conv=direct, tiles=whole, '
            'save_memory') in repr(pinned)
