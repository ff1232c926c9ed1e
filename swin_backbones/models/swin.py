"""Swin Transformer backbone (Liu et al., ICCV 2021) for any input size.

Computes the same function as mmdet 3.3.0's ``SwinTransformer`` and takes its constructor arguments. The
window machinery it shares with Swin V2 is in :mod:`.windows`; the checkpoint layouts in :mod:`.swin_layouts`
(:func:`convert_swin_state_dict` reads the authors', mmdet/mmseg and timm layouts).
"""
import math
import re
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..registry import MODELS
from . import ops
from .base import PyramidBackbone, StageSpec, resolve_arch
from .grouping import pair_bias, relative_position_index
from .layers import CheckpointedBlock, DropPath, Mlp, MultiHeadGroupAttention, build_norm
from .swin_layouts import (detect_layout, from_authors_key, from_openmmlab_key, has_swin_patch_embedding,
                           merging_of_previous_stage, neighbour_to_unfold_order, resize_bias_table,
                           resize_position_embedding, to_openmmlab_key)
from .windows import PatchEmbed, SwinStage, WindowLayout, absolute_position_embedding, patch_grid

ARCH_SETTINGS = {
    'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}


class WindowAttention(MultiHeadGroupAttention):
    """W-MSA / SW-MSA over windows of tokens, with the relative position bias (and the shift mask)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool, qk_scale: Optional[float],
                 attn_drop: float, proj_drop: float, fast_path: ops.FastPath):
        super().__init__(dim, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop, fast_path=fast_path)
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size, window_size),
                             persistent=False)

    def forward(self, windows: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """windows: (B * nW, ws * ws, C) -> the heads' outputs before the output projection, same shape
        (the projection acts on each token alone: :meth:`project` it where the tokens are stored)."""
        bias = pair_bias(self.relative_position_bias_table, self.relative_position_index, self.window_size ** 2)
        return self.attend_groups(windows, bias, shift_mask)


class SwinBlock(CheckpointedBlock):
    """``x + DropPath(W-MSA(LN1(x)))``, ``x + DropPath(MLP(LN2(x)))`` on the tokens as the stage stores them
    (see :class:`.windows.WindowLayout`); the attention sees them as windows.

    Padded tokens enter attention as zeros, as in mmdet, which pads the normalised map; they are not masked.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, mlp_ratio: float,
                 qkv_bias: bool, qk_scale: Optional[float], drop: float, attn_drop: float, drop_path: float,
                 act_cfg: dict, norm_cfg: dict, fast_path: ops.FastPath):
        super().__init__()
        self.shifted = shifted
        self.fast_path = fast_path
        self.norm1 = build_norm(norm_cfg, dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias, qk_scale, attn_drop, drop, fast_path)
        self.drop_path = DropPath(drop_path)
        self.norm2 = build_norm(norm_cfg, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg, drop, fast_path=fast_path)

    def _forward(self, x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        view = layout.view(self.shifted)
        windows = view.to_windows(self.norm1(x), layout.grouping.group_len, self.fast_path)
        heads = view.from_windows(self.attn(windows, view.mask), x, self.fast_path)
        x = self.attn.project(heads, residual=x, drop_path=self.drop_path)
        return self.mlp(self.norm2(x), residual=x, drop_path=self.drop_path)

    def extra_repr(self) -> str:
        return f'shifted={self.shifted}'


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/s), ceil(W/s), 2C): 2x2 neighbourhoods of every s-th token concatenated
    (:func:`.grouping.concat_neighbours`), LayerNorm, Linear (:func:`.ops.patch_merging`)."""

    def __init__(self, dim: int, norm_cfg: Optional[dict], stride: int, fast_path: ops.FastPath):
        super().__init__()
        self.stride = stride
        self.fast_path = fast_path
        self.norm = build_norm(norm_cfg, 4 * dim) if norm_cfg else None
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.patch_merging(x, self.norm, self.reduction, self.stride, self.fast_path)

    def extra_repr(self) -> str:
        return f'stride={self.stride}'


@MODELS.register_module()
class SwinTransformer(PyramidBackbone):
    """Swin Transformer backbone: NCHW maps with C, 2C, 4C, 8C channels, of size ceil(H/4), ceil(H/8),
    ceil(H/16), ceil(H/32) with the default strides, each through its output norm ``norm{i}``.

    Takes every argument of mmdet 3.3.0's ``SwinTransformer`` with the same meaning, plus ``arch``. Inputs of
    any size are padded internally, exactly as mmdet does.

    Args:
        arch (str, optional): 'tiny', 'small', 'base' or 'large': sets embed_dims, depths and num_heads.
            Without arch, unset values come from 'tiny'. Defaults to None.
        pretrain_img_size (int | tuple[int]): The pretraining image size, which sets the grid of the
            absolute position embedding. Defaults to 224.
        embed_dims (int, optional): Channels of the first stage. Defaults to None (from arch).
        patch_size (int): Side of the square patches of the patch embedding. Defaults to 4.
        window_size (int): Side of the attention windows. Defaults to 7.
        mlp_ratio (float): Hidden width of the MLP over its input width. Defaults to 4.
        depths (Sequence[int], optional): Blocks per stage. Defaults to None (from arch).
        num_heads (Sequence[int], optional): Attention heads per stage. Defaults to None (from arch).
        strides (Sequence[int]): The patch embedding's stride (must equal patch_size) and each patch
            merging's: 2 halves the map, 1 keeps its size (overlapping 2x2 neighbourhoods, as mmdet computes
            them). Defaults to (4, 2, 2, 2).
        qkv_bias (bool): Biases of the query, key and value projections. Defaults to True.
        qk_scale (float, optional): The logits' scale instead of head_dim ** -0.5. Defaults to None.
        patch_norm (bool): LayerNorm after the patch embedding and in the patch merging. Defaults to True.
        drop_rate (float): Dropout after the position embedding and in the MLP and projection. Defaults to 0.
        attn_drop_rate (float): Dropout of the attention probabilities. Defaults to 0.
        drop_path_rate (float): Stochastic depth rate of the last block (rising linearly from 0 at the
            first). Defaults to 0.1.
        use_abs_pos_embed (bool): Add a learned absolute position embedding after the patch embedding,
            resized bicubically to the input. Defaults to False.
        act_cfg (dict): The MLP's activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): The norm layers (LayerNorm). Defaults to ``dict(type='LN')``.
        convert_weights (bool): Accepted as in mmdet; checkpoint layouts are detected whatever its value.
            Defaults to False.
    """
    presets = {'swin-t': 'tiny', 'swin-s': 'small', 'swin-b': 'base', 'swin-l': 'large'}

    def __init__(self,
                 arch: Optional[str] = None,
                 pretrain_img_size=224,
                 embed_dims: Optional[int] = None,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4,
                 depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None,
                 strides: Sequence[int] = (4, 2, 2, 2),
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 patch_norm: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 convert_weights: bool = False,
                 **common):
        settings = resolve_arch('Swin', ARCH_SETTINGS, arch, 'tiny', embed_dims=embed_dims, depths=depths,
                                num_heads=num_heads)
        strides = _check_strides(strides, patch_size, len(settings['depths']))
        if not isinstance(window_size, int) or window_size < 1:
            raise ConfigError(f'window_size must be a positive int, got {window_size!r}')
        super().__init__(arch=arch, embed_dims=settings['embed_dims'], depths=settings['depths'],
                         num_heads=settings['num_heads'], **common)
        self.window_size = window_size
        self.strides = strides
        self.convert_weights = convert_weights
        self.patch_embed = PatchEmbed(self.in_channels, self.embed_dims, patch_size,
                                      norm_cfg if patch_norm else None, fast_path=self.fast_path)
        self.use_abs_pos_embed = use_abs_pos_embed
        self.pos_embed_grid = patch_grid('pretrain_img_size', pretrain_img_size, patch_size)
        if use_abs_pos_embed:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.pos_embed_grid), self.embed_dims))

        def make_stage(spec: StageSpec) -> SwinStage:
            def block(j: int, shifted: bool) -> SwinBlock:
                return SwinBlock(spec.dim, spec.num_heads, window_size, shifted, mlp_ratio, qkv_bias, qk_scale,
                                 drop_rate, attn_drop_rate, spec.drop_path[j], act_cfg, norm_cfg, self.fast_path)
            merging = (PatchMerging(spec.dim, norm_cfg if patch_norm else None, spec.merge_stride, self.fast_path)
                       if spec.merge_stride else None)
            return SwinStage(spec, window_size, block, merging)

        self._build_stages(make_stage, drop_rate, drop_path_rate, norm_cfg, strides)

    def _init_from_scratch(self) -> None:
        super()._init_from_scratch()
        for module in self.modules():
            if isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)
        if self.use_abs_pos_embed:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # B, H/4, W/4, C
        if self.use_abs_pos_embed:
            x = x + absolute_position_embedding(self.absolute_pos_embed, self.pos_embed_grid, x.shape[1], x.shape[2])
        return x

    # -------------------------------------------------------------------------------- checkpoints
    @classmethod
    def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        return has_swin_patch_embedding(state_dict) and any(
            key.endswith('.relative_position_bias_table') for key in state_dict)

    @classmethod
    def convert_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        return convert_swin_state_dict(state_dict)

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        state_dict = dict(state_dict)
        own = self.state_dict()
        for key, table in state_dict.items():
            # A different number of heads is an architecture mismatch, reported with all the others on loading.
            if (key.endswith('relative_position_bias_table') and key in own
                    and table.shape[0] != own[key].shape[0] and table.shape[1] == own[key].shape[1]):
                state_dict[key] = resize_bias_table(table, own[key].shape[0])
        pos = state_dict.get('absolute_pos_embed')
        if pos is not None and self.use_abs_pos_embed:
            state_dict['absolute_pos_embed'] = resize_position_embedding(pos, self.pos_embed_grid, self.embed_dims)
        return super().adapt_state_dict(state_dict)


def _check_strides(strides, patch_size: int, num_stages: int) -> Tuple[int, ...]:
    strides = tuple(strides) if isinstance(strides, (tuple, list)) else (strides,)
    if len(strides) != num_stages or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in strides):
        raise ConfigError(f'strides must be {num_stages} positive ints (the patch embedding\'s, then each patch '
                          f'merging\'s), got {strides!r}')
    if strides[0] != patch_size:
        raise ConfigError(f'strides[0] must equal patch_size ({patch_size}): the patch embedding does not overlap; '
                          f'got strides {strides}')
    return strides


# ------------------------------------------------------------------------------ checkpoint layouts
# Keys every layout carries that this package does not use: classifier, final norm, derived buffers.
_UNUSED_KEYS = re.compile(r'(head\..*|norm\.(weight|bias)|.*\.relative_position_index|.*\.attn_mask)')


def convert_swin_state_dict(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Maps a Swin state dict in this package's, the authors', mmdet/mmseg or timm layout to this package's;
    returns it and the layout's name."""
    layout = detect_layout(state_dict, 'mmdet')
    converted = {}
    for key, value in state_dict.items():
        if _UNUSED_KEYS.fullmatch(key):
            continue
        if layout == 'mmdet':
            key = from_openmmlab_key(key)
        elif layout in ('original', 'timm'):
            key = from_authors_key(merging_of_previous_stage(key) if layout == 'timm' else key)
            if '.downsample.' in key:
                value = neighbour_to_unfold_order(value, key)
        converted[key] = value
    return converted, layout


def convert_swin_to_mmdet(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """This package's Swin state dict -> the keys of mmdet's (and mmseg's) ``SwinTransformer``, with the
    ``relative_position_index`` buffers their state dicts hold, so that their strict load takes it."""
    converted = {}
    for key, value in state_dict.items():
        converted[to_openmmlab_key(key)] = value
        if key.endswith('.attn.relative_position_bias_table'):
            window = (round(value.shape[0] ** 0.5) + 1) // 2
            index_key = key.replace('relative_position_bias_table', 'relative_position_index')
            converted[to_openmmlab_key(index_key)] = relative_position_index(window, window)
    return converted
