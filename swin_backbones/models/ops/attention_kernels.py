"""Kernels of the attention core: softmax(scale * q @ k^T + bias + mask) @ v inside groups of tokens, or with
``cosine=True`` (Swin V2's scaled cosine attention) softmax(cos(q, k) * scale + bias + mask) @ v with a per-head
``scale``.

Implementations of the same function (:func:`swin_backbones.models.ops.attention` chooses):

* :func:`plain_attention_probs` (then ``@ v``): the textbook sequence of matmul, adds, softmax and
  matmul, differentiated by autograd.
* :func:`group_attention`, the fast kernels:

  - without gradients, ``F.scaled_dot_product_attention`` with bias and mask passed as one additive mask
    that broadcasts over the batch, so the logits are never written out as a whole;
  - in training, the ``attention_backward`` kernel its :class:`.kernels.FastPath` gives: ``store``, a
    matmul-softmax-matmul forward keeping the probabilities, and a backward that writes the gradient of
    the whole qkv tensor at once (both head by head); ``recompute``, the SDPA forward keeping only q, k and v,
    and a backward that rebuilds the probabilities chunk by chunk; or ``sdpa``, the SDPA kernel with its own
    backward (GPUs).

  With ``cosine``, q and k are normalised (and q scaled per head) first, so that these dot-product kernels
  compute cosine attention.
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F

from ..grouping import GroupMask
from .rules import FastPath

# Logits materialised at once by the recomputing backward: with 1M floats (4 MB, one head of a 1024-token
# group) a chunk's three buffers stay in the last-level cache between its matmuls. Measured on a 2-core AVX2
# EPYC: 1.4x faster than 16 MB chunks for CrossFormer's long groups, equal for 49-token windows.
_BACKWARD_CHUNK_ELEMENTS = 1 << 20


def plain_attention_probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor, mask: Optional[GroupMask],
                          scale: Union[float, torch.Tensor], cosine: bool = False) -> torch.Tensor:
    """The 'plain' core up to the softmax: (B * nG, heads, N, N) probabilities, to be multiplied by v.

    q, k: (B * nG, heads, N, d); bias: (heads, N, N); mask: a :class:`.grouping.GroupMask` of the nG groups of
    each image, or None; scale: a float, or with ``cosine`` also a (heads, 1, 1) tensor of per-head factors of
    the cosine similarity.
    """
    groups, heads, length, _ = q.shape
    if cosine:
        attn = (_unit(q) @ _unit(k).transpose(-2, -1)) * scale + bias
    else:
        attn = (q * scale) @ k.transpose(-2, -1) + bias
    if mask is not None:
        attn = attn.view(-1, mask.groups_per_image, heads, length, length) + mask.full().unsqueeze(1)
        attn = attn.view(groups, heads, length, length)
    return attn.softmax(dim=-1)


def group_attention(qkv: torch.Tensor, bias: torch.Tensor, mask: Optional[GroupMask],
                    scale: Union[float, torch.Tensor], cosine: bool = False, *, fast_path: FastPath) -> torch.Tensor:
    """The fast core. qkv: (B * nG, N, 3, heads, d), the qkv projection as it comes out of the matmul;
    bias, mask, scale and cosine as in :func:`plain_attention_probs`. Returns (B * nG, heads, N, d); in
    training by the ``attention_backward`` kernel of ``fast_path``.
    """
    if cosine:
        qkv, scale = _scaled_cosine_qkv(qkv, scale), 1.0
    length = qkv.shape[1]
    # Under autocast qkv already has the low-precision dtype: the kernels compute in it (their backward,
    # which autocast does not reach, too).
    with torch.autocast(qkv.device.type, enabled=False):
        if torch.is_grad_enabled() and (qkv.requires_grad or bias.requires_grad):
            kernel = fast_path.kernel('attention_backward', qkv.device, qkv.dtype, length=length)
            return attention_training(qkv, bias, mask, scale, kernel)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nG, heads, N, d
        return _sdpa(q, k, v, bias, mask, scale)


def attention_training(qkv, bias, mask, scale, kernel: str) -> torch.Tensor:
    """The differentiable core, by the ``attention_backward`` kernel 'store', 'recompute' or 'sdpa'."""
    if kernel == 'store':
        return _StoringAttention.apply(qkv, bias, mask, scale)
    if kernel == 'recompute':
        return _RecomputingAttention.apply(qkv, bias, mask, scale)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return _sdpa(q, k, v, bias, mask, scale)


def _scaled_cosine_qkv(qkv: torch.Tensor, scale: Union[float, torch.Tensor]) -> torch.Tensor:
    """qkv with q and k normalised and each head's q multiplied by its factor: its dot products are the
    scaled cosines, so the dot-product kernels compute cosine attention. Differentiable (autograd takes the
    gradients of the normalisation and of the factors from the kernels' gradient of this tensor)."""
    q, k, v = qkv.unbind(2)  # each B*nG, N, heads, d
    if isinstance(scale, torch.Tensor):  # heads, 1, 1 -> heads, 1: broadcasts over (B*nG, N, heads, d)
        scale = scale.view(-1, 1).to(q.dtype)
    return torch.stack((_unit(q) * scale, _unit(k), v), dim=2)


def _unit(x: torch.Tensor) -> torch.Tensor:
    """x / max(|x|, eps) along the last axis, as F.normalize with its eps of 1e-12, raised to the smallest normal
    number of fp16 there (1e-12 is 0 in fp16), with no gradient through all-zero vectors.

    The keys of padded tokens are exactly zero (the padding is zeros and Swin V2 has no key bias). There the
    derivative is 1 / eps, which overflows fp16 to inf; multiplied by the zero input in the weight gradient it
    would make it NaN, while in exact arithmetic that product is zero. Masking the incoming gradient of those
    vectors gives the exact result in every dtype and leaves the forward unchanged (they normalise to zero).
    """
    nonzero = (x != 0).any(dim=-1, keepdim=True)
    return F.normalize(x, dim=-1, eps=max(1e-12, torch.finfo(x.dtype).tiny)) * nonzero


def _combined_mask(bias: torch.Tensor, mask: Optional[GroupMask], dtype: torch.dtype) -> torch.Tensor:
    """(1 or nG, heads, N, N): the additive term of the logits of every group of an image, in the dtype of q."""
    if mask is None:
        return bias.to(dtype).unsqueeze(0)
    return (mask.full().unsqueeze(1) + bias).to(dtype)


def _image_slices(total_groups: int, mask: Optional[GroupMask]):
    """Slices of the (B * nG) group axis that share one mask: every image, or everything without a mask."""
    per_image = mask.groups_per_image if mask is not None else total_groups
    return [slice(start, start + per_image) for start in range(0, total_groups, per_image)]


def _masked_groups(total_groups: int, mask: GroupMask) -> torch.Tensor:
    """(B, nM): the positions in the (B * nG) group axis of the groups ``mask.index`` names in each image."""
    starts = torch.arange(0, total_groups, mask.groups_per_image, device=mask.index.device)
    return starts.unsqueeze(1) + mask.index


def _sdpa(q, k, v, bias, mask, scale) -> torch.Tensor:
    if mask is not None and mask.index is not None:
        # Every group with the bias alone (shared by all: never written out per group), then the masked ones
        # again with bias and mask, written over theirs.
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype).unsqueeze(0), scale=scale)
        additive = (mask.additive.unsqueeze(1) + bias).to(q.dtype)
        for rows in _masked_groups(q.shape[0], mask):
            masked = F.scaled_dot_product_attention(q[rows], k[rows], v[rows], attn_mask=additive, scale=scale)
            out = out.index_copy_(0, rows, masked) if not out.requires_grad else out.index_copy(0, rows, masked)
        return out
    additive = _combined_mask(bias, mask, q.dtype)
    outs = [F.scaled_dot_product_attention(q[part], k[part], v[part], attn_mask=additive, scale=scale)
            for part in _image_slices(q.shape[0], mask)]
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def _add_group_mask(logits: torch.Tensor, mask: Optional[GroupMask]) -> torch.Tensor:
    """Adds the mask (its additive term in the logits' dtype) to one head's (B * nG, N, N) logits, in place, in
    the groups it names only."""
    if mask is None:
        return logits
    length = logits.shape[-1]
    per_image = logits.view(-1, mask.groups_per_image, length, length)
    if mask.index is None:
        per_image.add_(mask.additive)
    else:
        per_image.index_add_(1, mask.index, mask.additive.expand(per_image.shape[0], -1, length, length))
    return logits


