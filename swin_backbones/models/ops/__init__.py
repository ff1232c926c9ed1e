"""The operations the model files call, each with a plain and a fast implementation, and the one place that
decides which runs.

The plain implementation is the textbook sequence of PyTorch operations, differentiated by autograd
(``impl='plain'``, and whatever a compiler or exporter records). The fast one (``impl='fast'``, the default)
computes the same function with fewer passes over memory: matmuls that apply bias, residual add and (in
inference) activation in their epilogue, an attention core that never writes out its logits in inference and
keeps or recomputes them in training, gathers whose backward is a gather, strided convolutions by
space-to-depth. :func:`fast_kernels_apply` is the decision between the two for every call; among the fast
kernels, :meth:`FastPath.kernel` applies the fixed rules of :mod:`.rules`.

Tokens are channels-last: ``x`` is (..., C) everywhere except in :func:`conv2d`.
"""
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention_kernels import group_attention, plain_attention_probs
from .conv_kernels import space_to_depth_applies, strided_conv2d
from .gather_kernels import InvertibleRowGather, gather_rows_forward
from .linear_kernels import ActivationRecomputingLinear, TiledMlp, fused_linear, fusible_activation, needs_grad
from ..grouping import GroupMask, concat_neighbours, to_tap_major
from .rules import TILE_TOKENS, FastPath

__all__ = ['FastPath', 'fast_kernels_apply', 'capturing_graph', 'linear', 'patch_merging', 'mlp', 'attention',
           'projected_attention', 'conv2d', 'gather_rows']


def capturing_graph() -> bool:
    """Whether torch.compile, torch.export or torch.jit.trace (so torch.onnx.export) is recording the forward."""
    # is_compiling first: dynamo would break the graph on the checks after it.
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def fast_kernels_apply(fast_path: FastPath, x: torch.Tensor, weight: Optional[torch.Tensor] = None,
                       dropout: Optional[nn.Dropout] = None) -> bool:
    """Whether this call runs the fast kernels rather than the plain operations.

    They run when the backbone asked for them (``impl='fast'``), except
    * while a graph is being captured (:func:`capturing_graph`): the custom autograd Functions and oneDNN ops
      have no ONNX form, and the compilers fuse the plain operations themselves;
    * while ``dropout`` is active: the fast kernels would draw another dropout pattern;
    * for an operation with a ``weight`` (matmul, convolution) whose dtype is not x's, or under autocast, which
      casts for the operations it knows and not for these kernels. The attention core has no weight: it
      computes in the dtype its input arrives in, under autocast too.
    """
    if not fast_path.enabled or capturing_graph():
        return False
    if dropout is not None and dropout.p > 0 and dropout.training:
        return False
    return weight is None or (x.dtype == weight.dtype and not torch.is_autocast_enabled(x.device.type))


def _drops_path(residual: Optional[torch.Tensor], drop_path: Optional[nn.Module]) -> bool:
    # With stochastic depth active the branch is scaled per sample before the residual add, which no
    # epilogue does: the add is then a separate operation.
    return residual is not None and drop_path is not None and drop_path.active


def linear(x: torch.Tensor, layer: nn.Linear, fast_path: FastPath, *, weight: Optional[torch.Tensor] = None,
           bias: Optional[torch.Tensor] = None, dropout: Optional[nn.Dropout] = None,
           residual: Optional[torch.Tensor] = None, drop_path: Optional[nn.Module] = None) -> torch.Tensor:
    """``residual + drop_path(dropout(layer(x)))``; without ``residual``, ``dropout(layer(x))``. ``weight`` and
    ``bias`` replace the layer's own (the fast patch merging's reduction read in its input's channel order, Swin
    V2's qkv bias built from its q and v biases). The plain path calls the layer where nothing replaces its
    parameters, so its hooks (FLOP counting, users') see it."""
    if _drops_path(residual, drop_path):
        return residual + drop_path(linear(x, layer, fast_path, weight=weight, bias=bias, dropout=dropout))
    weight = layer.weight if weight is None else weight
    bias = layer.bias if bias is None else bias
    if not fast_kernels_apply(fast_path, x, weight, dropout):
        out = layer(x) if weight is layer.weight and bias is layer.bias else F.linear(x, weight, bias)
        out = out if dropout is None else dropout(out)
        return out if residual is None else residual + out
    return fused_linear(x, weight, bias, fast_path, residual=residual)


