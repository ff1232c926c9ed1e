"""Swin Transformer backbone (Liu et al., ICCV 2021) for any input size.

Computes the same function as mmdet 3.3.0's ``SwinTransformer`` and accepts its constructor
arguments. Parameters use the authors' key layout (``layers.{i}.blocks.{j}.attn.qkv`` ...) plus the
output norms ``norm{i}``; :meth:`SwinTransformer.convert_state_dict` reads the authors', mmdet/mmseg
and timm layouts.
"""
import re
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import CheckpointError
from ..registry import MODELS
from .base import PyramidBackbone, StageSpec, resolve_arch
from .kernels import FastPath
from .layers import (CheckpointedBlock, DropPath, Grouping, Mlp, MultiHeadGroupAttention, build_norm, group_tokens,
                     fast_conv, known_equal, pad_image_to_multiple, pad_to_multiple, pair_bias, regroup,
                     relative_position_index, round_up, ungroup_tokens)

ARCH_SETTINGS = {
    'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}


class PatchEmbed(nn.Module):
    """(B, in, H, W) -> zero-pad to multiples of the patch -> Conv2d(patch, stride patch) -> (B, H/p, W/p, C)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, norm_cfg: Optional[dict],
                 options: FastPath = FastPath()):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = build_norm(norm_cfg, dim) if norm_cfg else None
        self.options = options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_image_to_multiple(x, self.patch_size)
        x = fast_conv(x, self.proj, self.options).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): 2x2 neighbours concatenated, LayerNorm, Linear."""

    def __init__(self, dim: int, norm_cfg: Optional[dict]):
        super().__init__()
        self.norm = build_norm(norm_cfg, 4 * dim) if norm_cfg else None
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = concat_neighbours(x)
        if self.norm is not None:
            x = self.norm(x)
        return self.reduction(x)


def concat_neighbours(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 4C): odd sides zero-padded, each 2x2 neighbourhood concatenated."""
    x = pad_to_multiple(x, 2, 2)
    batch, height, width, channels = x.shape
    # Neighbour order (0,0), (1,0), (0,1), (1,1) with the row offset fastest, as in the authors' code.
    x = x.view(batch, height // 2, 2, width // 2, 2, channels).permute(0, 1, 3, 4, 2, 5)
    return x.reshape(batch, height // 2, width // 2, 4 * channels)


class WindowView(NamedTuple):
    """How the blocks of one kind (regular or shifted windows) cut the stage's tokens into windows.

    ``gather`` lists, for each window position of the batch, the stored token it holds (any token at
    padding, whose rows are zeroed); ``scatter`` is the inverse, the window position of each stored token.
    Both are None where the tokens are stored in this window order.
    """
    gather: Optional[torch.Tensor]  # B * nW * N
    scatter: Optional[torch.Tensor]  # one per stored token
    padding: Optional[torch.Tensor]  # B * nW, N, 1: padded window positions; None without padding
    mask: Optional[torch.Tensor]  # nW, N, N: the shift mask, or None

    def to_windows(self, tokens: torch.Tensor, window_len: int) -> torch.Tensor:
        """Stored tokens (..., C) -> (B * nW, N, C) windows, zeros at padding."""
        if self.gather is None:
            return tokens
        windows = regroup(tokens.reshape(-1, tokens.shape[-1]), self.gather, self.scatter, self.padding)
        return windows.view(-1, window_len, tokens.shape[-1])

    def from_windows(self, windows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """(B * nW, N, C) windows -> the stored tokens, shaped ``like`` (padding dropped)."""
        if self.gather is None:
            return windows
        tokens = regroup(windows.reshape(-1, windows.shape[-1]), self.scatter, self.gather, None, self.padding)
        return tokens.view(like.shape)


class WindowLayout(NamedTuple):
    """How a stage holds its tokens in this forward, and how its blocks see them as windows.

    A map that fills whole windows is stored in regular window order (B * nW, N, C): W-MSA windows are a
    view, and the shifted windows are one gather away. A map that needs padding is stored as it is,
    (B, H, W, C), so that the norms and the MLP never compute padded tokens; each block gathers its windows,
    zero at padding (mmdet pads the normalised map), and gathers the attention output back.
    """
    padded_height: int
    padded_width: int
    grouping: Grouping
    window_storage: bool
    regular: WindowView
    shifted: Optional[WindowView]  # None for a stage of one block


def _wrap(index: torch.Tensor, size: int) -> torch.Tensor:
    """``index % size`` for -size <= index < 2 * size, without a remainder by a traced size (which the
    torch.export-based ONNX exporter cannot convert)."""
    return torch.where(index < 0, index + size, torch.where(index >= size, index - size, index))


def window_layout(batch: int, height: int, width: int, window: int, shift: int, device, dtype) -> WindowLayout:
    """Every index and mask is integer arithmetic on the map coordinates of the window-order positions
    (no views, rolls or sorts of index maps), so traced sizes stay short expressions for the ONNX
    exporters and for torch.compile with dynamic shapes."""
    padded_height, padded_width = round_up(height, window), round_up(width, window)
    grouping = Grouping(window, window)
    window_len = grouping.group_len
    windows_per_row = padded_width // window
    tokens_per_image = padded_height * padded_width
    # Map coordinates of the window-order positions, as broadcastable (nWh, nWw, ws, ws) tensors: every
    # quantity below is one broadcast expression, flattened only once computed.
    inner = torch.arange(window, device=device)
    row = torch.arange(padded_height // window, device=device).view(-1, 1, 1, 1) * window + inner.view(-1, 1)
    col = torch.arange(windows_per_row, device=device).view(-1, 1, 1) * window + inner

    def position_of(row, col):  # window-order position of the token at (row, col) of the padded map
        return ((row // window) * windows_per_row + col // window) * window_len + (row % window) * window + col % window

    def for_each_image(index, stride):  # -> B * numel: the index for every image of the batch, image after image
        index = (torch.arange(batch, device=device).unsqueeze(1) * stride + index.flatten()).flatten()
        # No position is negative, but inductor's bound analysis cannot see that through the wrap-around
        # arithmetic, and torch 2.13's inductor fails on possibly negative indices into a dimension of
        # static size (InductorError in index_select: a stage of one window at batch 1, recompiled for a
        # second size). The clamp changes no value and makes the bound evident.
        return index.clamp_min(0)

    # Shifted windows cut the map rolled by (-shift, -shift): position (row, col) holds the token of
    # (row + shift, col + shift), and that token's own (row, col) moves to (row - shift, col - shift).
    def source_of(row, col):
        return (_wrap(row + shift, padded_height), _wrap(col + shift, padded_width)) if shift else (row, col)

    def moved(row, col):
        return (_wrap(row - shift, padded_height), _wrap(col - shift, padded_width)) if shift else (row, col)

    pads = not (known_equal(padded_height, height) and known_equal(padded_width, width))
    shift_mask = _shift_mask(row, col, padded_height, padded_width, window, shift, dtype) if shift else None
    if not pads:
        regular = WindowView(None, None, None, None)
        shifted = None
        if shift:
            gather = for_each_image(position_of(*source_of(row, col)), tokens_per_image)
            scatter = for_each_image(position_of(*moved(row, col)), tokens_per_image)
            shifted = WindowView(gather, scatter, None, shift_mask)
        return WindowLayout(padded_height, padded_width, grouping, True, regular, shifted)

    real_row = torch.arange(height, device=device).view(-1, 1)
    real_col = torch.arange(width, device=device)

    def view_of(shifted_view: bool) -> WindowView:
        source_row, source_col = source_of(row, col) if shifted_view else (row, col)
        is_pad = (source_row >= height) | (source_col >= width)
        gather = for_each_image(torch.where(is_pad, 0, source_row * width + source_col), height * width)
        padding = is_pad.reshape(-1, window_len, 1).repeat(batch, 1, 1)
        moved_row, moved_col = moved(real_row, real_col) if shifted_view else (real_row, real_col)
        scatter = for_each_image(position_of(moved_row, moved_col), tokens_per_image)
        return WindowView(gather, scatter, padding, shift_mask if shifted_view else None)

    return WindowLayout(padded_height, padded_width, grouping, False, view_of(False),
                        view_of(True) if shift else None)


def _shift_mask(row, col, padded_height, padded_width, window, shift, dtype) -> torch.Tensor:
    """SW-MSA mask as mmdet builds it: regions of the rolled map split at -window and -shift from the end
    of each side; tokens of one window from different regions do not attend to each other. (nW, N, N)."""
    region = ((row >= padded_height - window).long() + (row >= padded_height - shift).long()) * 3 \
        + (col >= padded_width - window).long() + (col >= padded_width - shift).long()
    region = region.reshape(-1, window * window)
    different = region.unsqueeze(1) != region.unsqueeze(2)  # nW, N, N
    return torch.zeros(different.shape, device=row.device, dtype=dtype).masked_fill_(different, -100.0)


class WindowAttention(MultiHeadGroupAttention):
    """W-MSA / SW-MSA over windows of tokens, with the relative position bias (and the shift mask)."""

    def __init__(self, dim: int, num_heads: int, window_size: int, **kwargs):
        super().__init__(dim, num_heads, **kwargs)
        self.window_size = window_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer('relative_position_index', relative_position_index(window_size, window_size),
                             persistent=False)

    def position_bias(self) -> torch.Tensor:
        return pair_bias(self.relative_position_bias_table, self.relative_position_index, self.window_size ** 2)

    def forward(self, windows: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """windows: (B * nW, ws * ws, C) -> the heads' outputs before the output projection, same shape
        (the projection acts on each token alone: :meth:`project` it where the tokens are stored)."""
        return self.attend_groups(windows, self.position_bias(), shift_mask)


class SwinBlock(CheckpointedBlock):
    """``x + DropPath(W-MSA(LN1(x)))``, ``x + DropPath(MLP(LN2(x)))`` on the tokens as the stage stores them
    (see :class:`WindowLayout`); the attention sees them as windows.

    Padded tokens enter attention as zeros, as in mmdet, which pads the normalised map; they are not masked.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, mlp_ratio: float,
                 qkv_bias: bool, qk_scale: Optional[float], drop: float, attn_drop: float, drop_path: float,
                 act_cfg: dict, norm_cfg: dict, with_cp: bool, options: FastPath):
        super().__init__()
        self.shifted = shifted
        self.with_cp = with_cp
        self.norm1 = build_norm(norm_cfg, dim)
        self.attn = WindowAttention(dim, num_heads, window_size, qkv_bias=qkv_bias, qk_scale=qk_scale,
                                    attn_drop=attn_drop, proj_drop=drop, options=options)
        self.drop_path = DropPath(drop_path)
        self.norm2 = build_norm(norm_cfg, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg=act_cfg, drop=drop, options=options)

    def _forward(self, x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        view = layout.shifted if self.shifted else layout.regular
        windows = view.to_windows(self.norm1(x), layout.grouping.group_len)
        heads = view.from_windows(self.attn(windows, view.mask), like=x)
        if self.drop_path.active:
            x = x + self.drop_path(self.attn.project(heads))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = self.attn.project(heads, residual=x)
        return self.mlp(self.norm2(x), residual=x)

    def extra_repr(self) -> str:
        return f'shifted={self.shifted}'


class SwinStage(nn.Module):
    """Blocks alternating W-MSA and SW-MSA, then (except in the last stage) patch merging.

    ``block`` and ``merging`` are the block and merging types (Swin V2 passes its own): a block takes
    ``(dim, num_heads, window_size, shifted=, drop_path=, norm_cfg=, **block_kwargs)`` and is called on
    the stage's windows and :class:`WindowLayout`; merging takes ``(dim, norm_cfg or None)``.
    """

    def __init__(self, spec: StageSpec, window_size: int, norm_cfg: dict, patch_norm: bool, block: type = SwinBlock,
                 merging: type = PatchMerging, **block_kwargs):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList([
            block(spec.dim, spec.num_heads, window_size, shifted=j % 2 == 1 and self.shift_size > 0,
                  drop_path=spec.drop_path[j], norm_cfg=norm_cfg, **block_kwargs)
            for j in range(spec.depth)])
        self.downsample = merging(spec.dim, norm_cfg if patch_norm else None) if spec.downsample else None

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, H, W, C) -> the stage's output map and, when the stage merges, the merged map."""
        batch, height, width, _ = x.shape
        layout = window_layout(batch, height, width, self.window_size,
                               self.shift_size if len(self.blocks) > 1 else 0, x.device, x.dtype)
        x = group_tokens(x, layout.grouping) if layout.window_storage else x.contiguous()
        for block in self.blocks:
            x = block(x, layout)
        if layout.window_storage:
            x = ungroup_tokens(x, layout.grouping, layout.padded_height, layout.padded_width)
        return x, self.downsample(x) if self.downsample is not None else None


