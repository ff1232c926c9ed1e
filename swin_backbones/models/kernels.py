"""Which kernel runs each fast-path operation: measured on the device at hand, once, and overridable.

The fast paths have alternatives whose speed depends on the machine: a oneDNN matmul with its epilogue
is faster than MKL's on some CPUs and slower on others, a fused attention kernel beats three plain
operations for long groups but not always for 49-token windows, and oneDNN's direct convolution takes
seconds for CrossFormer's 32x32 embedding kernel on some AVX2 CPUs. Rather than fixing one choice, each
decision below is made by a short micro-benchmark of its candidates the first time it is needed, for
the device type, the CPU's vector capability (``torch.backends.cpu.get_cpu_capability()``), the
number of threads and the dtype, and cached for the process. Every candidate computes the same
function (``tests/test_fast_paths.py`` checks each one against the plain path), so the choice changes
speed and float rounding only.

Overrides, in order of precedence:

* the backbones' ``kernels`` argument, e.g. ``kernels=dict(linear='aten')``;
* the environment variable ``SWIN_BACKBONES_KERNELS``, e.g. ``linear=aten,attention=sdpa``;
* with ``torch.use_deterministic_algorithms(True)`` (what mmengine's ``randomness.deterministic=True``
  sets), the first candidate of each decision, unmeasured: a measurement can pick other kernels in
  another run, which rounds differently, and a deterministic run must repeat to the bit;
* otherwise the measurement (:func:`measured_choices` lists what was decided).

Decisions and candidates (the first is kept unless another is measurably faster):

* ``linear``: the forward matmul of the linear layers with its epilogue (bias, the residual add,
  the activation in inference): ``aten`` (``addmm``, then the epilogue in place) or ``onednn``
  (``mkldnn._linear_pointwise``, one pass; CPU, fp32/bf16 only).
* ``weight_grad``: the layout of the weight-gradient matmul in the linear layers' backward:
  ``grad_t_input`` (dy^T @ x, in the weight's layout directly, as autograd's backward of ``F.linear``
  does) or ``input_t_grad`` (x^T @ dy, transposed afterwards).
* ``attention``: the attention core without gradients: ``sdpa`` (``F.scaled_dot_product_attention``
  with bias and mask as one additive mask) or ``matmul`` (matmul, softmax, matmul).
* ``attention_backward``: how training attention gets its softmax probabilities back: ``store``
  (kept from the forward; (groups, heads, N, N) floats per layer) or ``recompute`` (rebuilt from q, k
  and v in backward, in chunks: memory-saving, chosen here only where it is measured faster; the
  backbones' ``save_memory=True`` always uses it).
* ``strided_conv``: the patch embedding and merging convolutions (kernel a multiple of the stride):
  ``direct`` (``F.conv2d``) or ``space_to_depth`` (stride folded into channels, then a stride-1 conv).

``attention`` and ``attention_backward`` are decided separately for each class of group length in
:data:`LENGTH_CLASSES`: short (Swin's 7 x 7 and 8 x 8 windows), medium (16 x 16 windows, CrossFormer's
long-distance groups of 512-pixel inputs) and long (those of detection-sized inputs);
``strided_conv`` for each convolution's channels, kernel, stride and padding, and whether it is trained.
"""
import os
import threading
import time
from typing import Callable, Dict, Hashable, Mapping, NamedTuple, Optional, Tuple

import torch

ENV_VARIABLE = 'SWIN_BACKBONES_KERNELS'
# (longest group, class): groups up to that many tokens are timed and decided together.
LENGTH_CLASSES = ((64, 'short'), (320, 'medium'), (float('inf'), 'long'))


class Decision(NamedTuple):
    candidates: Tuple[str, ...]  # the first is the default when the others are not measurably faster
    available: Callable[[torch.device, torch.dtype], Tuple[str, ...]]
    # (decision, device, dtype, shape class) -> {candidate: a call that runs its representative work}
    workloads: Callable[[str, torch.device, torch.dtype, Hashable], Dict[str, Callable[[], object]]]
    # The part of the caller's shape the choice depends on (None: one choice for every shape).
    shape_class: Optional[Callable[[object], Hashable]] = None


def _all(*names):
    return lambda device, dtype: names


