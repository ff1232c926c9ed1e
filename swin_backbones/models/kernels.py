"""Which kernel runs each fast-path operation: measured on the device at hand, once, and overridable.

The fast paths have alternatives whose speed depends on the machine: a oneDNN matmul with its epilogue
is faster than MKL's on some CPUs and slower on others, a fused attention kernel beats three plain
operations for long groups but not always for 49-token windows. Rather than fixing one choice, each
decision below is made by a short micro-benchmark of its candidates the first time it is needed, for
the device type, the CPU's vector capability (``torch.backends.cpu.get_cpu_capability()``), the
number of threads and the dtype, and cached for the process. Every candidate computes the same
function (``tests/test_fast_paths.py`` checks each one against the plain path), so the choice changes
speed and float rounding only.

Overrides, in order of precedence:

* the backbones' ``kernels`` argument, e.g. ``kernels=dict(linear='aten')``;
* the environment variable ``SWIN_BACKBONES_KERNELS``, e.g. ``linear=aten,attention=sdpa``;
* otherwise the measurement (:func:`measured_choices` lists what was decided).

Decisions and candidates:

* ``linear``: the forward matmul of the linear layers with its epilogue (bias, the residual add,
  the activation in inference): ``aten`` (``addmm``, then the epilogue in place) or ``onednn``
  (``mkldnn._linear_pointwise``, one pass; CPU, fp32/bf16 only).
* ``weight_grad``: the layout of the weight-gradient matmul in the linear layers' backward:
  ``input_t_grad`` (x^T @ dy, transposed afterwards, as autograd's ``addmm`` backward does) or
  ``grad_t_input`` (dy^T @ x, in the weight's layout directly).
* ``attention``: the attention core without gradients: ``sdpa`` (``F.scaled_dot_product_attention``
  with bias and mask as one additive mask) or ``matmul`` (matmul, softmax, matmul).
* ``attention_backward``: how training attention gets its softmax probabilities back: ``store``
  (kept from the forward; (groups, heads, N, N) floats per layer) or ``recompute`` (rebuilt from q, k
  and v in backward, in chunks: memory-saving, chosen here only where it is measured no slower; the
  backbones' ``save_memory=True`` always uses it).

``attention`` and ``attention_backward`` are decided separately for short groups (up to
:data:`SHORT_GROUP` tokens, e.g. Swin windows) and long ones (CrossFormer's long-distance groups).
"""
import os
import threading
import time
from typing import Callable, Dict, Mapping, NamedTuple, Optional, Tuple

import torch

ENV_VARIABLE = 'SWIN_BACKBONES_KERNELS'
SHORT_GROUP = 256  # tokens; groups up to this length are timed and decided as 'short'


class Decision(NamedTuple):
    candidates: Tuple[str, ...]  # the first is the default when the others are not measurably faster
    available: Callable[[torch.device, torch.dtype], Tuple[str, ...]]
    workloads: Callable[[str, torch.device, torch.dtype, Optional[str]], Dict[str, Callable[[], object]]]
    by_length: bool = False  # decided separately for short and long groups


def _all(*names):
    return lambda device, dtype: names


def _onednn_usable(device: torch.device, dtype: torch.dtype) -> bool:
    return device.type == 'cpu' and dtype in (torch.float32, torch.bfloat16) and torch.backends.mkldnn.is_available()


def _linear_available(device, dtype):
    return ('aten', 'onednn') if _onednn_usable(device, dtype) else ('aten',)


# Layer shapes timed for the linear decisions: (tokens, in, out, epilogue): an MLP of the first stage
# of the tiny and small models (rows of a 56 x 56 map) and a qkv projection of the second.
_LINEAR_SHAPES = ((3136, 96, 384, 'gelu'), (3136, 384, 96, 'add'), (784, 192, 576, 'none'))
# Attention shapes (groups, heads, N, head dim): Swin / CrossFormer short-distance windows, and a
# CrossFormer long-distance group.
_ATTENTION_SHAPES = {'short': ((64, 3, 49, 32), (16, 6, 49, 32)), 'long': ((1, 2, 1024, 32),)}


def _linear_workloads(decision, device, dtype, length_class):
    from .layers import linear_forward, linear_weight_grad
    generator = torch.Generator(device=device).manual_seed(0)
    work = {}
    for candidate in DECISIONS[decision].available(device, dtype):
        calls = []
        for rows, fan_in, fan_out, epilogue in _LINEAR_SHAPES:
            x = torch.randn(rows, fan_in, device=device, dtype=dtype, generator=generator)
            weight = torch.randn(fan_out, fan_in, device=device, dtype=dtype, generator=generator)
            bias = torch.randn(fan_out, device=device, dtype=dtype, generator=generator)
            grad = torch.randn(rows, fan_out, device=device, dtype=dtype, generator=generator)
            if decision == 'linear':
                residual = grad if epilogue == 'add' else None
                activation = epilogue if epilogue == 'gelu' else 'none'
                calls.append(lambda x=x, w=weight, b=bias, r=residual, a=activation, c=candidate:
                             linear_forward(x, w, b, a, r, c))
            else:
                calls.append(lambda x=x, g=grad, c=candidate: linear_weight_grad(g, x, c))
        work[candidate] = lambda calls=calls: [call() for call in calls]
    return work