def _image_size_pair(size) -> Tuple[int, int]:
    """``pretrain_img_size`` as (height, width): an int, or a sequence of one or two ints, as mmdet accepts."""
    if isinstance(size, (tuple, list)):
        pair = tuple(size) * 2 if len(size) == 1 else tuple(size)
    else:
        pair = (size, size)
    if len(pair) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in pair):
        raise ValueError(f'pretrain_img_size must be a positive int or a pair of them (height, width), got {size!r}')
    return pair


@MODELS.register_module()
class SwinTransformer(PyramidBackbone):
    """Swin Transformer backbone returning NCHW maps of size ceil(H/4), ceil(H/8), ceil(H/16), ceil(H/32).

    Takes every argument of mmdet 3.3.0's ``SwinTransformer`` with the same meaning, plus ``arch``
    ('tiny', 'small', 'base', 'large') which sets ``embed_dims``, ``depths`` and ``num_heads``.
    Inputs of any size are padded internally, exactly as mmdet does.

    ``convert_weights`` is accepted for config compatibility: checkpoint layouts are detected
    automatically whatever its value (the detected layout is logged), by every loader, ``load_state_dict``
    included. A load that would leave a weight unloaded is an error unless ``allow_partial_loading=True``
    (see :mod:`swin_backbones.loading`). ``check_finite=True`` makes every forward reject NaN or inf inputs
    (it costs a pass over the input).

    ``impl``: 'fast' (default) or 'plain' (the textbook operations). ``save_memory=True`` keeps less for
    backward in training (attention probabilities and MLP activations are recomputed). ``kernels``
    overrides the kernel rules of the fast path, e.g. ``dict(linear='aten')`` (see :mod:`.kernels`).
    """
    presets = {'swin-t': 'tiny', 'swin-s': 'small', 'swin-b': 'base', 'swin-l': 'large'}

    def __init__(self,
                 arch: Optional[str] = None,
                 pretrain_img_size=224,
                 in_channels: int = 3,
                 embed_dims: Optional[int] = None,
                 patch_size: int = 4,
                 window_size: int = 7,
                 mlp_ratio: float = 4,
                 depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None,
                 strides: Sequence[int] = (4, 2, 2, 2),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 patch_norm: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 impl: str = 'fast',
                 save_memory: bool = False,
                 kernels: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 convert_weights: bool = False,
                 frozen_stages: int = -1,
                 init_cfg=None,
                 check_finite: bool = False,
                 allow_partial_loading: bool = False):
        settings = resolve_arch('Swin', ARCH_SETTINGS, arch, 'tiny', embed_dims=embed_dims, depths=depths,
                                num_heads=num_heads)
        num_stages = len(settings['depths'])
        strides = tuple(strides)
        if strides != (patch_size,) + (2,) * (num_stages - 1):
            raise ValueError(f'strides must be (patch_size, 2, 2, ...) = {(patch_size,) + (2,) * (num_stages - 1)}: '
                             f'non-overlapping patch embedding and 2x2 patch merging; got {strides}')
        if not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f'window_size must be a positive int, got {window_size!r}')
        super().__init__(arch=arch, embed_dims=settings['embed_dims'], depths=settings['depths'],
                         num_heads=settings['num_heads'], in_channels=in_channels, out_indices=out_indices,
                         frozen_stages=frozen_stages, impl=impl, save_memory=save_memory, kernels=kernels,
                         pretrained=pretrained, init_cfg=init_cfg, check_finite=check_finite,
                         allow_partial_loading=allow_partial_loading)
        self.window_size = window_size
        self.convert_weights = convert_weights

        self.patch_embed = PatchEmbed(in_channels, self.embed_dims, patch_size, norm_cfg if patch_norm else None,
                                      self.options)
        height, width = _image_size_pair(pretrain_img_size)
        self.use_abs_pos_embed = use_abs_pos_embed
        if use_abs_pos_embed:
            self.pos_embed_grid = (height // patch_size, width // patch_size)
            self.absolute_pos_embed = nn.Parameter(
                torch.zeros(1, self.pos_embed_grid[0] * self.pos_embed_grid[1], self.embed_dims))
        self._build_stages(
            lambda spec: SwinStage(spec, window_size, norm_cfg, patch_norm, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                                   qk_scale=qk_scale, drop=drop_rate, attn_drop=attn_drop_rate, act_cfg=act_cfg,
                                   with_cp=with_cp, options=self.options),
            drop_rate, drop_path_rate, norm_cfg)

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
            x = x + self._position_embedding(x.shape[1], x.shape[2])
        return x

    def _position_embedding(self, height: int, width: int) -> torch.Tensor:
        grid_h, grid_w = self.pos_embed_grid
        pos = self.absolute_pos_embed.view(1, grid_h, grid_w, -1)
        if known_equal(height, grid_h) and known_equal(width, grid_w):
            return pos  # otherwise resizing to the same size gives the same numbers
        pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(height, width), mode='bicubic', align_corners=False)
        return pos.permute(0, 2, 3, 1)

    # -------------------------------------------------------------------------------- checkpoints
    @classmethod
    def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        return has_swin_patch_embedding(state_dict) and has_bias_tables(state_dict)

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


