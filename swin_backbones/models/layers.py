"""Building blocks shared by the Swin and CrossFormer backbones.

Feature maps travel between blocks channels-last, as (B, H, W, C): LayerNorm and Linear act on the
last axis, and cutting a map into attention groups is a view followed by one permute.

Every attention pattern used here (Swin windows, CrossFormer's short- and long-distance groups) is
the same cut of a padded map: each side of length ``L`` is viewed as ``(outer, inner, dilation)``;
tokens that share ``outer`` and ``dilation`` indices form one group, laid out on an
``inner_h x inner_w`` grid.

* Swin window / CrossFormer SDA of size G:  ``(L/G, G, 1)``
* CrossFormer LDA with interval I (paper):  ``(1, L/I, I)``
* CrossFormer++ LDA, G x G groups, interval I inside regions of G*I:  ``(L/(G*I), G, I)``
"""
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import statically_known_true

from .attention import group_attention, plain_attention_probs

_ACTIVATIONS = {'GELU': nn.GELU, 'ReLU': nn.ReLU, 'SiLU': nn.SiLU, 'Swish': nn.SiLU}
IMPLS = ('fast', 'plain')


def capturing_graph() -> bool:
    """Whether torch.compile, torch.export or torch.jit.trace (so torch.onnx.export) is recording the forward.

    The fast paths then step aside: their custom autograd Functions and oneDNN ops have no ONNX
    form, and the compilers fuse the plain operations themselves.
    """
    # is_compiling first: dynamo would break the graph on the checks after it.
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def known_equal(a: int, b: int) -> bool:
    """``a == b`` for sizes, answered only when that needs no branch on the input's size: False while
    ``torch.jit.trace`` (so the TorchScript ONNX exporter) records the forward, where sizes are tensors
    and a Python ``if`` would freeze the example's answer into the graph, and False under
    ``torch.compile`` with dynamic shapes unless it holds for every size (no guard, no recompilation).

    Only for shortcuts whose general path computes the same numbers (padding by zero rows is a copy,
    an all-false padding mask changes nothing).
    """
    if torch.jit.is_tracing():
        return False
    return statically_known_true(a == b)


def ceil_div(value: int, divisor: int) -> int:
    """ceil(value / divisor) for sizes, with non-negative operands only: while tracing, sizes are
    tensors, and the ONNX export of a floor division of a negative one truncates instead of flooring."""
    return (value + divisor - 1) // divisor


def round_up(value: int, multiple: int) -> int:
    """``value`` rounded up to a multiple of ``multiple``. Written as ``ceil_div * multiple`` so that a
    symbolic size (torch.compile with dynamic shapes) is visibly a multiple: the sizes derived from it
    (``padded // multiple`` ...) then simplify instead of nesting ``Mod`` terms stage after stage."""
    return ceil_div(value, multiple) * multiple


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS} ('fast': fused attention and matmul epilogues, "
                         f"'plain': the textbook operations, for reference), got {impl!r}")
    return impl


def build_norm(norm_cfg: dict, num_features: int) -> nn.LayerNorm:
    """LayerNorm from an mmcv-style ``norm_cfg`` (only ``LN`` fits token sequences)."""
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type', None)
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type not in ('LN', 'LayerNorm', nn.LayerNorm):
        raise ValueError(f"norm_cfg type must be 'LN' (LayerNorm over channels), got {norm_type!r}")
    norm = nn.LayerNorm(num_features, **cfg)
    for param in norm.parameters():
        param.requires_grad = requires_grad
    return norm


def build_activation(act_cfg: dict) -> nn.Module:
    cfg = dict(act_cfg)
    act_type = cfg.pop('type', None)
    if act_type not in _ACTIVATIONS:
        raise ValueError(f'act_cfg type must be one of {sorted(_ACTIVATIONS)}, got {act_type!r}')
    return _ACTIVATIONS[act_type](**cfg)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    @property
    def active(self) -> bool:
        return self.drop_prob > 0.0 and self.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
        return x * keep.div_(keep_prob)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


# Activations oneDNN can apply inside a CPU matmul, by the name its fused linear op uses.
_FUSIBLE_ACTIVATIONS = {nn.GELU: 'gelu', nn.ReLU: 'relu'}


def onednn_applies(x: torch.Tensor, linear: nn.Linear) -> bool:
    """Whether ``linear`` on ``x`` may run as a oneDNN matmul that does the bias, activation or residual add
    in its epilogue (one pass over the output instead of two or three): CPU, fp32 (or bf16 where the CPU has
    oneDNN's bf16 kernels) input and weight of one dtype, outside autocast (which would not see the op) and
    outside graph capture (see :func:`capturing_graph`)."""
    return (not capturing_graph() and x.device.type == 'cpu' and x.dtype == linear.weight.dtype
            and (x.dtype == torch.float32 or x.dtype == torch.bfloat16 and torch.ops.mkldnn._is_mkldnn_bf16_supported())
            and torch.backends.mkldnn.is_available() and not torch.is_autocast_enabled('cpu'))


