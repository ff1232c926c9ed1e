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

_ACTIVATIONS = {'GELU': nn.GELU, 'ReLU': nn.ReLU, 'SiLU': nn.SiLU, 'Swish': nn.SiLU}


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        keep = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
        return x * keep.div_(keep_prob)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'


class Mlp(nn.Module):
    """Linear(C, hidden) -> activation -> dropout -> Linear(hidden, C) -> dropout."""

    def __init__(self, dim: int, hidden_dim: int, act_cfg: dict = dict(type='GELU'), drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = build_activation(act_cfg)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def pad_to_multiple(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) map at the bottom and right up to multiples of the given sizes."""
    _, height, width, _ = x.shape
    pad_h = -height % multiple_h
    pad_w = -width % multiple_w
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


def pad_image_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads a (B, C, H, W) image at the bottom and right up to multiples of ``multiple``."""
    pad_h = -x.shape[2] % multiple
    pad_w = -x.shape[3] % multiple
    if pad_h == 0 and pad_w == 0:
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


def shift_region_mask(height: int, width: int, window: int, shift: int, grouping: Grouping,
                      device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Swin's SW-MSA mask for a padded (height, width) map rolled by (-shift, -shift).

    Returns (num_windows, N, N): -100 between tokens of one window that came from different
    regions of the unrolled map, 0 elsewhere.
    """
    labels = torch.zeros(1, height, width, 1, device=device)
    slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    label = 0
    for rows in slices:
        for cols in slices:
            labels[:, rows, cols, :] = label
            label += 1
    labels = group_tokens(labels, grouping).squeeze(-1)  # nW, N
    different = labels.unsqueeze(1) != labels.unsqueeze(2)
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill_(different, -100.0)


def padding_key_mask(height: int, width: int, padded_height: int, padded_width: int,
                     grouping: Grouping, device: torch.device, dtype: torch.dtype,
                     fill: float = -1e6) -> Optional[torch.Tensor]:
    """Additive mask that hides padded tokens as keys: (num_groups, 1, N), or None without padding."""
    if height == padded_height and width == padded_width:
        return None
    is_pad = torch.ones(1, padded_height, padded_width, 1, device=device, dtype=torch.bool)
    is_pad[:, :height, :width] = False
    is_pad = group_tokens(is_pad, grouping).squeeze(-1).unsqueeze(1)  # nG, 1, N
    return torch.zeros(is_pad.shape, device=device, dtype=dtype).masked_fill_(is_pad, fill)


class MultiHeadGroupAttention(nn.Module):
    """Multi-head self-attention inside groups of tokens, with a position bias and an optional mask.

    Subclasses provide the position bias (a learned table for Swin, an MLP for CrossFormer).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: Optional[float] = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f'embedding dim {dim} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def attend(self, x: torch.Tensor, bias: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B * nG, N, C); bias: (heads, N, N); mask: (nG, N or 1, N) additive, or None."""
        groups, length, channels = x.shape
        qkv = self.qkv(x).reshape(groups, length, 3, self.num_heads, channels // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B*nG, heads, N, d
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias
        if mask is not None:
            num_groups = mask.shape[0]
            attn = attn.view(-1, num_groups, self.num_heads, length, length) + mask.unsqueeze(1)
            attn = attn.view(-1, self.num_heads, length, length)
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(groups, length, channels)
        return self.proj_drop(self.proj(x))