def resize_bias_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Bicubic resize of a ((2w-1)^2, heads) bias table to ``length`` rows, as a (2w-1) x (2w-1) image per head."""
    old_length, heads = table.shape
    old_side, new_side = round(old_length ** 0.5), round(length ** 0.5)
    image = table.float().permute(1, 0).reshape(1, heads, old_side, old_side)
    image = F.interpolate(image, size=(new_side, new_side), mode='bicubic', align_corners=False)
    return image.reshape(heads, length).permute(1, 0).contiguous().to(table.dtype)


def resize_position_embedding(pos: torch.Tensor, grid: Tuple[int, int], dim: int) -> torch.Tensor:
    """An absolute position embedding in any published shape -> (1, grid_h * grid_w, dim), bicubic resize."""
    if pos.dim() == 3 and pos.shape[2] == dim:  # 1, N, C (square grid)
        side = round(pos.shape[1] ** 0.5)
        if side * side != pos.shape[1]:
            raise CheckpointError(f'absolute_pos_embed of shape {tuple(pos.shape)} is not a square grid')
        pos = pos.reshape(1, side, side, dim).permute(0, 3, 1, 2)
    elif pos.dim() == 4 and pos.shape[3] == dim:  # 1, H, W, C (timm)
        pos = pos.permute(0, 3, 1, 2)
    elif not (pos.dim() == 4 and pos.shape[1] == dim):  # 1, C, H, W (authors' detection code)
        raise CheckpointError(f'absolute_pos_embed of shape {tuple(pos.shape)} does not have {dim} channels')
    if tuple(pos.shape[2:]) != tuple(grid):
        pos = F.interpolate(pos.float(), size=grid, mode='bicubic', align_corners=False).to(pos.dtype)
    return pos.flatten(2).transpose(1, 2).contiguous()


# ------------------------------------------------------------------------------ checkpoint layouts
def has_swin_patch_embedding(state_dict: Dict[str, torch.Tensor]) -> bool:
    """The patch embedding of Swin (V1 and V2) in the authors', timm's or OpenMMLab's naming."""
    return 'patch_embed.proj.weight' in state_dict or 'patch_embed.projection.weight' in state_dict


