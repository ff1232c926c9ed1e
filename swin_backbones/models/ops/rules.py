"""The fast path's settings and the fixed rules that pick the kernel of each of its operations.

Each operation of the fast path has a few kernels that compute the same function (tests/test_fast_paths.py
checks every one against the plain operations); which one runs is a rule of the device type, the dtype and
the shape, the same in every process, so a run's speed and rounding repeat. docs/design.md ("The fast path")
gives the measurements behind each rule.

* ``linear``, the matmul of the linear layers with its epilogue (bias, residual add, and in inference
  the activation): ``onednn`` (``mkldnn._linear_pointwise``, one pass) on CPUs for fp32 where ATen's CPU
  capability is AVX-512, and for bf16 where the CPU has bf16 instructions; ``aten`` (addmm, then the epilogue
  in place) elsewhere, AVX2-only CPUs included (there MKL's matmul under addmm is the faster one).
* ``attention_backward``, how the training attention core gets its softmax probabilities back: on CPUs
  ``store`` (kept from the forward) for groups of at most :data:`SHORT_GROUP` tokens and ``recompute``
  (rebuilt chunk by chunk in backward from q, k and v) for longer ones; on other devices ``sdpa``
  (PyTorch's fused kernel with its own backward). ``save_memory=True`` takes ``recompute`` on CPUs for
  every length. (Without gradients the core is always ``F.scaled_dot_product_attention``, 1.3-3x faster
  than matmul-softmax-matmul on every group shape measured.)
* ``strided_conv``, the patch embedding and merging convolutions whose kernel is a multiple of their
  stride: ``space_to_depth`` (the stride folded into channels, then a stride-1 convolution) on CPUs where
  the kernel is at least :data:`WIDE_KERNEL` times the stride (CrossFormer's 16 x 16 and 32 x 32 embedding
  kernels of stride 4, for which oneDNN's direct convolution takes seconds on AVX2 CPUs and its weight
  gradient is slow everywhere); ``direct`` (``F.conv2d``) otherwise.
* ``tiles``, how the MLP (forward and backward) and, without gradients, the qkv projection with the attention
  core run: ``tiled`` (a few thousand tokens at a time, so the wide intermediates stay in the cache) on CPUs for
  tokens narrower than :data:`NARROW_TOKENS` channels (Swin's first two stages), ``whole`` otherwise.

The backbones' ``kernels`` argument overrides any rule, e.g. ``kernels=dict(linear='aten')``; an override
that the device or dtype at hand cannot run is an error, never silently replaced.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple

import torch

from ...errors import ConfigError

# Kernels of each decision; the rules below choose among them.
DECISIONS: Dict[str, Tuple[str, ...]] = {
    'linear': ('aten', 'onednn'),
    'attention_backward': ('store', 'recompute', 'sdpa'),
    'strided_conv': ('direct', 'space_to_depth'),
    'tiles': ('whole', 'tiled'),
}
# Groups up to this many tokens (Swin's 7 x 7 and 8 x 8 windows, CrossFormer's short-distance groups)
# keep their probabilities for backward on CPUs; longer ones recompute them.
SHORT_GROUP = 64
# Strided convolutions whose kernel is at least this many times their stride run by space-to-depth on CPUs.
WIDE_KERNEL = 4
# On CPUs, tokens narrower than this run the MLP (forward and backward) and, in inference, the qkv projection with
# the attention core in tiles of about TILE_TOKENS tokens: their matmuls are bound by memory, and a tile's hidden
# activations and their gradients (4 C wide) and qkv (3 C) stay in the cache instead of going through memory.
NARROW_TOKENS = 256
TILE_TOKENS = 2048
IMPLS = ('fast', 'plain')


def onednn_takes(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether oneDNN's CPU matmul runs this dtype here: fp32, and bf16 where the CPU has bf16 instructions."""
    return (device.type == 'cpu' and torch.backends.mkldnn.is_available()
            and (dtype == torch.float32 or dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def avx512_cpu() -> bool:
    """Whether ATen runs its AVX-512 kernels here (``ATEN_CPU_CAPABILITY=avx2`` makes an AVX-512 CPU answer
    no)."""
    return torch.backends.cpu.get_cpu_capability().startswith('AVX512')


def available(decision: str, device: torch.device, dtype: torch.dtype) -> Tuple[str, ...]:
    """The kernels of ``decision`` that can run on this device and dtype."""
    if decision == 'linear' and not onednn_takes(device, dtype):
        return ('aten',)
    if decision == 'attention_backward' and device.type == 'cpu':
        return ('store', 'recompute')  # the SDPA kernel's own CPU backward keeps the probabilities and is slower
    return DECISIONS[decision]


def rule(decision: str, device: torch.device, dtype: torch.dtype, length: Optional[int] = None,
         kernel_to_stride: int = 1, width: Optional[int] = None) -> str:
    """The kernel the rules give ``decision`` on this device and dtype: for attention, groups of ``length``
    tokens; for the strided convolutions, the kernel size over the stride; for tiles, tokens ``width`` wide."""
    cpu = device.type == 'cpu'
    if decision == 'linear':
        faster_than_addmm = dtype != torch.float32 or avx512_cpu()
        return 'onednn' if onednn_takes(device, dtype) and faster_than_addmm else 'aten'
    if decision == 'attention_backward':
        if not cpu:
            return 'sdpa'
        return 'store' if length is not None and length <= SHORT_GROUP else 'recompute'
    if decision == 'strided_conv':
        return 'space_to_depth' if cpu and kernel_to_stride >= WIDE_KERNEL else 'direct'
    if decision == 'tiles':
        return 'tiled' if cpu and width is not None and width < NARROW_TOKENS else 'whole'
    raise KeyError(decision)


def check_overrides(overrides: Optional[Mapping[str, str]]) -> Tuple[Tuple[str, str], ...]:
    """The ``kernels`` argument as sorted (decision, kernel) pairs; a ConfigError names a bad entry."""
    if overrides is None:
        return ()
    if not isinstance(overrides, Mapping):
        raise TypeError(f'kernels must be a dict of {{decision: kernel}}, got {type(overrides).__name__}')
    for name, kernel in overrides.items():
        if name not in DECISIONS:
            raise ConfigError(f'kernels: unknown kernel decision {name!r}; known: {sorted(DECISIONS)}')
        if kernel not in DECISIONS[name]:
            raise ConfigError(f'kernels: {name} must be one of {DECISIONS[name]}, got {kernel!r}')
    return tuple(sorted(overrides.items()))


@dataclass(frozen=True)
class FastPath:
    """A backbone's fast path: built once from its ``impl``, ``save_memory`` and ``kernels`` arguments and
    shared by all its layers.

    ``enabled``: ``impl='fast'`` (the fast kernels, picked by the rules above) or ``'plain'`` (the textbook
    operations, for reference); ``save_memory``: keep less for backward (attention probabilities and MLP
    activations are recomputed); ``overrides``: the ``kernels`` argument.
    """
    enabled: bool = True
    save_memory: bool = False
    overrides: Tuple[Tuple[str, str], ...] = ()

    @classmethod
    def from_arguments(cls, impl: str = 'fast', save_memory: bool = False,
                       kernels: Optional[Mapping[str, str]] = None) -> 'FastPath':
        if impl not in IMPLS:
            raise ConfigError(f"impl must be one of {IMPLS} ('fast': fused attention and matmul epilogues, "
                              f"'plain': the textbook operations, for reference), got {impl!r}")
        overrides = check_overrides(kernels)
        if impl == 'plain' and (save_memory or overrides):
            raise ConfigError("save_memory and kernels choose among the fast path's kernels: they need impl='fast'")
        return cls(impl == 'fast', bool(save_memory), overrides)

    def kernel(self, decision: str, device: torch.device, dtype: torch.dtype, length: Optional[int] = None,
               kernel_to_stride: int = 1, width: Optional[int] = None) -> str:
        """The kernel of ``decision`` for this call: the override if one was given, else the rule."""
        chosen = dict(self.overrides).get(decision)
        if chosen is None:
            if decision == 'attention_backward' and self.save_memory and device.type == 'cpu':
                return 'recompute'
            return rule(decision, device, dtype, length, kernel_to_stride, width)
        if chosen not in available(decision, device, dtype):
            raise ValueError(f'kernels: {decision}={chosen!r} cannot run on {device.type} with {dtype}; '
                             f'available there: {available(decision, device, dtype)}')
        return chosen

    def describe(self, device: torch.device, dtype: torch.dtype) -> str:
        """The kernels this path runs on ``device`` with ``dtype``, for a model's repr and logs."""
        if not self.enabled:
            return "impl='plain'"

        def pick(decision, **shape):
            return self.kernel(decision, device, dtype, **shape)
        backward = {pick('attention_backward', length=SHORT_GROUP), pick('attention_backward', length=SHORT_GROUP + 1)}
        backward_text = (backward.pop() if len(backward) == 1 else
                         f'{pick("attention_backward", length=SHORT_GROUP)} (<= {SHORT_GROUP} tokens) / '
                         f'{pick("attention_backward", length=SHORT_GROUP + 1)} (longer)')
        convs = {pick('strided_conv'), pick('strided_conv', kernel_to_stride=WIDE_KERNEL)}
        conv_text = (convs.pop() if len(convs) == 1 else
                     f'{pick("strided_conv")} (kernel < {WIDE_KERNEL} x stride) / '
                     f'{pick("strided_conv", kernel_to_stride=WIDE_KERNEL)} (wider)')
        tiles = {pick('tiles', width=NARROW_TOKENS - 1), pick('tiles', width=NARROW_TOKENS)}
        tiles_text = (tiles.pop() if len(tiles) == 1 else
                      f'{pick("tiles", width=NARROW_TOKENS - 1)} (< {NARROW_TOKENS} channels) / '
                      f'{pick("tiles", width=NARROW_TOKENS)} (wider)')
        text = (f'{device.type} {str(dtype).replace("torch.", "")}: linear={pick("linear")}, '
                f'attention_backward={backward_text}, strided_conv={conv_text}, tiles={tiles_text}')
        return text + (', save_memory' if self.save_memory else '')