def _gradients_from_probs(probs, q, k, v, grad_out, scale, grad_probs=None, grad_logits=None):
    """Gradients of the core softmax(scale * q @ k^T + ...) @ v with respect to q, k, v and the logits, given
    its probabilities; the gradients of the probabilities and of the logits are written into ``grad_probs``
    and ``grad_logits`` when given (buffers of the probabilities' shape)."""
    grad_v = torch.matmul(probs.transpose(-2, -1), grad_out)
    grad_probs = torch.matmul(grad_out, v.transpose(-2, -1), out=grad_probs)
    grad_logits = torch.ops.aten._softmax_backward_data.out(
        grad_probs, probs, -1, probs.dtype, grad_input=torch.empty_like(probs) if grad_logits is None else grad_logits)
    grad_k = torch.matmul(grad_logits.transpose(-2, -1), q).mul_(scale)
    grad_q = torch.matmul(grad_logits, k).mul_(scale)
    return grad_q, grad_k, grad_v, grad_logits


class _StoringAttention(torch.autograd.Function):
    """matmul-softmax-matmul forward that keeps the probabilities (and the qkv tensor); the backward writes the
    gradient of the whole qkv tensor at once. Both run head by head: one head's q, k and v are (B * nG, N, d)
    strided views of qkv that the batched matmuls read in place (the (B * nG, heads) axes of a head-major
    layout cannot be merged into one batch axis without copying q, k and v), and one head's logits and
    their gradients stay in the cache between the matmuls, the softmax and its backward. ``scale`` is a
    float here (cosine attention has folded its per-head factors into q)."""

    @staticmethod
    def forward(ctx, qkv, bias, mask, scale):
        groups, length, _, heads, dim = qkv.shape
        q, k, v = qkv.unbind(2)  # each B*nG, N, heads, d
        bias_in_dtype = bias.detach().to(qkv.dtype)
        if mask is not None:
            mask = mask._replace(additive=mask.additive.to(qkv.dtype))  # once, not per head
        logits = qkv.new_empty(groups, length, length)
        probs = qkv.new_empty(heads, groups, length, length)
        out = qkv.new_empty(heads, groups, length, dim)
        for head in range(heads):
            torch.baddbmm(bias_in_dtype[head], q[:, :, head], k[:, :, head].transpose(1, 2), alpha=scale, out=logits)
            torch.ops.aten._softmax.out(_add_group_mask(logits, mask), -1, False, out=probs[head])
            torch.bmm(probs[head], v[:, :, head], out=out[head])
        ctx.scale = scale
        ctx.bias_dtype = bias.dtype
        ctx.save_for_backward(qkv, probs)
        return out.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_out):
        qkv, probs = ctx.saved_tensors
        groups, length, _, heads, dim = qkv.shape
        q, k, v = qkv.unbind(2)
        grad_qkv = torch.empty_like(qkv, memory_format=torch.contiguous_format)
        grad_q, grad_k, grad_v = grad_qkv.unbind(2)
        grad_bias = torch.empty((heads, length, length), dtype=torch.float32, device=qkv.device)
        grad_probs, grad_logits = (probs.new_empty(groups, length, length) for _ in range(2))
        for head in range(heads):
            grads = _gradients_from_probs(probs[head], q[:, :, head], k[:, :, head], v[:, :, head], grad_out[:, head],
                                          ctx.scale, grad_probs, grad_logits)
            for grad, head_grad in zip((grad_q, grad_k, grad_v), grads):
                grad[:, :, head].copy_(head_grad)
            torch.sum(grads[3], 0, dtype=torch.float32, out=grad_bias[head])
        return grad_qkv, grad_bias.to(ctx.bias_dtype), None, None


