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
import torch.utils.checkpoint as checkpoint
from torch.fx.experimental.symbolic_shapes import statically_known_true

from .attention import group_attention, plain_attention_probs
from .kernels import FastPath

_ACTIVATIONS = {'GELU': nn.GELU, 'ReLU': nn.ReLU, 'SiLU': nn.SiLU, 'Swish': nn.SiLU}


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


class CheckpointedBlock(nn.Module):
    """A transformer block: ``forward(x, layout)`` runs the subclass's ``_forward(x, layout)``, under activation
    checkpointing when ``self.with_cp`` is set and gradients flow (recomputed in backward to save memory)."""

    with_cp = False

    def forward(self, x: torch.Tensor, layout) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return checkpoint.checkpoint(self._forward, x, layout, use_reentrant=False)
        return self._forward(x, layout)


# Activations a linear kernel applies as its epilogue (oneDNN by these names, aten in place), by module type.
_FUSIBLE_ACTIVATIONS = {nn.GELU: 'gelu', nn.ReLU: 'relu'}
_IN_PLACE_ACTIVATIONS = {'gelu': torch._C._nn.gelu_, 'relu': torch.relu_}


def fast_linear_applies(x: torch.Tensor, linear: nn.Linear) -> bool:
    """Whether ``linear`` on ``x`` may run through the fast linear kernels (:func:`fused_linear`): input and
    weight of one dtype, outside autocast (which would not see the kernels) and outside graph capture (see
    :func:`capturing_graph`)."""
    return (not capturing_graph() and x.dtype == linear.weight.dtype
            and not torch.is_autocast_enabled(x.device.type))


def _needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear_forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], activation: str = 'none',
                   residual: Optional[torch.Tensor] = None, kernel: str = 'aten') -> torch.Tensor:
    """``activation(x @ weight^T + bias)``, or ``x @ weight^T + bias + residual``, by the ``linear`` kernel
    ('aten': addmm, then the epilogue in place; 'onednn': one oneDNN matmul with the epilogue). No autograd."""
    if kernel == 'onednn':
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(x, residual, weight, bias, 'add')
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], 'none')
    out = F.linear(x, weight, bias)
    if residual is not None:
        return out.add_(residual)
    return _IN_PLACE_ACTIVATIONS[activation](out) if activation != 'none' else out


def _linear_backward(ctx, grad_out, x, weight):
    """Gradients of F.linear(x, weight, bias) for the inputs that need them, as autograd computes them."""
    flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
    grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
    grad_weight = flat_grad.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
    grad_bias = flat_grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_x, grad_weight, grad_bias


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias) (+ residual)`` by oneDNN's matmul with the epilogue; autograd's backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight)
        return linear_forward(x, weight, bias, residual=residual, kernel='onednn')

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_residual = grad_out if ctx.needs_input_grad[3] else None
        return (*_linear_backward(ctx, grad_out, x, weight), grad_residual)


def fused_linear(x: torch.Tensor, linear: nn.Linear, options: FastPath, activation: str = 'none',
                 residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``activation(linear(x))`` or ``linear(x) + residual`` by the ``linear`` kernel of ``options``, when
    :func:`fast_linear_applies`. Differentiable without an activation; with one, for inference only."""
    kernel = options.kernel('linear', x.device, x.dtype)
    if _needs_grad(x, linear.weight, linear.bias, residual):
        if activation != 'none':
            raise RuntimeError('a fused activation has no backward here; compute it after the matmul in training')
        if kernel == 'onednn':
            return _OneDNNLinear.apply(x, linear.weight, linear.bias, residual)
        out = F.linear(x, linear.weight, linear.bias)
        return out if residual is None else out.add_(residual)
    return linear_forward(x, linear.weight, linear.bias, activation, residual, kernel)


class _ActivationRecomputingLinear(torch.autograd.Function):
    """``F.linear(activation(h), weight, bias) (+ residual)`` that keeps ``h`` for backward and recomputes
    the activation there, instead of keeping both ``h`` (for the activation) and ``activation(h)`` (for
    the matmul): the MLP's hidden activations are 4x wider than the tokens."""

    @staticmethod
    def forward(ctx, h, weight, bias, residual, activation, kernel):
        ctx.activation = activation
        ctx.has_bias = bias is not None
        ctx.save_for_backward(h, weight)
        return linear_forward(activation(h), weight, bias, residual=residual, kernel=kernel)

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

    On the fast path (``options.enabled``) the matmuls do the bias, the residual add and (in inference) the
    activation in their epilogues (:func:`fused_linear`), and ``options.save_memory`` (training without
    dropout) keeps only the hidden pre-activation for backward, recomputing the activation there. Under
    torch.compile and autocast the plain operations run.
    """

    def __init__(self, dim: int, hidden_dim: int, act_cfg: dict = dict(type='GELU'), drop: float = 0.0,
                 options: FastPath = FastPath()):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)
        self.options = options
        fusible = _FUSIBLE_ACTIVATIONS.get(type(self.act))
        self._fused_activation = fusible if fusible != 'gelu' or self.act.approximate == 'none' else None

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The MLP of x, plus ``residual`` when given (the caller's skip connection, added without dropout)."""
        options = self.options
        if not options.enabled or (self.drop.p > 0 and self.training) or not fast_linear_applies(x, self.fc1):
            out = self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))
            return out if residual is None else residual + out
        if not _needs_grad(x, residual, *self.parameters()):
            if self._fused_activation:
                hidden = fused_linear(x, self.fc1, options, self._fused_activation)
            else:
                hidden = self.act(fused_linear(x, self.fc1, options))
            return fused_linear(hidden, self.fc2, options, residual=residual)
        hidden = fused_linear(x, self.fc1, options)
        if not options.save_memory:
            return fused_linear(self.act(hidden), self.fc2, options, residual=residual)
        return _ActivationRecomputingLinear.apply(hidden, self.fc2.weight, self.fc2.bias, residual, self.act,
                                                  options.kernel('linear', x.device, x.dtype))


