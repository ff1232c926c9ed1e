"""The fast paths against the plain path on the device chosen with ``--device`` (default cpu), as
tools/gpu_check.py runs them on a GPU: Swin, Swin V2 and CrossFormer (paper and ++ grouping) with the same
random weights, outputs and gradients in fp32 (default kernels and ``save_memory``), under fp16 and bf16
autocast, with activation checkpointing (``with_cp``), at odd sizes with batches 1 and 2, and the peak
memory of a training step with ``save_memory``.

Sizes: 1 x 1, 97 x 131 and, on a GPU, the detection size 800 x 1333 (on a CPU it would take minutes;
tests/test_fast_paths.py covers the CPU kernels one by one). Each test records what it measured with
``record_property``; tools/gpu_check.py puts those numbers in its report. Marked slow: the file takes
20 to 40 s on a CPU.
"""
import pytest
import torch

from benchmarks.benchmark import exact_fp32, peak_memory
from swin_backbones import CrossFormer, SwinTransformer, SwinTransformerV2

from .helpers import FP32_REL, randomize_, randomize_swinv2_, scaled_diff

pytestmark = pytest.mark.slow

SMALL = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
MODELS = {
    'swin': (SwinTransformer, SMALL),
    'swinv2': (SwinTransformerV2, dict(SMALL, window_size=8)),
    'crossformer': (CrossFormer, SMALL),
    'crossformer-pp': (CrossFormer, dict(SMALL, lda_type='pp', use_acl=True)),
}
SIZES = {'cuda': ((1, 1), (97, 131), (800, 1333)), 'cpu': ((1, 1), (97, 131))}
AUTOCAST_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}

# fp32 tolerances, relative to each tensor's magnitude (tests/conftest.py: FP32_REL); Swin V2's input gradient
# passes back through cosine attention with logit scales up to 100, where the plain path's own error against
# float64 is 9e-6 (tests/test_fast_paths.py), so the two fp32 paths are compared to 3e-5 there.
INPUT_GRAD_REL = {'swinv2': 3e-5}

# Under autocast both paths round matmul inputs to 8 (bf16) or 11 (fp16) significant bits, in other places
# and orders, so their results differ by far more than in fp32, by amounts that depend on the data. The fair
# measure is each path's error against the fp32 plain path: the fast path's may be at most
# AUTOCAST_ERROR_RATIO times the plain path's plus AUTOCAST_FLOOR (4 unit roundoffs of the dtype, for
# tensors that the plain path happens to round almost exactly), and never above AUTOCAST_MAX_ERROR, so that
# both paths going wrong together cannot pass. Measured on the CPU (the small models here, 1 x 1 to 97 x 131):
# errors of 1e-3 to 9e-3 (fp16) and 1e-2 to 8.8e-2 (bf16, parameter gradients the largest), the fast path's
# at most 2.1 times the plain path's (at most 0.61 of what is allowed, also with AVX2 and SSE4.1 kernels);
# the caps are 5 (fp16) and 2.3 (bf16) times the largest error measured.
AUTOCAST_ERROR_RATIO = 3.0
AUTOCAST_FLOOR = {'fp16': 4 * 2 ** -11, 'bf16': 4 * 2 ** -8}
AUTOCAST_MAX_ERROR = {'fp16': 0.05, 'bf16': 0.2}


def pytest_generate_tests(metafunc):
    if 'shape' in metafunc.fixturenames:
        device = metafunc.config.getoption('device').split(':')[0]
        shapes = [(batch, height, width) for height, width in SIZES[device] for batch in (1, 2)]
        if 'dtype' in metafunc.fixturenames:  # autocast: batch 2 only
            shapes = [shape for shape in shapes if shape[0] == 2]
        metafunc.parametrize('shape', shapes, ids=[f'{b}x{h}x{w}' for b, h, w in shapes])


@pytest.fixture(autouse=True)
def no_tf32():
    """The fp32 comparisons and the autocast tests' fp32 reference need full fp32 (no TF32) on GPUs."""
    with exact_fp32():
        yield


def fast_and_plain(name, device, **options):
    """impl='fast' (with ``options``) and impl='plain' with the same random weights, on ``device``."""
    cls, kwargs = MODELS[name]
    fast = cls(drop_path_rate=0.0, **kwargs, **options)
    (randomize_swinv2_ if cls is SwinTransformerV2 else randomize_)(fast)
    plain = cls(drop_path_rate=0.0, impl='plain', **kwargs)
    plain.load_state_dict(fast.state_dict())
    return fast.to(device), plain.to(device)


def image(shape, device, seed=0):
    return torch.randn(shape[0], 3, *shape[1:], generator=torch.Generator().manual_seed(seed)).to(device)