def _onednn_usable(device: torch.device, dtype: torch.dtype) -> bool:
    """oneDNN's CPU matmuls: fp32, and bf16 where the CPU has oneDNN's bf16 kernels."""
    return (device.type == 'cpu' and torch.backends.mkldnn.is_available()
            and (dtype == torch.float32 or dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def _linear_available(device, dtype):
    return ('aten', 'onednn') if _onednn_usable(device, dtype) else ('aten',)


def length_class(length: int) -> str:
    return next(name for longest, name in LENGTH_CLASSES if length <= longest)


# Layer shapes timed for the linear decisions: (tokens, in, out, epilogue): an MLP of the first stage
# of the tiny and small models (rows of a 56 x 56 map) and a qkv projection of the second.
_LINEAR_SHAPES = ((3136, 96, 384, 'gelu'), (3136, 384, 96, 'add'), (784, 192, 576, 'none'))
# Attention shapes (groups, heads, N, head dim) for each length class: Swin / CrossFormer short-distance
# windows, then many groups of a medium length, then several long ones (a 1024-token group per 32 image
# rows and columns of a CrossFormer long-distance layer); the stored probabilities of the latter two
# (50 MB) outgrow the caches as they do in a real layer.
_ATTENTION_SHAPES = {'short': ((64, 3, 49, 32), (16, 6, 49, 32)), 'medium': ((64, 3, 256, 32),),
                     'long': ((4, 3, 1024, 32),)}
# Convolutions are timed on a 32 x 32 output map.
_CONV_OUTPUT_SIDE = 32


def _randn(*shape, device, dtype, generator, requires_grad=False):
    return torch.randn(*shape, device=device, dtype=dtype, generator=generator).requires_grad_(requires_grad)


def _linear_workloads(decision, device, dtype, shape_class):
    from .layers import linear_forward, linear_weight_grad
    generator = torch.Generator(device=device).manual_seed(0)
    tensors = dict(device=device, dtype=dtype, generator=generator)
    work = {}
    for candidate in DECISIONS[decision].available(device, dtype):
        calls = []
        for rows, fan_in, fan_out, epilogue in _LINEAR_SHAPES:
            x, grad = _randn(rows, fan_in, **tensors), _randn(rows, fan_out, **tensors)
            weight, bias = _randn(fan_out, fan_in, **tensors), _randn(fan_out, **tensors)
            if decision == 'linear':
                residual = grad if epilogue == 'add' else None
                activation = epilogue if epilogue == 'gelu' else 'none'
                calls.append(lambda x=x, w=weight, b=bias, r=residual, a=activation, c=candidate:
                             linear_forward(x, w, b, a, r, c))
            else:
                calls.append(lambda x=x, g=grad, c=candidate: linear_weight_grad(g, x, c))
        work[candidate] = lambda calls=calls: [call() for call in calls]
    return work


def _attention_workloads(decision, device, dtype, shape_class):
    from . import attention
    generator = torch.Generator(device=device).manual_seed(0)
    tensors = dict(device=device, dtype=dtype, generator=generator)
    training = decision == 'attention_backward'
    inputs = [(_randn(groups, length, 3, heads, dim, requires_grad=training, **tensors),
               _randn(heads, length, length, requires_grad=training, **tensors), dim ** -0.5)
              for groups, heads, length, dim in _ATTENTION_SHAPES[shape_class]]
    work = {}
    for candidate in DECISIONS[decision].available(device, dtype):
        if training:
            def run(candidate=candidate):
                with torch.enable_grad():
                    for qkv, bias, scale in inputs:
                        out = attention.attention_training(qkv, bias, None, scale, candidate)
                        out.backward(torch.ones_like(out))
        else:
            def run(candidate=candidate):
                return [attention.attention_forward(qkv, bias, None, scale, candidate) for qkv, bias, scale in inputs]
        work[candidate] = run
    return work


def _conv_workloads(decision, device, dtype, shape_class):
    from .layers import strided_conv2d
    in_channels, out_channels, kernel, stride, padding, trained, input_grad = shape_class
    generator = torch.Generator(device=device).manual_seed(0)
    tensors = dict(device=device, dtype=dtype, generator=generator)
    side = (_CONV_OUTPUT_SIDE - 1) * stride + kernel - 2 * padding
    x = _randn(1, in_channels, side, side, requires_grad=input_grad, **tensors)
    weight = _randn(out_channels, in_channels, kernel, kernel, requires_grad=trained, **tensors)
    bias = _randn(out_channels, requires_grad=trained, **tensors)
    work = {}
    for candidate in DECISIONS[decision].available(device, dtype):
        def run(candidate=candidate):
            with torch.enable_grad():
                out = strided_conv2d(x, weight, bias, stride, padding, candidate)
                if out.requires_grad:
                    out.backward(torch.ones_like(out))
        work[candidate] = run
    return work


DECISIONS: Dict[str, Decision] = {
    'linear': Decision(('aten', 'onednn'), _linear_available, _linear_workloads),
    'weight_grad': Decision(('grad_t_input', 'input_t_grad'), _all('grad_t_input', 'input_t_grad'),
                            _linear_workloads),
    'attention': Decision(('sdpa', 'matmul'), _all('sdpa', 'matmul'), _attention_workloads, length_class),
    'attention_backward': Decision(('store', 'recompute'), _all('store', 'recompute'), _attention_workloads,
                                   length_class),
    # Shape: (in channels, out channels, kernel, stride, padding, trained, input needs its gradient).
    'strided_conv': Decision(('direct', 'space_to_depth'), _all('direct', 'space_to_depth'), _conv_workloads,
                             tuple),
}

# A candidate other than the default must be this much faster to be chosen: keeps the choice stable
# between runs where two candidates are equally fast.
_MARGIN = 0.03
_REPEATS = 3

_measured: Dict[tuple, str] = {}
_timings: Dict[tuple, Dict[str, float]] = {}
_lock = threading.Lock()


def check_overrides(overrides: Optional[Mapping[str, str]], source: str = 'kernels') -> Dict[str, str]:
    """Validates a {decision: candidate} mapping; raises ValueError naming ``source`` and the bad entry."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise TypeError(f'{source} must be a dict of {{decision: kernel}}, got {type(overrides).__name__}')
    for name, candidate in overrides.items():
        if name not in DECISIONS:
            raise ValueError(f'{source}: unknown kernel decision {name!r}; known: {sorted(DECISIONS)}')
        if candidate not in DECISIONS[name].candidates:
            raise ValueError(f'{source}: {name} must be one of {DECISIONS[name].candidates}, got {candidate!r}')
    return dict(overrides)


_parsed_environment: Dict[str, Dict[str, str]] = {}


def _environment_overrides() -> Dict[str, str]:
    text = os.environ.get(ENV_VARIABLE, '').strip()
    if text not in _parsed_environment:
        pairs = {}
        for item in filter(None, text.split(',')):
            name, sep, candidate = item.partition('=')
            if not sep:
                raise ValueError(f'{ENV_VARIABLE} must look like "linear=aten,attention=sdpa", got {text!r}')
            pairs[name.strip()] = candidate.strip()
        _parsed_environment[text] = check_overrides(pairs, ENV_VARIABLE)
    return _parsed_environment[text]


def device_key(device: torch.device, dtype: torch.dtype) -> tuple:
    """What a measured choice holds for: device type (and GPU name), CPU capability, threads, dtype."""
    if device.type == 'cpu':
        return ('cpu', torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), dtype)
    if device.type == 'cuda':
        return ('cuda', torch.cuda.get_device_name(device), dtype)
    return (device.type, dtype)


def choose(decision: str, device: torch.device, dtype: torch.dtype, overrides: Optional[Mapping[str, str]] = None,
           shape=None) -> str:
    """The kernel for ``decision`` on this device: the model's override, the environment's, the first
    candidate under deterministic algorithms, or the measured one (for the decision's class of ``shape``: a
    group length, a convolution's settings).

    An override that is not available here (oneDNN on a GPU) falls back to the measured choice.
    """
    spec = DECISIONS[decision]
    available = spec.available(device, dtype)
    for source in (overrides or {}, _environment_overrides()):
        if source.get(decision) in available:
            return source[decision]
    if len(available) == 1 or torch.are_deterministic_algorithms_enabled():
        return available[0]
    shape_class = spec.shape_class(shape) if spec.shape_class else None
    key = (decision, shape_class) + device_key(device, dtype)
    choice = _measured.get(key)
    if choice is None:
        with _lock:
            choice = _measured.get(key)
            if choice is None:
                choice = _measure_in_fresh_thread(key, decision, device, dtype, shape_class)
    return choice


def _measure_in_fresh_thread(*args) -> str:
    """:func:`_measure` in a thread of its own: it starts without the caller's thread-local state (grad and
    inference mode, autocast, saved-tensor hooks, dispatch modes), which would change what is timed (under
    activation checkpointing, the hooks would even recompute the caller's block inside the candidates'
    backward, and that block would wait here for this very choice)."""
    outcome = {}

    def run():
        try:
            outcome['choice'] = _measure(*args)
        except BaseException as error:  # handed to the caller's thread
            outcome['error'] = error
    thread = threading.Thread(target=run, name='swin_backbones-kernel-choice')
    thread.start()
    thread.join()
    if 'error' in outcome:
        raise outcome['error']
    return outcome['choice']


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _time(run: Callable[[], object], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    run()
    _synchronize(device)
    return time.perf_counter() - start


def _measure(key: tuple, decision: str, device: torch.device, dtype: torch.dtype, shape_class: Hashable) -> str:
    spec = DECISIONS[decision]
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    with torch.no_grad():
        work = spec.workloads(decision, device, dtype, shape_class)
        for run in work.values():  # warm-up: oneDNN primitives, allocator, caches
            run()
        best = {candidate: float('inf') for candidate in work}
        for _ in range(_REPEATS):
            for candidate, run in work.items():  # interleaved: a change of load affects every candidate alike
                best[candidate] = min(best[candidate], _time(run, device))
    default = next(c for c in spec.candidates if c in best)
    choice = min(best, key=best.get)
    if best[choice] > (1 - _MARGIN) * best[default]:
        choice = default
    _timings[key] = best
    _measured[key] = choice
    return choice


def measured_choices() -> Dict[tuple, Tuple[str, Dict[str, float]]]:
    """What this process measured so far: {(decision, shape class, *device key): (choice, seconds by candidate)}."""
    return {key: (choice, dict(_timings[key])) for key, choice in _measured.items()}


def clear_measurements() -> None:
    """Forgets the measured choices: the next use of each decision measures again."""
    with _lock:
        _measured.clear()
        _timings.clear()