def has_bias_tables(state_dict: Dict[str, torch.Tensor]) -> bool:
    """Swin V1's learned relative position bias tables (Swin V2 computes its bias with an MLP instead)."""
    return any(key.endswith('.relative_position_bias_table') for key in state_dict)


# Keys every layout carries that this package does not use: classifier, final norm, derived buffers.
_UNUSED_KEYS = re.compile(r'(head\..*|norm\.(weight|bias)|.*\.relative_position_index|.*\.attn_mask)')
_MMDET_RENAMES = (('patch_embed.projection.', 'patch_embed.proj.'), ('.attn.w_msa.', '.attn.'),
                  ('.ffn.layers.0.0.', '.mlp.fc1.'), ('.ffn.layers.1.', '.mlp.fc2.'))


_MERGING_KEY = re.compile(r'layers\.(\d+)\.downsample\.(.*)')


def merging_of_previous_stage(key: str) -> str:
    """``layers.{i}.downsample.*`` (merging at the start of stage i, as timm and mmpretrain's V2 keep it) ->
    ``layers.{i-1}.downsample.*`` (the end of stage i-1, as the authors and this package)."""
    match = _MERGING_KEY.fullmatch(key)
    return f'layers.{int(match.group(1)) - 1}.downsample.{match.group(2)}' if match else key


