"""Kernels of the linear layers: the matmul with its epilogue (bias, residual add, and in inference the
activation) in one pass, by the ``linear`` kernel of the fast path ('aten' or 'onednn', which computes the input
gradients in backward too), and an MLP output layer that recomputes its input activation in backward instead of
keeping it (``save_memory``).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .rules import FastPath

# Activations a linear kernel applies as its epilogue (oneDNN by these names, aten in place), by module type.
_FUSIBLE_ACTIVATIONS = {nn.GELU: 'gelu', nn.ReLU: 'relu'}
_IN_PLACE_ACTIVATIONS = {'gelu': torch._C._nn.gelu_, 'relu': torch.relu_}


def fusible_activation(activation: nn.Module) -> Optional[str]:
    """The epilogue name of ``activation`` when a linear kernel can apply it ('gelu' exact, 'relu'), else None."""
    name = _FUSIBLE_ACTIVATIONS.get(type(activation))
    return name if name != 'gelu' or activation.approximate == 'none' else None


def needs_grad(*tensors: Optional[torch.Tensor]) -> bool:
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


def input_gradient(grad_out: torch.Tensor, weight: torch.Tensor, kernel: str) -> torch.Tensor:
    """``grad_out @ weight``, the gradient of ``F.linear(x, weight)`` with respect to x, by the ``linear`` kernel
    ('onednn': oneDNN's linear with the transposed weight, which it reads as it reorders every weight it takes)."""
    if kernel == 'onednn':
        return linear_forward(grad_out, weight.t(), None, kernel=kernel)
    return grad_out @ weight


def _linear_backward(ctx, grad_out, x, weight):
    """Gradients of F.linear(x, weight, bias) for the inputs that need them, the input's by ``ctx.kernel``."""
    flat_grad = grad_out.reshape(-1, grad_out.shape[-1])
    grad_x = input_gradient(grad_out, weight, ctx.kernel) if ctx.needs_input_grad[0] else None
    grad_weight = flat_grad.t() @ x.reshape(-1, x.shape[-1]) if ctx.needs_input_grad[1] else None
    grad_bias = flat_grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return grad_x, grad_weight, grad_bias


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear(x, weight, bias) (+ residual)`` by oneDNN's matmul with the epilogue; autograd's backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual):
        ctx.has_bias = bias is not None
        ctx.kernel = 'onednn'
        ctx.save_for_backward(x, weight)
        return linear_forward(x, weight, bias, residual=residual, kernel='onednn')

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grad_residual = grad_out if ctx.needs_input_grad[3] else None
        return (*_linear_backward(ctx, grad_out, x, weight), grad_residual)


def fused_linear(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], fast_path: FastPath,
                 activation: str = 'none', residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``activation(x @ weight^T + bias)`` or ``x @ weight^T + bias + residual`` by the ``linear`` kernel of
    ``fast_path``. Differentiable without an activation; with one, for inference only."""
    kernel = fast_path.kernel('linear', x.device, x.dtype)
    if needs_grad(x, weight, bias, residual):
        if activation != 'none':
            raise RuntimeError('a fused activation has no backward here; compute it after the matmul in training')
        if kernel == 'onednn':
            return _OneDNNLinear.apply(x, weight, bias, residual)
        out = F.linear(x, weight, bias)
        return out if residual is None else out.add_(residual)
    return linear_forward(x, weight, bias, activation, residual, kernel)


class ActivationRecomputingLinear(torch.autograd.Function):
    """``F.linear(activation(h), weight, bias) (+ residual)`` that keeps ``h`` for backward and recomputes
    the activation there, instead of keeping both ``h`` (for the activation) and ``activation(h)`` (for
    the matmul): the MLP's hidden activations are 4x wider than the tokens."""

    @staticmethod
    def forward(ctx, h, weight, bias, residual, activation, kernel):
        ctx.activation, ctx.kernel = activation, kernel
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


class TiledMlp(torch.autograd.Function):
    """``F.linear(activation(F.linear(x, w1, b1)), w2, b2) (+ residual)`` over (M, C) tokens in tiles of ``rows``
    tokens, forward and backward: each tile's hidden activations and their gradients (4 C wide) stay in the cache
    between the two matmuls instead of going through memory. Keeps only the hidden pre-activation for backward
    (the activation is recomputed there, tile by tile); the weight gradients accumulate over the tiles."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, residual, activation, kernel, rows):
        tokens = x.shape[0]
        hidden = x.new_empty(tokens, w1.shape[0])
        out = x.new_empty(tokens, w2.shape[0])
        for start in range(0, tokens, rows):
            tile = slice(start, start + rows)
            hidden[tile] = linear_forward(x[tile], w1, b1, kernel=kernel)
            out[tile] = linear_forward(activation(hidden[tile]), w2, b2,
                                       residual=residual[tile] if residual is not None else None, kernel=kernel)
        ctx.activation, ctx.kernel, ctx.rows = activation, kernel, rows
        ctx.has_bias = (b1 is not None, b2 is not None)
        ctx.save_for_backward(x, hidden, w1, w2)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, hidden, w1, w2 = ctx.saved_tensors
        needs_x, needs_w1, needs_b1, needs_w2, needs_b2, needs_residual = ctx.needs_input_grad[:6]
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x) if needs_x else None
        grad_w1 = torch.zeros_like(w1) if needs_w1 else None
        grad_w2 = torch.zeros_like(w2) if needs_w2 else None
        grad_b1 = w1.new_zeros(w1.shape[0]) if needs_b1 and ctx.has_bias[0] else None
        grad_b2 = grad_out.sum(0) if needs_b2 and ctx.has_bias[1] else None
        for start in range(0, x.shape[0], ctx.rows):
            tile = slice(start, start + ctx.rows)
            grad_tile = grad_out[tile]
            with torch.enable_grad():
                pre = hidden[tile].detach().requires_grad_(True)
                activated = ctx.activation(pre)
            if grad_w2 is not None:
                grad_w2.addmm_(grad_tile.t(), activated.detach())
            grad_pre = torch.autograd.grad(activated, pre, input_gradient(grad_tile, w2, ctx.kernel))[0]
            if grad_w1 is not None:
                grad_w1.addmm_(grad_pre.t(), x[tile])
            if grad_b1 is not None:
                grad_b1 += grad_pre.sum(0)
            if grad_x is not None:
                grad_x[tile] = input_gradient(grad_pre, w1, ctx.kernel)
        return (grad_x, grad_w1, grad_b1, grad_w2, grad_b2, grad_out if needs_residual else None, None, None, None)
