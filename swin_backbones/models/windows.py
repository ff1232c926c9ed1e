"""The shifted-window machinery Swin V1 and V2 share: the patch embedding, the window layout of a stage (how
its tokens are stored and cut into regular and shifted windows, with the shift mask), the stage of alternating
W-MSA / SW-MSA blocks and the absolute position embedding.

Any input size: maps are zero-padded at the bottom and right to whole windows (padded tokens take part in
attention as zero keys, unmasked, as in mmdet), odd sides before merging, the image to whole patches.
"""
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from . import ops
from .base import StageSpec
from .grouping import GroupMask, Grouping, group_tokens, known_equal, pad_image_to_multiple, round_up, ungroup_tokens
from .layers import build_norm


class PatchEmbed(nn.Module):
    """(B, in, H, W) -> zero-pad to multiples of the patch -> Conv2d(patch, stride patch) -> (B, H/p, W/p, C)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, norm_cfg: Optional[dict], *,
                 fast_path: ops.FastPath):
        super().__init__()
        self.patch_size = patch_size
        self.fast_path = fast_path
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = build_norm(norm_cfg, dim) if norm_cfg else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_image_to_multiple(x, self.patch_size)
        x = ops.conv2d(x, self.proj, self.fast_path).permute(0, 2, 3, 1)
        return self.norm(x) if self.norm is not None else x


class WindowView(NamedTuple):
    """How the blocks of one kind (regular or shifted windows) cut the stage's tokens into windows.

    ``gather`` lists, for each window position of the batch, the stored token it holds (any token at
    padding, whose rows are zeroed); ``scatter`` is the inverse, the window position of each stored token.
    Both are None where the tokens are stored in this window order.
    """
    gather: Optional[torch.Tensor]  # B * nW * N
    scatter: Optional[torch.Tensor]  # one per stored token
    padding: Optional[torch.Tensor]  # B * nW, N, 1: padded window positions; None without padding
    mask: Optional[GroupMask]  # the shift mask (of the windows of the last row and column), or None

    def to_windows(self, tokens: torch.Tensor, window_len: int, fast_path: ops.FastPath) -> torch.Tensor:
        """Stored tokens (..., C) -> (B * nW, N, C) windows, zeros at padding."""
        if self.gather is None:
            return tokens
        windows = ops.gather_rows(tokens.reshape(-1, tokens.shape[-1]), self.gather, fast_path,
                                  inverse=self.scatter, zero_rows=self.padding)
        return windows.view(-1, window_len, tokens.shape[-1])

    def from_windows(self, windows: torch.Tensor, like: torch.Tensor, fast_path: ops.FastPath) -> torch.Tensor:
        """(B * nW, N, C) windows -> the stored tokens, shaped ``like`` (padding dropped)."""
        if self.gather is None:
            return windows
        tokens = ops.gather_rows(windows.reshape(-1, windows.shape[-1]), self.scatter, fast_path,
                                 inverse=self.gather, inverse_zero_rows=self.padding)
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
    shifted: Optional[WindowView]  # None where this forward does not shift

    def view(self, shifted: bool) -> WindowView:
        """The windows of a block that shifts or not: the regular ones where this forward does not shift (a
        stage of one block, or a small map with ``pad_small_map=False``)."""
        return self.shifted if shifted and self.shifted is not None else self.regular


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
    shift_mask = _shift_mask(padded_height, padded_width, window, shift, device, dtype) if shift else None
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


def _shift_mask(padded_height, padded_width, window, shift, device, dtype) -> GroupMask:
    """SW-MSA mask as mmdet builds it: regions of the rolled map split at -window and -shift from the end
    of each side; tokens of one window from different regions do not attend to each other. Both splits fall
    inside the last row and the last column of windows: only those windows have a mask, (nM, N, N)."""
    windows_per_row, windows_per_column = padded_width // window, padded_height // window
    last_row = torch.arange(windows_per_row, device=device)
    last_column = torch.arange(windows_per_column - 1, device=device)  # the last row's window counted once
    window_row = torch.cat([last_column, last_row * 0 + (windows_per_column - 1)])
    window_col = torch.cat([last_column * 0 + (windows_per_row - 1), last_row])
    inner = torch.arange(window, device=device)
    row = window_row.view(-1, 1, 1) * window + inner.view(-1, 1)  # nM, ws, 1
    col = window_col.view(-1, 1, 1) * window + inner  # nM, 1, ws
    region = ((row >= padded_height - window).long() + (row >= padded_height - shift).long()) * 3 \
        + (col >= padded_width - window).long() + (col >= padded_width - shift).long()
    region = region.reshape(-1, window * window)
    different = region.unsqueeze(1) != region.unsqueeze(2)  # nM, N, N
    additive = torch.zeros(different.shape, device=device, dtype=dtype).masked_fill_(different, -100.0)
    return GroupMask(additive, window_row * windows_per_row + window_col, windows_per_row * windows_per_column)


class SwinStage(nn.Module):
    """Blocks alternating W-MSA and SW-MSA, then (except in the last stage) patch merging.

    ``block`` builds block j (``block(j, shifted)``, Swin's or Swin V2's); ``downsample`` is the merging module
    or None. With ``pad_small_map=False`` (mmpretrain's option), a map whose shorter side equals the window is not
    shifted, and a shorter one is an error, as in mmpretrain; by default every map is padded to whole windows.
    """

    def __init__(self, spec: StageSpec, window_size: int, block, downsample: Optional[nn.Module],
                 pad_small_map: bool = True):
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.pad_small_map = pad_small_map
        self.blocks = nn.ModuleList([block(j, shifted=j % 2 == 1 and self.shift_size > 0) for j in range(spec.depth)])
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(B, H, W, C) -> the stage's output map and, when the stage merges, the merged map."""
        batch, height, width, _ = x.shape
        shift = self.shift_size if len(self.blocks) > 1 else 0
        if not self.pad_small_map and min(height, width) <= self.window_size:
            if min(height, width) < self.window_size:
                raise ConfigError(f'a {height} x {width} map is smaller than the window size ({self.window_size}) '
                                  'and pad_small_map=False: set pad_small_map=True (pad to whole windows) or a '
                                  'smaller window_size')
            shift = 0
        layout = window_layout(batch, height, width, self.window_size, shift, x.device, x.dtype)
        x = group_tokens(x, layout.grouping) if layout.window_storage else x.contiguous()
        for block in self.blocks:
            x = block(x, layout)
        if layout.window_storage:
            x = ungroup_tokens(x, layout.grouping, layout.padded_height, layout.padded_width)
        return x, self.downsample(x) if self.downsample is not None else None

    def extra_repr(self) -> str:
        return f'window_size={self.window_size}' + ('' if self.pad_small_map else ', pad_small_map=False')


def image_size_pair(name: str, size) -> Tuple[int, int]:
    """An image size argument as (height, width): an int, or a sequence of one or two ints, as mmdet accepts."""
    if isinstance(size, (tuple, list)):
        pair = tuple(size) * 2 if len(size) == 1 else tuple(size)
    else:
        pair = (size, size)
    if len(pair) != 2 or not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in pair):
        raise ConfigError(f'{name} must be a positive int or a pair of them (height, width), got {size!r}')
    return pair


def patch_grid(name: str, size, patch_size: int) -> Tuple[int, int]:
    """(rows, columns) of ``patch_size`` patches in an image size argument ``name`` (see :func:`image_size_pair`):
    the grid of an absolute position embedding learned at that size."""
    height, width = image_size_pair(name, size)
    return height // patch_size, width // patch_size


INTERPOLATE_MODES = ('bicubic', 'bilinear', 'nearest')


def absolute_position_embedding(pos: torch.Tensor, grid: Tuple[int, int], height: int, width: int,
                                mode: str = 'bicubic') -> torch.Tensor:
    """The (1, grid_h * grid_w, C) absolute position embedding resized to a (1, height, width, C) map."""
    grid_h, grid_w = grid
    pos = pos.view(1, grid_h, grid_w, -1)
    if known_equal(height, grid_h) and known_equal(width, grid_w):
        return pos  # otherwise resizing to the same size gives the same numbers
    pos = F.interpolate(pos.permute(0, 3, 1, 2), size=(height, width), mode=mode,
                        align_corners=False if mode != 'nearest' else None)
    return pos.permute(0, 2, 3, 1)