def mlp(x: torch.Tensor, fc1: nn.Linear, activation: nn.Module, fc2: nn.Linear, dropout: nn.Dropout,
        fast_path: FastPath, *, residual: Optional[torch.Tensor] = None,
        drop_path: Optional[nn.Module] = None) -> torch.Tensor:
    """``residual + drop_path(dropout(fc2(dropout(activation(fc1(x))))))``, or without ``residual`` the MLP alone.

    Fast: in inference the activation is fc1's epilogue where the kernel has it (exact GELU, ReLU); with
    ``save_memory`` in training, fc2 recomputes the activation in backward instead of keeping it; where the
    ``tiles`` rule says, in tiles of tokens, forward and backward.
    """
    if _drops_path(residual, drop_path):
        return residual + drop_path(mlp(x, fc1, activation, fc2, dropout, fast_path))
    if not fast_kernels_apply(fast_path, x, fc1.weight, dropout):
        out = dropout(fc2(dropout(activation(fc1(x)))))
        return out if residual is None else residual + out
    if not needs_grad(x, residual, fc1.weight, fc1.bias, fc2.weight, fc2.bias):
        if _tiled(fast_path, x):
            tokens, channels = x.reshape(-1, x.shape[-1]), x.shape[-1]
            residuals = residual.reshape(-1, channels) if residual is not None else None
            out = x.new_empty(tokens.shape)
            for start in range(0, tokens.shape[0], TILE_TOKENS):
                tile = slice(start, start + TILE_TOKENS)
                out[tile] = _inference_mlp(tokens[tile], fc1, activation, fc2, fast_path,
                                           residuals[tile] if residuals is not None else None)
            return out.view(x.shape)
        return _inference_mlp(x, fc1, activation, fc2, fast_path, residual)
    if _tiled(fast_path, x):
        tokens = x.reshape(-1, x.shape[-1])
        out = TiledMlp.apply(tokens, fc1.weight, fc1.bias, fc2.weight, fc2.bias,
                             residual.reshape(tokens.shape) if residual is not None else None, activation,
                             fast_path.kernel('linear', x.device, x.dtype), TILE_TOKENS)
        return out.view(x.shape)
    hidden = fused_linear(x, fc1.weight, fc1.bias, fast_path)
    if fast_path.save_memory:
        return ActivationRecomputingLinear.apply(hidden, fc2.weight, fc2.bias, residual, activation,
                                                 fast_path.kernel('linear', x.device, x.dtype))
    return fused_linear(activation(hidden), fc2.weight, fc2.bias, fast_path, residual=residual)


def _inference_mlp(x, fc1, activation, fc2, fast_path, residual):
    epilogue = fusible_activation(activation)
    if epilogue:
        hidden = fused_linear(x, fc1.weight, fc1.bias, fast_path, activation=epilogue)
    else:
        hidden = activation(fused_linear(x, fc1.weight, fc1.bias, fast_path))
    return fused_linear(hidden, fc2.weight, fc2.bias, fast_path, residual=residual)


def _tiled(fast_path: FastPath, x: torch.Tensor) -> bool:
    """Whether a call on the fast path runs in tiles of tokens (the ``tiles`` rule)."""
    return fast_path.kernel('tiles', x.device, x.dtype, width=x.shape[-1]) == 'tiled'