def strided_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: int, padding: int,
                   kernel: str) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` for square kernels that are a multiple of the stride, by
    the ``strided_conv`` kernel: 'direct', or 'space_to_depth': the zero-padded input and the weight cut into
    stride x stride cells whose pixels become channels (pixel_unshuffle), then a stride-1 convolution with a
    kernel ``stride`` times smaller (the same sums of products, in another order)."""
    if kernel == 'direct':
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    height, width = x.shape[-2:]
    size = weight.shape[-1]
    # Extra zeros at the bottom and right make the padded sides multiples of the stride; the output rows
    # and columns they add are cropped.
    extra_h, extra_w = (-(height + 2 * padding)) % stride, (-(width + 2 * padding)) % stride
    x = F.pad(x, (padding, padding + extra_w, padding, padding + extra_h))
    out = F.conv2d(F.pixel_unshuffle(x, stride), F.pixel_unshuffle(weight, stride), bias)
    if extra_h or extra_w:
        out = out[..., :(height + 2 * padding - size) // stride + 1, :(width + 2 * padding - size) // stride + 1]
    return out


def space_to_depth_applies(conv: nn.Conv2d) -> bool:
    """Whether :func:`strided_conv2d` can compute ``conv``: square kernel a multiple of its stride,
    symmetric zero padding, no dilation or groups."""
    (kh, kw), (sh, sw), padding = conv.kernel_size, conv.stride, conv.padding
    return (kh == kw and sh == sw and kh % sh == 0 and not isinstance(padding, str) and padding[0] == padding[1]
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == 'zeros')


def fast_conv(x: torch.Tensor, conv: nn.Conv2d, options: FastPath) -> torch.Tensor:
    """``conv(x)`` by the ``strided_conv`` kernel of ``options`` where that kernel applies
    (:func:`space_to_depth_applies`), on the fast path outside graph capture and autocast."""
    if (not options.enabled or capturing_graph() or torch.is_autocast_enabled(x.device.type)
            or x.dtype != conv.weight.dtype or not space_to_depth_applies(conv)):
        return conv(x)
    kernel = options.kernel('strided_conv', x.device, x.dtype,
                            kernel_to_stride=conv.kernel_size[0] // conv.stride[0])
    return strided_conv2d(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0], kernel)


def relative_offsets(group_h: int, group_w: int, device=None) -> torch.Tensor:
    """Every (dh, dw) offset between two tokens of a group_h x group_w grid, row-major (dh outer), as (T, 2)
    float32: the inputs of CrossFormer's dynamic and Swin V2's continuous position bias."""
    grid = torch.meshgrid(torch.arange(1 - group_h, group_h, device=device),
                          torch.arange(1 - group_w, group_w, device=device), indexing='ij')
    return torch.stack(grid).flatten(1).transpose(0, 1).float()


def relative_position_index(group_h: int, group_w: int, device=None) -> torch.Tensor:
    """(N, N) row of :func:`relative_offsets` (and of Swin's bias table) for query i and key j:
    (dh_i-dh_j+Gh-1)*(2Gw-1) + (dw_i-dw_j+Gw-1)."""
    coords = torch.stack(torch.meshgrid(torch.arange(group_h, device=device), torch.arange(group_w, device=device),
                                        indexing='ij')).flatten(1)
    relative = coords[:, :, None] - coords[:, None, :]  # 2, N, N
    return (relative[0] + group_h - 1) * (2 * group_w - 1) + relative[1] + group_w - 1


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


class _Regroup(torch.autograd.Function):
    """Rows of a 2-d tensor picked by an index, with rows zeroed where a mask says, when the index's
    inverse on the kept rows is known: the backward is then a gather too (no scatter-add)."""

    @staticmethod
    def forward(ctx, source, index, inverse, zero_rows, inverse_zero_rows):
        ctx.save_for_backward(inverse, inverse_zero_rows)
        out = source.index_select(0, index)
        return out if zero_rows is None else out.masked_fill_(zero_rows.reshape(-1, 1), 0)

    @staticmethod
    def backward(ctx, grad):
        inverse, inverse_zero_rows = ctx.saved_tensors
        return regroup(grad, inverse, None, inverse_zero_rows), None, None, None, None


def regroup(source: torch.Tensor, index: torch.Tensor, inverse: Optional[torch.Tensor],
            zero_rows: Optional[torch.Tensor] = None, inverse_zero_rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``source[index]`` for a 2-d ``source``, with the rows where ``zero_rows`` is set zeroed.

    ``inverse`` gives, for every row of ``source``, the one output row that holds it (every source row is
    picked exactly once outside ``zero_rows``); with it the gradient is ``grad[inverse]``, zero on
    ``inverse_zero_rows`` (the source rows that no output row holds). Without it, autograd's scatter-add.
    """
    if inverse is not None and not capturing_graph() and torch.is_grad_enabled() and source.requires_grad:
        return _Regroup.apply(source, index, inverse, zero_rows, inverse_zero_rows)
    out = source.index_select(0, index)
    return out if zero_rows is None else out.masked_fill_(zero_rows.reshape(-1, 1), 0)


def padding_key_mask(height: int, width: int, padded_height: int, padded_width: int,
                     grouping: Grouping, device: torch.device, dtype: torch.dtype,
                     fill: float = -1e6) -> Optional[torch.Tensor]:
    """Additive mask that hides padded tokens as keys: (num_groups, 1, N), or None without padding (an
    all-zero mask where whether there is padding is not known, see :func:`known_equal`)."""
    if known_equal(height, padded_height) and known_equal(width, padded_width):
        return None
    # Comparisons of positions, not a slice assignment: that has no ONNX form under mmdeploy's rewriters.
    rows = torch.arange(padded_height, device=device) >= height
    cols = torch.arange(padded_width, device=device) >= width
    is_pad = (rows[:, None] | cols[None, :]).reshape(1, padded_height, padded_width, 1)
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

    Subclasses provide the position bias (a learned table for Swin, an MLP for CrossFormer). On the fast
    path (``options.enabled``) the core is :func:`.attention.group_attention` (unless attention dropout is
    active: the fused kernels would draw another dropout pattern), the projections run by the ``linear``
    kernel, and the output projection adds the residual in its epilogue. Under torch.compile the plain
    operations are traced: inductor fuses them itself.

    :meth:`attend_groups` and :meth:`project` are the two halves of the attention, for callers that move
    the tokens between them (the output projection acts on each token alone).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, options: FastPath = FastPath()):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f'embedding dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.options = options
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend_groups(self, x: torch.Tensor, bias: torch.Tensor, mask: Optional[torch.Tensor],
                      qkv_bias: Optional[torch.Tensor] = None,
                      cosine_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The heads' outputs, concatenated, before the output projection.

        x: (B * nG, N, C); bias: (heads, N, N); mask: (nG, N or 1, N) additive, or None. Returns (B * nG, N, C).
        Swin V2 passes ``qkv_bias`` (3C,), the bias of the qkv projection built from its q and v biases, and
        ``cosine_scale`` (heads, 1, 1): the logits are then cos(q, k) times each head's factor.
        """
        groups, length, channels = x.shape
        fast = self.options.enabled
        if qkv_bias is not None:
            qkv = F.linear(x, self.qkv.weight, qkv_bias)
        elif fast and fast_linear_applies(x, self.qkv):
            qkv = fused_linear(x, self.qkv, self.options)
        else:
            qkv = self.qkv(x)
        qkv = qkv.reshape(groups, length, 3, self.num_heads, channels // self.num_heads)
        cosine = cosine_scale is not None
        scale = cosine_scale if cosine else self.scale
        if fast and not (self.attn_drop.p > 0 and self.training) and not capturing_graph():
            x = group_attention(qkv, bias, mask, scale, cosine, options=self.options)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nG, heads, N, d
            x = self.attn_drop(plain_attention_probs(q, k, bias, mask, scale, cosine)) @ v
        return x.transpose(1, 2).reshape(groups, length, channels)

    def project(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The output projection (and dropout) of (..., C) tokens, plus ``residual`` when given."""
        if (self.options.enabled and fast_linear_applies(x, self.proj)
                and not (self.proj_drop.p > 0 and self.training)):
            return fused_linear(x, self.proj, self.options, residual=residual)
        x = self.proj_drop(self.proj(x))
        return x if residual is None else residual + x