def _attention_inputs(device, dtype, length_class, generator):
    inputs = []
    for groups, heads, length, dim in _ATTENTION_SHAPES[length_class]:
        qkv = torch.randn(groups, length, 3, heads, dim, device=device, dtype=dtype, generator=generator)
        bias = torch.randn(heads, length, length, device=device, dtype=dtype, generator=generator)
        inputs.append((qkv, bias, dim ** -0.5))
    return inputs


def _attention_workloads(decision, device, dtype, length_class):
    from . import attention
    generator = torch.Generator(device=device).manual_seed(0)
    inputs = _attention_inputs(device, dtype, length_class, generator)
    work = {}
    for candidate in DECISIONS[decision].available(device, dtype):
        if decision == 'attention':
            def run(candidate=candidate):
                return [attention.attention_forward(qkv, bias, None, scale, candidate) for qkv, bias, scale in inputs]
        else:
            def run(candidate=candidate):
                with torch.enable_grad():
                    for qkv, bias, scale in inputs:
                        qkv, bias = qkv.detach().requires_grad_(True), bias.detach().requires_grad_(True)
                        out = attention.attention_training(qkv, bias, None, scale, candidate)
                        out.backward(torch.ones_like(out))
        work[candidate] = run
    return work


DECISIONS: Dict[str, Decision] = {
    'linear': Decision(('aten', 'onednn'), _linear_available, _linear_workloads),
    'weight_grad': Decision(('input_t_grad', 'grad_t_input'), _all('input_t_grad', 'grad_t_input'),
                            _linear_workloads),
    'attention': Decision(('sdpa', 'matmul'), _all('sdpa', 'matmul'), _attention_workloads, by_length=True),
    'attention_backward': Decision(('store', 'recompute'), _all('store', 'recompute'), _attention_workloads,
                                   by_length=True),
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


def _environment_overrides() -> Dict[str, str]:
    text = os.environ.get(ENV_VARIABLE, '').strip()
    if not text:
        return {}
    pairs = {}
    for item in text.split(','):
        name, sep, candidate = item.partition('=')
        if not sep:
            raise ValueError(f'{ENV_VARIABLE} must look like "linear=aten,attention=sdpa", got {text!r}')
        pairs[name.strip()] = candidate.strip()
    return check_overrides(pairs, ENV_VARIABLE)


def device_key(device: torch.device, dtype: torch.dtype) -> tuple:
    """What a measured choice holds for: device type (and GPU name), CPU capability, threads, dtype."""
    if device.type == 'cpu':
        return ('cpu', torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), dtype)
    if device.type == 'cuda':
        return ('cuda', torch.cuda.get_device_name(device), dtype)
    return (device.type, dtype)


def length_class(length: int) -> str:
    return 'short' if length <= SHORT_GROUP else 'long'


def choose(decision: str, device: torch.device, dtype: torch.dtype, overrides: Optional[Mapping[str, str]] = None,
           length: Optional[int] = None) -> str:
    """The kernel for ``decision`` on this device: the model's override, the environment's, or the measured one.

    An override that is not available here (oneDNN on a GPU) falls back to the measured choice.
    """
    spec = DECISIONS[decision]
    available = spec.available(device, dtype)
    for source in (overrides or {}, _environment_overrides()):
        if source.get(decision) in available:
            return source[decision]
    if len(available) == 1:
        return available[0]
    key = (decision, length_class(length) if spec.by_length else None) + device_key(device, dtype)
    choice = _measured.get(key)
    if choice is None:
        with _lock:
            choice = _measured.get(key)
            if choice is None:
                choice = _measure_in_fresh_thread(key, decision, device, dtype, key[1])
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


def _measure(key: tuple, decision: str, device: torch.device, dtype: torch.dtype, length_class: Optional[str]) -> str:
    spec = DECISIONS[decision]
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    with torch.no_grad():
        work = spec.workloads(decision, device, dtype, length_class)
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
    """What this process measured so far: {(decision, length class, *device key): (choice, seconds by candidate)}."""
    return {key: (choice, dict(_timings[key])) for key, choice in _measured.items()}


def clear_measurements() -> None:
    """Forgets the measured choices (the next use measures again), e.g. after changing the thread count
    through a route that the cache key does not see."""
    with _lock:
        _measured.clear()
        _timings.clear()
