"""The layers every backbone builds from: norms and activations from mmcv-style configs, stochastic depth,
activation checkpointing of a block, the MLP and multi-head attention inside groups of tokens.

Feature maps travel between blocks channels-last, as (B, H, W, C) (or (B * groups, N, C) inside attention):
LayerNorm and Linear act on the last axis. The arithmetic of the MLP and the attention runs through
:mod:`.ops`, which decides whether the fast kernels or the plain operations compute it.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.utils.checkpoint as checkpoint

from ..errors import ConfigError
from . import ops

_ACTIVATIONS = {'GELU': nn.GELU, 'ReLU': nn.ReLU, 'SiLU': nn.SiLU, 'Swish': nn.SiLU}


def build_norm(norm_cfg: dict, num_features: int) -> nn.LayerNorm:
    """LayerNorm from an mmcv-style ``norm_cfg`` (only ``LN`` fits token sequences)."""
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type', None)
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type not in ('LN', 'LayerNorm', nn.LayerNorm):
        raise ConfigError(f"norm_cfg type must be 'LN' (LayerNorm over channels), got {norm_type!r}")
    norm = nn.LayerNorm(num_features, **cfg)
    for param in norm.parameters():
        param.requires_grad = requires_grad
    return norm


def build_activation(act_cfg: dict) -> nn.Module:
    cfg = dict(act_cfg)
    act_type = cfg.pop('type', None)
    if act_type not in _ACTIVATIONS:
        raise ConfigError(f'act_cfg type must be one of {sorted(_ACTIVATIONS)}, got {act_type!r}')
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


class Mlp(nn.Module):
    """Linear(C, hidden) -> activation -> dropout -> Linear(hidden, C) -> dropout, by :func:`.ops.mlp`."""

    def __init__(self, dim: int, hidden_dim: int, act_cfg: dict = dict(type='GELU'), drop: float = 0.0, *,
                 fast_path: ops.FastPath):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)
        self.fast_path = fast_path

    def forward(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
                drop_path: Optional[DropPath] = None) -> torch.Tensor:
        """The MLP of x; with ``residual``, ``residual + drop_path(MLP(x))`` (the block's skip connection)."""
        return ops.mlp(x, self.fc1, self.act, self.fc2, self.drop, self.fast_path, residual=residual,
                       drop_path=drop_path)


class MultiHeadGroupAttention(nn.Module):
    """Multi-head self-attention inside groups of tokens, with a position bias and an optional additive mask.

    Subclasses provide the position bias (a learned table for Swin, an MLP for Swin V2 and CrossFormer) and
    move the tokens into groups. :meth:`attend_groups` and :meth:`project` are the two halves of the
    attention, for callers that move the tokens between them (the output projection acts on each token alone).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, *, fast_path: ops.FastPath):
        super().__init__()
        if dim % num_heads != 0:
            raise ConfigError(f'embedding dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.fast_path = fast_path
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend_groups(self, x: torch.Tensor, bias: torch.Tensor, mask: Optional[torch.Tensor],
                      qkv_bias: Optional[torch.Tensor] = None,
                      cosine_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The heads' outputs, concatenated, before the output projection.

        x: (B * nG, N, C); bias: (heads, N, N); mask: a :class:`.grouping.GroupMask`, or None. Returns (B * nG, N, C).
        Swin V2 passes ``qkv_bias`` (3C,), the bias of the qkv projection built from its q and v biases, and
        ``cosine_scale`` (heads, 1, 1): the logits are then cos(q, k) times each head's factor.
        """
        cosine = cosine_scale is not None
        return ops.projected_attention(x, self.qkv, self.num_heads, bias, mask,
                                       cosine_scale if cosine else self.scale, self.fast_path, qkv_bias=qkv_bias,
                                       cosine=cosine, dropout=self.attn_drop)

    def project(self, x: torch.Tensor, residual: Optional[torch.Tensor] = None,
                drop_path: Optional[DropPath] = None) -> torch.Tensor:
        """The output projection (and dropout) of (..., C) tokens; with ``residual``,
        ``residual + drop_path(projection)``."""
        return ops.linear(x, self.proj, self.fast_path, dropout=self.proj_drop, residual=residual,
                          drop_path=drop_path)