def training_step(model, x, dtype=None):
    """Outputs (flattened and joined, fp32), the input gradient and every parameter gradient of a random
    projection of the outputs, in training mode, under autocast to ``dtype`` when given."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        outs = model(x)
    flat = torch.cat([out.float().flatten(1) for out in outs], 1)
    weight = torch.randn(flat.shape, generator=torch.Generator().manual_seed(1)).to(x.device)
    (flat * weight).sum().backward()
    return flat.detach(), x.grad, {name: param.grad for name, param in model.named_parameters()}


def inference(model, x, dtype=None):
    model.eval()
    with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype or torch.float32,
                                                enabled=dtype is not None):
        return torch.cat([out.float().flatten(1) for out in model(x)], 1)


def gradient_diff(grads, reference) -> float:
    """The largest parameter-gradient difference relative to the model's largest reference gradient (some
    gradients, like the last bias of a position-bias MLP, are sums of softmax gradients and so zero up to
    rounding: relative to their own magnitude they would be noise)."""
    scale = max(g.abs().max().item() for g in reference.values())
    return max((grads[n].double() - reference[n].double()).abs().max().item() for n in reference) / scale


def compare_training(fast, plain, x, record_property):
    """Training outputs, input gradients and parameter gradients of the two models, recorded and returned
    as scaled differences."""
    (outs, grad_x, grads), (outs_plain, grad_x_plain, grads_plain) = [training_step(m, x) for m in (fast, plain)]
    diffs = dict(train_outputs=scaled_diff(outs, outs_plain), input_grad=scaled_diff(grad_x, grad_x_plain),
                 param_grads=gradient_diff(grads, grads_plain))
    for key, value in diffs.items():
        record_property(key, value)
    return diffs


@pytest.mark.parametrize('options', ['default', 'save_memory'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_fast_matches_plain_in_fp32(name, options, shape, device, record_property):
    fast, plain = fast_and_plain(name, device, save_memory=options == 'save_memory')
    x = image(shape, device)
    inference_diff = scaled_diff(inference(fast, x), inference(plain, x))
    record_property('inference_outputs', inference_diff)
    diffs = compare_training(fast, plain, x, record_property)
    assert inference_diff <= FP32_REL
    assert diffs['train_outputs'] <= FP32_REL
    assert diffs['input_grad'] <= INPUT_GRAD_REL.get(name, FP32_REL)
    assert diffs['param_grads'] <= FP32_REL


@pytest.mark.parametrize('save_memory', [False, True])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_with_cp_matches_plain(name, save_memory, device, record_property):
    fast, plain = fast_and_plain(name, device, with_cp=True, save_memory=save_memory)
    diffs = compare_training(fast, plain, image((2, 97, 131), device), record_property)
    assert diffs['train_outputs'] <= FP32_REL
    assert diffs['input_grad'] <= INPUT_GRAD_REL.get(name, FP32_REL)
    assert diffs['param_grads'] <= FP32_REL


def all_finite(outs, grad_x, grads) -> bool:
    return bool(torch.isfinite(outs).all() and torch.isfinite(grad_x).all()
                and all(torch.isfinite(g).all() for g in grads.values()))


@pytest.mark.parametrize('dtype', sorted(AUTOCAST_DTYPES))
@pytest.mark.parametrize('name', sorted(MODELS))
def test_fast_under_autocast_is_as_accurate_as_plain(name, dtype, shape, device, record_property):
    """Inference and a training step under autocast: finite, and the fast path's outputs and gradients as
    close to the fp32 plain path as the plain path's under the same autocast (AUTOCAST_* above)."""
    fast, plain = fast_and_plain(name, device)
    x, low = image(shape, device), AUTOCAST_DTYPES[dtype]
    reference = training_step(plain, x)
    reference_inference = inference(plain, x)
    errors = {}
    for path, model in (('fast', fast), ('plain', plain)):
        outs, grad_x, grads = training_step(model, x, low)
        assert all_finite(outs, grad_x, grads), f'{path} path under {dtype} autocast: not finite'
        inferred = inference(model, x, low)
        assert torch.isfinite(inferred).all(), f'{path} path under {dtype} autocast: inference not finite'
        errors[path] = dict(inference_outputs=scaled_diff(inferred, reference_inference),
                            train_outputs=scaled_diff(outs, reference[0]),
                            input_grad=scaled_diff(grad_x, reference[1]),
                            param_grads=gradient_diff(grads, reference[2]))
    for key, error in errors['fast'].items():
        record_property(f'{key}_error', error)
        record_property(f'{key}_plain_error', errors['plain'][key])
    for key, error in errors['fast'].items():
        allowed = min(AUTOCAST_ERROR_RATIO * errors['plain'][key] + AUTOCAST_FLOOR[dtype], AUTOCAST_MAX_ERROR[dtype])
        assert error <= allowed, (f'{key}: fast path {error:.3g} from fp32, plain path {errors["plain"][key]:.3g} '
                                  f'(allowed {allowed:.3g})')


# save_memory drops the attention probabilities (49 floats a token and head in 7 x 7 windows) and one copy of
# the MLP's hidden activation (4C floats a token) from the roughly 16C + 49 heads floats a token that a block
# keeps: measured 0.75 to 0.79 of the plain path's memory on the CPU (these models, 96 x 160 to 224 x 320,
# batch 1 and 2); 0.9 leaves room for the temporary buffers in a GPU's peak. The default path may recompute
# some attention itself (where the kernel choice finds it faster), so against it: no more.
SAVE_MEMORY_RATIO = 0.9


@pytest.mark.parametrize('name', ['swin', 'crossformer'])
def test_save_memory_lowers_peak_memory(name, device, record_property):
    """A training step's memory at the largest size, batch 2 (on a GPU the peak allocation, on a CPU the
    activations kept for backward, as the benchmark measures them)."""
    x = image((2, *SIZES[device.type][-1]), device)
    saving, plain = fast_and_plain(name, device, save_memory=True)
    default, _ = fast_and_plain(name, device)
    memory = {label: peak_memory(model.train(), x, 'train', device, torch.float32)
              for label, model in (('save_memory', saving), ('default', default), ('plain', plain))}
    for label, value in memory.items():
        record_property(f'{label}_MiB', value / 2 ** 20)
    assert memory['save_memory'] < SAVE_MEMORY_RATIO * memory['plain']
    assert memory['save_memory'] <= memory['default']
