import math
import os

import pytest
import torch
import torch.nn as nn

# The suite's timings assume CI's two cores; OMP_NUM_THREADS, when set, chooses (checks run with 1 and 2).
if 'OMP_NUM_THREADS' not in os.environ:
    torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption('--device', default='cpu',
                     help='device of the device-parametrised checks (tests/test_device.py): cpu (default), cuda or '
                          'cuda:N; tools/gpu_check.py runs them with cuda')


def selected_device(config) -> torch.device:
    """The ``--device`` option as a torch.device; a device that is malformed or absent stops the run (a check
    asked for on a GPU must not quietly run on the CPU)."""
    name = config.getoption('device')
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f'--device {name!r}: {error}') from None
    if device.type not in ('cpu', 'cuda'):
        raise pytest.UsageError(f'--device takes cpu, cuda or cuda:N, got {name!r}')
    if device.type == 'cuda' and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise pytest.UsageError(f'--device {name}: torch {torch.__version__} sees {torch.cuda.device_count()} CUDA '
                                'device(s)')
    return device


def pytest_configure(config):
    selected_device(config)


@pytest.fixture(scope='session')
def device(pytestconfig) -> torch.device:
    return selected_device(pytestconfig)


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.2, weight_std: float = 0.05):
    """Fills every parameter with random values so that comparisons can fail.

    Linear/conv weights get ``weight_std`` (about a trained network's scale, so that deep stacks stay
    well conditioned); biases, position bias tables and LayerNorm shifts get ``std``, and LayerNorm
    scales 1 + ``std`` noise: position-bias indexing or masking errors change the outputs visibly.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            for name, param in submodule.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if isinstance(submodule, (torch.nn.Linear, torch.nn.Conv2d)) and name == 'weight':
                    param.copy_(noise * weight_std)
                elif isinstance(submodule, torch.nn.LayerNorm) and name == 'weight':
                    param.copy_(1 + noise * std)
                else:
                    param.copy_(noise * std)
    return module


def randomize_swinv2_(model: torch.nn.Module, seed: int = 0):
    """:func:`randomize_`, then weights that make every Swin V2 term visible: logit scales around log 10 (the
    first head of the first block above the clamp at log 100), and a position bias MLP whose output varies
    strongly with the offset. Takes this package's and mmpretrain's parameter names."""
    randomize_(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    logit_scales = [param for name, param in model.named_parameters() if name.endswith('logit_scale')]
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('logit_scale'):
                param.copy_(math.log(10.0) + torch.randn(param.shape, generator=generator))
            elif name.endswith('cpb_mlp.0.weight'):
                param.copy_(torch.randn(param.shape, generator=generator))
            elif name.endswith('cpb_mlp.2.weight'):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        logit_scales[0][0] = 5.5  # clamped to log 100 = 4.61
    return model


# Float32 results of one function computed two ways (other kernels, vector units, thread counts or batch
# splits) differ by rounding that grows with the magnitude of the values, so comparisons are relative to
# it. Measured: at most 1.7e-6 of the largest value (AVX2 and SSE4.1 kernels, 1 and 2 threads, whole
# published structures included); a wrong mask, index or order changes outputs by 1e-2 and more.
FP32_REL = 1e-5


def _pairs(outs_a, outs_b):
    if isinstance(outs_a, torch.Tensor):
        outs_a, outs_b = [outs_a], [outs_b]
    assert len(outs_a) == len(outs_b)
    for a, b in zip(outs_a, outs_b):
        assert a.shape == b.shape, (a.shape, b.shape)
    return zip(outs_a, outs_b)


def max_abs_diff(outs_a, outs_b) -> float:
    """The largest absolute difference over pairs of tensors (for exact comparisons and for reporting)."""
    return max((a - b).abs().max().item() for a, b in _pairs(outs_a, outs_b))


def scaled_diff(outs_a, outs_b) -> float:
    """The largest ``max|a - b| / max|b|`` over pairs of tensors: each pair relative to the magnitude of
    its reference ``b`` (at least 1e-6, so that all-zero references compare absolutely)."""
    return max(((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-6)).item()
               for a, b in _pairs(outs_a, outs_b))


def assert_close(outs_a, outs_b, rel: float = FP32_REL) -> None:
    """Asserts :func:`scaled_diff` <= rel, reporting both the scaled and the absolute difference."""
    scaled = scaled_diff(outs_a, outs_b)
    assert scaled <= rel, f'difference {scaled:.3g} of the magnitude (abs {max_abs_diff(outs_a, outs_b):.3g}) > {rel}'


@pytest.fixture(autouse=True)
def no_default_scope_left_behind():
    """A default scope left set would send other tests' registry look-ups to mmdet's or mmseg's registry."""
    from mmengine.registry import DefaultScope

    def scope():
        instance = DefaultScope.get_current_instance()
        return instance and instance.scope_name
    before = scope()
    yield
    assert scope() == before


# ------------------------------------------------------------------ whole-model checkpoints
NECK = {'neck.weight': torch.ones(4, 4, 1, 1), 'neck.bias': torch.zeros(4)}


class WholeModel(nn.Module):
    """What a detector or segmentor is to the loaders: a backbone under ``backbone.`` and other parts."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(4, 4, 1)


def whole_model_checkpoint(path, backbone: nn.Module, prefix: str = 'backbone.') -> dict:
    """Saves ``backbone``'s weights under ``prefix`` with a neck beside it, as a detector checkpoint (state dict
    and meta); returns the state dict."""
    state = {prefix + key: value for key, value in backbone.state_dict().items()}
    state.update({prefix[:-len('backbone.')] + key: value for key, value in NECK.items()})
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, path)
    return state