def projected_attention(x: torch.Tensor, qkv: nn.Linear, num_heads: int, bias: torch.Tensor,
                        mask: Optional[GroupMask], scale: Union[float, torch.Tensor], fast_path: FastPath, *,
                        qkv_bias: Optional[torch.Tensor] = None, cosine: bool = False,
                        dropout: Optional[nn.Dropout] = None) -> torch.Tensor:
    """The qkv projection of (B * nG, N, C) tokens, then :func:`attention`: the heads' outputs concatenated,
    (B * nG, N, C). ``qkv_bias`` replaces the projection's own bias. Fast, in inference, in tiles of groups
    where the ``tiles`` rule says (each tile's qkv stays in the cache for its attention)."""
    groups, length, channels = x.shape
    inference = not needs_grad(x, qkv.weight, qkv.bias, qkv_bias, bias)
    if inference and fast_kernels_apply(fast_path, x, qkv.weight) and _tiled(fast_path, x):
        out = x.new_empty(x.shape)
        per_tile = max(1, TILE_TOKENS // length)
        per_image = mask.groups_per_image if mask is not None else groups
        for image in range(0, groups, per_image):
            for start in range(image, image + per_image, per_tile):
                stop = min(start + per_tile, image + per_image)
                tile_mask = mask.restricted(start - image, stop - image) if mask is not None else None
                _project_and_attend(x[start:stop], qkv, num_heads, bias, tile_mask, scale, fast_path, qkv_bias,
                                    cosine, dropout, out=out[start:stop])
        return out
    return _project_and_attend(x, qkv, num_heads, bias, mask, scale, fast_path, qkv_bias, cosine, dropout)


def _project_and_attend(x, qkv, num_heads, bias, mask, scale, fast_path, qkv_bias, cosine, dropout, out=None):
    """The heads' outputs concatenated, (B * nG, N, C), written into ``out`` if given (no autograd then)."""
    groups, length, channels = x.shape
    projected = linear(x, qkv, fast_path, bias=qkv_bias).reshape(groups, length, 3, num_heads, channels // num_heads)
    heads = attention(projected, bias, mask, scale, fast_path, cosine=cosine, dropout=dropout).transpose(1, 2)
    if out is None:
        return heads.reshape(groups, length, channels)
    out.view(groups, length, num_heads, -1).copy_(heads)
    return out


def attention(qkv: torch.Tensor, bias: torch.Tensor, mask: Optional[torch.Tensor], scale: Union[float, torch.Tensor],
              fast_path: FastPath, *, cosine: bool = False, dropout: Optional[nn.Dropout] = None) -> torch.Tensor:
    """Multi-head attention inside groups of tokens: softmax(scale * q @ k^T + bias + mask) @ v, or with ``cosine``
    softmax(cos(q, k) * scale + bias + mask) @ v (Swin V2; ``scale`` per head).

    qkv: (B * nG, N, 3, heads, d), as the qkv projection's output reshapes; bias: (heads, N, N); mask: (nG, N or 1,
    N) additive, or None; scale: a float, or (heads, 1, 1). Returns (B * nG, heads, N, d).
    """
    if fast_kernels_apply(fast_path, qkv, dropout=dropout):
        return group_attention(qkv, bias, mask, scale, cosine, fast_path=fast_path)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nG, heads, N, d
    probs = plain_attention_probs(q, k, bias, mask, scale, cosine)
    return (probs if dropout is None else dropout(probs)) @ v


def patch_merging(x: torch.Tensor, norm: Optional[nn.LayerNorm], reduction: nn.Linear, stride: int,
                  fast_path: FastPath) -> torch.Tensor:
    """``reduction(norm(neighbours))`` (without ``norm``, ``reduction(neighbours)``), (B, H, W, C) -> (B, ceil(H/s),
    ceil(W/s), out): the 2x2 neighbourhoods of every ``stride``-th token concatenated channel-major, the order of
    mmdet's ``nn.Unfold`` and of the parameters (:func:`.grouping.concat_neighbours`). Fast: concatenated
    tap-major, a copy of runs of C channels instead of one interleaving the taps channel by channel, with the
    parameters reordered to match (:func:`.grouping.to_tap_major`, a copy of the weight only)."""
    if not fast_kernels_apply(fast_path, x, reduction.weight):
        x = concat_neighbours(x, stride)
        return reduction(norm(x) if norm is not None else x)
    x = concat_neighbours(x, stride, tap_major=True)
    if norm is not None:
        x = F.layer_norm(x, norm.normalized_shape, _to_tap_major(norm.weight), _to_tap_major(norm.bias), norm.eps)
    return linear(x, reduction, fast_path, weight=to_tap_major(reduction.weight))


def _to_tap_major(parameter: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if parameter is None else to_tap_major(parameter)


def conv2d(x: torch.Tensor, conv: nn.Conv2d, fast_path: FastPath) -> torch.Tensor:
    """``conv(x)`` for a (B, C, H, W) ``x``; fast: by the ``strided_conv`` kernel where space-to-depth can compute
    the convolution (a square kernel that is a multiple of its stride), in the channels-last memory format."""
    if not (fast_kernels_apply(fast_path, x, conv.weight) and space_to_depth_applies(conv)):
        return conv(x)
    kernel = fast_path.kernel('strided_conv', x.device, x.dtype, kernel_to_stride=conv.kernel_size[0] // conv.stride[0])
    # Channels-last in, channels-last out: the (B, H, W, C) tokens the model makes of the output are then a view
    # rather than a transposing copy, and oneDNN's convolution and its weight gradient run faster on this layout
    # (Swin-T's patch embedding at 800 x 1333: 11 against 18 ms, with backward 18 against 45 ms).
    x = x.contiguous(memory_format=torch.channels_last)
    return strided_conv2d(x, conv.weight, conv.bias, conv.stride[0], conv.padding[0], kernel)


def gather_rows(source: torch.Tensor, index: torch.Tensor, fast_path: FastPath, *,
                inverse: Optional[torch.Tensor] = None, zero_rows: Optional[torch.Tensor] = None,
                inverse_zero_rows: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``source[index]`` for a 2-d ``source``, with the rows where ``zero_rows`` is set zeroed.

    ``inverse`` gives, for every row of ``source``, the one output row that holds it (every source row is
    picked exactly once outside ``zero_rows``); ``inverse_zero_rows`` marks the source rows no output row
    holds. Fast, with them, the gradient is the gather ``grad[inverse]`` (zero on ``inverse_zero_rows``)
    instead of autograd's scatter-add.
    """
    if inverse is not None and needs_grad(source) and fast_kernels_apply(fast_path, source):
        return InvertibleRowGather.apply(source, index, inverse, zero_rows, inverse_zero_rows)
    return gather_rows_forward(source, index, zero_rows)