def _needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _onednn_linear(x, weight, bias, activation: str = 'none', residual=None) -> torch.Tensor:
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, 'add')
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], 'none')


def _linear_backward(ctx, grad_out, x, weight):
    """Gradients of F.linear(x, weight, bias) for the inputs that need them, as autograd computes them."""
    flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
    grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
    grad_weight = flat_grad.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
    grad_bias = flat_grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_x, grad_weight, grad_bias


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias) (+ residual)`` through the oneDNN op, with F.linear's backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return _onednn_linear(x, weight, bias, residual=residual)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_residual = grad_out if ctx.needs_input_grad[3] else None
        return (*_linear_backward(ctx, grad_out, x, weight), grad_residual)


def fused_linear(x: torch.Tensor, linear: nn.Linear, activation: str = 'none',
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``activation(linear(x))`` or ``linear(x) + residual`` as one oneDNN matmul (when :func:`onednn_applies`).
    Differentiable without an activation; with one, for inference only."""
    if _needs_grad(x, linear.weight, linear.bias, residual):
        if activation != 'none':
            raise RuntimeError('a fused activation has no backward here; compute it after the matmul in training')
        return _OneDNNLinear.apply(x, linear.weight, linear.bias, residual)
    return _onednn_linear(x, linear.weight, linear.bias, activation, residual)


class _ActivationRecomputingLinear(torch.autograd.Function):
    """``F.linear(activation(h), weight, bias) (+ residual)`` that keeps ``h`` for backward and recomputes
    the activation there, instead of keeping both ``h`` (for the activation) and ``activation(h)`` (for
    the matmul): the MLP's hidden activations are 4x wider than the tokens."""

    @staticmethod
    def forward(ctx, h, weight, bias, residual, activation, onednn):
        ctx.activation = activation
        ctx.has_bias = bias is not None
        ctx.save_for_backward(h, weight)
        if onednn:
            return _onednn_linear(activation(h), weight, bias, residual=residual)
        out = F.linear(activation(h), weight, bias)
        return out if residual is None else out + residual

    @staticmethod
    def backward(ctx, grad_out):
        h, weight = ctx.saved_tensors
        with torch.enable_grad():
            h_leaf = h.detach().requires_grad_(True)
            activated = ctx.activation(h_leaf)
        grad_activated, grad_weight, grad_bias = _linear_backward(ctx, grad_out, activated.detach(), weight)
        grad_h = torch.autograd.grad(activated, h_leaf, grad_activated)[0] if ctx.needs_input_grad[0] else None
        grad_residual = grad_out if ctx.needs_input_grad[3] else None
        return grad_h, grad_weight, grad_bias, grad_residual, None, None


class Mlp(nn.Module):
    """Linear(C, hidden) -> activation -> dropout -> Linear(hidden, C) -> dropout.

    ``fast`` selects the paths that compute the same function with less work: on a CPU the matmuls do
    the bias, the activation (in inference) and the residual add in their epilogues (:func:`fused_linear`);
    in training without dropout the hidden activation is recomputed in backward instead of stored.
    Under torch.compile the plain operations are traced.
    """

    def __init__(self, dim: int, hidden_dim: int, act_cfg: dict = dict(type='GELU'), drop: float = 0.0,
                 fast: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)
        self.fast = fast
        fusible = _FUSIBLE_ACTIVATIONS.get(type(self.act))
        self._fused_activation = fusible if fusible != 'gelu' or self.act.approximate == 'none' else None

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The MLP of x, plus ``residual`` when given (the caller's skip connection, added without dropout)."""
        # Under autocast the recomputing backward would see fp32 weights next to half-precision gradients.
        plain = (not self.fast or (self.drop.p > 0 and self.training) or capturing_graph()
                 or torch.is_autocast_enabled(x.device.type))
        onednn = not plain and onednn_applies(x, self.fc1)
        inference = not _needs_grad(x, residual, *self.parameters())
        if onednn and inference and self._fused_activation:
            return fused_linear(fused_linear(x, self.fc1, self._fused_activation), self.fc2, residual=residual)
        if plain or inference:
            out = self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
            return out if residual is None else residual + out
        hidden = fused_linear(x, self.fc1) if onednn else self.fc1(x)
        return _ActivationRecomputingLinear.apply(hidden, self.fc2.weight, self.fc2.bias, residual, self.act, onednn)


def pad_to_multiple(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) map at the bottom and right up to multiples of the given sizes."""
    _, height, width, _ = x.shape
    return pad_to_size(x, round_up(height, multiple_h), round_up(width, multiple_w))


def pad_to_size(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) map at the bottom and right to (height, width), at least (H, W)."""
    pad_h = height - x.shape[1]
    pad_w = width - x.shape[2]
    if known_equal(pad_h, 0) and known_equal(pad_w, 0):
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


def pad_image_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads a (B, C, H, W) image at the bottom and right up to multiples of ``multiple``."""
    pad_h = round_up(x.shape[2], multiple) - x.shape[2]
    pad_w = round_up(x.shape[3], multiple) - x.shape[3]
    if known_equal(pad_h, 0) and known_equal(pad_w, 0):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


class Grouping(NamedTuple):
    """How each side of a padded map splits into ``(outer, inner, dilation)``; see the module doc."""
    inner_h: int
    inner_w: int
    dilation_h: int = 1
    dilation_w: int = 1

    @property
    def group_len(self) -> int:
        return self.inner_h * self.inner_w

    @property
    def span_h(self) -> int:
        return self.inner_h * self.dilation_h

    @property
    def span_w(self) -> int:
        return self.inner_w * self.dilation_w


def group_tokens(x: torch.Tensor, grouping: Grouping) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B * num_groups, inner_h * inner_w, C); Hp, Wp multiples of the spans."""
    batch, height, width, channels = x.shape
    ih, iw, dh, dw = grouping
    oh, ow = height // grouping.span_h, width // grouping.span_w
    x = x.view(batch, oh, ih, dh, ow, iw, dw, channels)
    x = x.permute(0, 1, 4, 3, 6, 2, 5, 7)  # B, oh, ow, dh, dw, ih, iw, C
    return x.reshape(-1, ih * iw, channels)


def ungroup_tokens(x: torch.Tensor, grouping: Grouping, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`group_tokens`: (B * num_groups, N, C) -> (B, Hp, Wp, C)."""
    channels = x.shape[-1]
    ih, iw, dh, dw = grouping
    oh, ow = height // grouping.span_h, width // grouping.span_w
    x = x.view(-1, oh, ow, dh, dw, ih, iw, channels)
    x = x.permute(0, 1, 5, 3, 2, 6, 4, 7)  # B, oh, ih, dh, ow, iw, dw, C
    return x.reshape(-1, height, width, channels)


def padding_key_mask(height: int, width: int, padded_height: int, padded_width: int,
                     grouping: Grouping, device: torch.device, dtype: torch.dtype,
                     fill: float = -1e6) -> Optional[torch.Tensor]:
    """Additive mask that hides padded tokens as keys: (num_groups, 1, N), or None without padding (an
    all-zero mask where whether there is padding is not known, see :func:`known_equal`)."""
    if known_equal(height, padded_height) and known_equal(width, padded_width):
        return None
    is_pad = torch.ones(1, padded_height, padded_width, 1, device=device, dtype=torch.bool)
    is_pad[:, :height, :width] = False
    is_pad = group_tokens(is_pad, grouping).squeeze(-1).unsqueeze(1)  # nG, 1, N
    return torch.zeros(is_pad.shape, device=device, dtype=dtype).masked_fill_(is_pad, fill)


def pair_bias(table: torch.Tensor, index: torch.Tensor, length: int) -> torch.Tensor:
    """(T, heads) bias rows and the (N * N,) row of each query/key pair -> contiguous (heads, N, N).

    Gathering from the transposed table writes the result in the layout the attention kernel reads,
    without a permute and copy afterwards.
    """
    return table.t()[:, index.view(-1)].view(table.shape[1], length, length)


class MultiHeadGroupAttention(nn.Module):
    """Multi-head self-attention inside groups of tokens, with a position bias and an optional mask.

    Subclasses provide the position bias (a learned table for Swin, an MLP for CrossFormer). ``fast``
    uses :func:`.attention.group_attention` (unless attention dropout is active: the fused kernel would
    draw a different dropout pattern) and fuses the residual add into the output projection. Under
    torch.compile the plain operations are traced: inductor fuses them itself.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, fast: bool = True):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f'embedding dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.fast = fast
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, x: torch.Tensor, bias: torch.Tensor, mask: Optional[torch.Tensor],
               residual: Optional[torch.Tensor] = None, qkv_bias: Optional[torch.Tensor] = None,
               cosine_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B * nG, N, C); bias: (heads, N, N); mask: (nG, N or 1, N) additive, or None.

        Returns the attention output, plus ``residual`` (same shape as x) when given. Swin V2 passes
        ``qkv_bias`` (3C,), the bias of the qkv projection built from its q and v biases, and
        ``cosine_scale`` (heads, 1, 1): the logits are then cos(q, k) times each head's factor.
        """
        groups, length, channels = x.shape
        onednn = self.fast and onednn_applies(x, self.qkv)
        if qkv_bias is not None:
            qkv = F.linear(x, self.qkv.weight, qkv_bias)
        else:
            qkv = fused_linear(x, self.qkv) if onednn else self.qkv(x)
        qkv = qkv.reshape(groups, length, 3, self.num_heads, channels // self.num_heads)
        cosine = cosine_scale is not None
        scale = cosine_scale if cosine else self.scale
        if self.fast and not (self.attn_drop.p > 0 and self.training) and not capturing_graph():
            x = group_attention(qkv, bias, mask, scale, cosine)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nG, heads, N, d
            x = self.attn_drop(plain_attention_probs(q, k, bias, mask, scale, cosine)) @ v
        x = x.transpose(1, 2).reshape(groups, length, channels)
        if onednn and not (self.proj_drop.p > 0 and self.training):
            return fused_linear(x, self.proj, residual=residual)
        x = self.proj_drop(self.proj(x))
        return x if residual is None else residual + x