def detect_swin_layout(state_dict: Dict[str, torch.Tensor]) -> str:
    """'mmdet' (also mmseg), 'timm' (merging at the start of the next stage) or 'original' (the authors' and ours)."""
    keys = set(state_dict)
    if any(key.startswith('stages.') for key in keys):
        return 'mmdet'
    merges = {int(m.group(1)) for key in keys if (m := _MERGING_KEY.match(key))}
    if merges and 0 not in merges:
        return 'timm'
    return 'original'


def convert_swin_state_dict(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Maps a Swin state dict in the authors', mmdet/mmseg or timm layout to this package's layout."""
    layout = detect_swin_layout(state_dict)
    converted = {}
    for key, value in state_dict.items():
        if _UNUSED_KEYS.fullmatch(key):
            continue
        if layout == 'mmdet':
            key = from_openmmlab_key(key)
            if '.downsample.' in key:
                value = unfold_to_neighbour_order(value, key)
        elif layout == 'timm':
            key = merging_of_previous_stage(key)
        converted[key] = value
    return converted, layout


def from_openmmlab_key(key: str) -> str:
    """An OpenMMLab (mmdet, mmseg, mmpretrain) Swin key -> the authors' name of the same tensor, stage index kept."""
    key = 'layers.' + key[len('stages.'):] if key.startswith('stages.') else key
    for old, new in _MMDET_RENAMES:
        key = key.replace(old, new)
    return key


def to_openmmlab_key(key: str) -> str:
    """The inverse of :func:`from_openmmlab_key`."""
    key = 'stages.' + key[len('layers.'):] if key.startswith('layers.') else key
    for old, new in reversed(_MMDET_RENAMES):
        key = key.replace(new, old)
    return key


def convert_swin_to_mmdet(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """This package's Swin state dict -> the keys of mmdet's (and mmseg's) ``SwinTransformer``, with the
    ``relative_position_index`` buffers their state dicts hold, so that their strict load takes it."""
    converted = {}
    for key, value in state_dict.items():
        if '.downsample.' in key:
            value = _neighbour_to_unfold_order(value, key)
        converted[to_openmmlab_key(key)] = value
        if key.endswith('.attn.relative_position_bias_table'):
            window = (round(value.shape[0] ** 0.5) + 1) // 2
            index_key = key.replace('relative_position_bias_table', 'relative_position_index')
            converted[to_openmmlab_key(index_key)] = relative_position_index(window, window)
    return converted


# mmdet's merging concatenates nn.Unfold output: channel-major over the row-major 2x2 taps. Ours concatenates
# whole neighbours in the order (0,0), (1,0), (0,1), (1,1): the row-major tap of each. The permutation is its
# own inverse, so it maps taps to neighbours as well.
_NEIGHBOUR_TAPS = [0, 2, 1, 3]


def unfold_to_neighbour_order(value: torch.Tensor, key: str) -> torch.Tensor:
    """A merging weight of mmdet's layout (4C axis in unfold order) -> ours (in neighbour order)."""
    return _reorder_merging_axis(value, key, from_unfold=True)


def _neighbour_to_unfold_order(value: torch.Tensor, key: str) -> torch.Tensor:
    """The inverse of :func:`unfold_to_neighbour_order`."""
    return _reorder_merging_axis(value, key, from_unfold=False)


def _reorder_merging_axis(value: torch.Tensor, key: str, from_unfold: bool) -> torch.Tensor:
    if key.endswith('reduction.weight'):
        rows = value.shape[0]
    elif key.endswith(('norm.weight', 'norm.bias')):
        rows = 1
    else:
        raise CheckpointError(f'unexpected patch merging key {key!r} in a Swin checkpoint')
    channels = value.shape[-1] // 4
    if from_unfold:  # (rows, C, tap) -> (rows, neighbour, C)
        grouped = value.reshape(rows, channels, 4)[:, :, _NEIGHBOUR_TAPS].transpose(1, 2)
    else:  # (rows, neighbour, C) -> (rows, C, tap)
        grouped = value.reshape(rows, 4, channels)[:, _NEIGHBOUR_TAPS].transpose(1, 2)
    return grouped.reshape(value.shape).contiguous()