class _RecomputingAttention(torch.autograd.Function):
    """SDPA forward keeping only q, k and v; the backward rebuilds the softmax probabilities chunk by chunk
    and writes the gradient of the whole qkv tensor at once."""

    @staticmethod
    def forward(ctx, qkv, bias, mask, scale):
        ctx.scale, ctx.mask = scale, mask  # the mask is no input of autograd's: built from sizes, never trained
        ctx.save_for_backward(qkv, bias)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        # Detached: a mask that requires grad sends the kernel down its unfused path.
        return _sdpa(q, k, v, bias.detach(), mask, scale)

    @staticmethod
    def backward(ctx, grad_out):
        qkv, bias = ctx.saved_tensors
        scale, mask = ctx.scale, ctx.mask
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nG, heads, N, d
        groups, heads, length, dim = q.shape
        grad_qkv = torch.empty_like(qkv, memory_format=torch.contiguous_format)
        grad_q, grad_k, grad_v = grad_qkv.permute(2, 0, 3, 1, 4).unbind(0)
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
        grad_out = grad_out.contiguous()
        additive = _combined_mask(bias.detach(), mask, q.dtype)
        # Chunks of whole groups, or of some heads of one group where a group alone exceeds the chunk size.
        group_step = max(1, min(groups, _BACKWARD_CHUNK_ELEMENTS // (heads * length * length)))
        head_step = heads if group_step > 1 else max(1, min(heads, _BACKWARD_CHUNK_ELEMENTS // (length * length)))
        # Reused by every chunk (written through out= arguments): a fresh allocation of this size would be
        # paged in anew each time.
        probs_buffer, grad_probs_buffer, logits_buffer = (
            q.new_empty(group_step * head_step, length, length) for _ in range(3))
        for image in _image_slices(groups, mask):
            for start in range(image.start, image.stop, group_step):
                part = slice(start, min(start + group_step, image.stop))
                local = slice(part.start - image.start, part.stop - image.start) if mask is not None else slice(None)
                for head_start in range(0, heads, head_step):
                    some = slice(head_start, min(head_start + head_step, heads))
                    _chunk_gradients(
                        q[part, some], k[part, some], v[part, some], grad_out[part, some], additive[local, some],
                        scale, (probs_buffer, grad_probs_buffer, logits_buffer),
                        grad_q[part, some], grad_k[part, some], grad_v[part, some], grad_bias[some])
        return grad_qkv, grad_bias.to(bias.dtype), None, None


def _chunk_gradients(q, k, v, grad_out, additive, scale, buffers, grad_q, grad_k, grad_v, grad_bias):
    """The recomputing backward of one chunk: q, k, v, grad_out (g, h, N, d) and additive (1 or g, h, N, N)
    in; the gradients written into grad_q, grad_k, grad_v (g, h, N, d) and added to grad_bias (h, N, N)."""
    groups, heads, length, dim = q.shape
    count = groups * heads
    q, k, v, grad_out = (t.reshape(count, length, dim) for t in (q, k, v, grad_out))
    probs, grad_probs, logits = (buffer[:count] for buffer in buffers)
    logits.baddbmm_(q, k.transpose(1, 2), beta=0, alpha=scale)
    logits.view(groups, heads, length, length).add_(additive)
    torch.ops.aten._softmax.out(logits, -1, False, out=probs)
    # The logits' gradient takes the logits' buffer: the softmax has read them.
    grads = _gradients_from_probs(probs, q, k, v, grad_out, scale, grad_probs, grad_logits=logits)
    for group_grad_logits in grads[3].view(groups, heads, length, length):
        grad_bias += group_grad_logits
    for grad, chunk_grad in zip((grad_q, grad_k, grad_v), grads):
        grad.copy_(chunk_grad.view(groups, heads, length, dim))
