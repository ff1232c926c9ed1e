"""Cutting a channels-last (B, H, W, C) map into groups of tokens, and the sizes, padding and masks that go with it.

Every attention pattern of the package (Swin windows, CrossFormer's short- and long-distance groups) is the
same cut of a padded map: each side of length ``L`` is viewed as ``(outer, inner, dilation)``; tokens that
share ``outer`` and ``dilation`` indices form one group, laid out on an ``inner_h x inner_w`` grid.

* Swin window / CrossFormer SDA of size G:  ``(L/G, G, 1)``
* CrossFormer LDA with interval I (paper):  ``(1, L/I, I)``
* CrossFormer++ LDA, G x G groups, interval I inside regions of G*I:  ``(L/(G*I), G, I)``

The patch merging's 2x2 neighbourhoods (:func:`concat_neighbours`) are the same kind of cut, concatenated on
channels instead of grouped.

Sizes may be traced (tensors under ``torch.jit.trace``, symbols under ``torch.compile(dynamic=True)``): the
helpers below keep them expressions, never Python branches on a traced value.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch.fx.experimental.symbolic_shapes import statically_known_true


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


def pad_to_size(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) map at the bottom and right to (height, width), at least (H, W)."""
    pad_h = height - x.shape[1]
    pad_w = width - x.shape[2]
    if known_equal(pad_h, 0) and known_equal(pad_w, 0):
        return x
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


def pad_to_multiple(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) map at the bottom and right up to multiples of the given sizes."""
    _, height, width, _ = x.shape
    return pad_to_size(x, round_up(height, multiple_h), round_up(width, multiple_w))


def pad_image_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads a (B, C, H, W) image at the bottom and right up to multiples of ``multiple``."""
    pad_h = round_up(x.shape[2], multiple) - x.shape[2]
    pad_w = round_up(x.shape[3], multiple) - x.shape[3]
    if known_equal(pad_h, 0) and known_equal(pad_w, 0):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h))


def concat_neighbours(x: torch.Tensor, stride: int = 2, tap_major: bool = False) -> torch.Tensor:
    """(B, H, W, C) -> (B, ceil(H/s), ceil(W/s), 4C): the 2x2 neighbourhood of every s-th token concatenated on
    channels, zeros at the bottom and right (the 'corner' padding of mmdet's ``nn.Unfold`` with kernel 2 and
    stride s; s = 1: overlapping neighbourhoods, one per token). Channel-major, as ``nn.Unfold`` gives it: the taps
    (0,0), (0,1), (1,0), (1,1) of each channel together; with ``tap_major``, the C channels of each tap in one
    run (:func:`to_tap_major` reorders a parameter of the channel-major order)."""
    batch, height, width, channels = x.shape
    if stride == 1:
        x = pad_to_size(x, height + 1, width + 1)
        taps = [x[:, dh:dh + height, dw:dw + width] for dh in (0, 1) for dw in (0, 1)]
        return torch.cat(taps, dim=-1) if tap_major else torch.stack(taps, dim=-1).flatten(-2)
    # Cells of stride x stride tokens, of which the neighbourhood is the top-left 2 x 2.
    out_h, out_w = ceil_div(height, stride), ceil_div(width, stride)
    x = pad_to_size(x, out_h * stride, out_w * stride).view(batch, out_h, stride, out_w, stride, channels)
    if stride > 2:
        x = x[:, :, :2, :, :2]
    x = x.permute(0, 1, 3, 2, 4, 5) if tap_major else x.permute(0, 1, 3, 5, 2, 4)
    return x.reshape(batch, out_h, out_w, 4 * channels)


def to_tap_major(parameter: torch.Tensor) -> torch.Tensor:
    """A parameter whose last axis (4C) is channel-major over the taps, tap t of channel c at 4c + t, in the
    order of the tap-major :func:`concat_neighbours`, tap t of channel c at tC + c."""
    return parameter.unflatten(-1, (-1, 4)).transpose(-1, -2).flatten(-2)


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


class GroupMask(NamedTuple):
    """An additive attention mask for some of each image's groups: ``additive[m]`` is added to the logits of the
    group ``index[m]`` of every image (all ``groups_per_image`` groups, in order, where ``index`` is None); the
    other groups have none. Swin's shift mask concerns only the windows of the last row and column, so only
    those are written out (and the fast kernels add the mask there alone)."""
    additive: torch.Tensor  # nM, N or 1, N
    index: Optional[torch.Tensor]  # nM positions within an image's groups; None for all of them
    groups_per_image: int

    def restricted(self, start: int, stop: int) -> Optional['GroupMask']:
        """The mask of an image's groups start .. stop-1 alone (None where none of them has one)."""
        if self.index is None:
            return GroupMask(self.additive[start:stop], None, stop - start)
        inside = ((self.index >= start) & (self.index < stop)).nonzero().flatten()
        if inside.numel() == 0:
            return None
        return GroupMask(self.additive[inside], self.index[inside] - start, stop - start)

    def full(self) -> torch.Tensor:
        """(groups_per_image, N or 1, N): the mask of every group, zeros where it has none."""
        if self.index is None:
            return self.additive
        full = self.additive.new_zeros((self.groups_per_image, *self.additive.shape[1:]))
        return full.index_copy(0, self.index, self.additive)


def padding_key_mask(height: int, width: int, padded_height: int, padded_width: int,
                     grouping: Grouping, device: torch.device, dtype: torch.dtype,
                     fill: float = -1e6) -> Optional[GroupMask]:
    """Additive mask that hides padded tokens as keys, (num_groups, 1, N) for every group, or None without
    padding (an all-zero mask where whether there is padding is not known, see :func:`known_equal`)."""
    if known_equal(height, padded_height) and known_equal(width, padded_width):
        return None
    # Comparisons of index ranges rather than a boolean tensor written in place: boolean fills have no ONNX form.
    rows = torch.arange(padded_height, device=device).view(1, -1, 1, 1)
    cols = torch.arange(padded_width, device=device).view(1, 1, -1, 1)
    is_pad = (rows >= height) | (cols >= width)  # 1, Hp, Wp, 1
    is_pad = group_tokens(is_pad, grouping).squeeze(-1).unsqueeze(1)  # nG, 1, N
    return GroupMask(torch.zeros(is_pad.shape, device=device, dtype=dtype).masked_fill_(is_pad, fill), None,
                     is_pad.shape[0])


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


def pair_bias(table: torch.Tensor, index: torch.Tensor, length: int) -> torch.Tensor:
    """(T, heads) bias rows and the (N * N,) row of each query/key pair -> contiguous (heads, N, N).

    Gathering from the transposed table writes the result in the layout the attention kernel reads,
    without a permute and copy afterwards.
    """
    return table.t()[:, index.view(-1)].view(table.shape[1], length, length)
