"""Kernels of the strided convolutions (patch embedding, CrossFormer's merging): ``direct`` (``F.conv2d``) or
``space_to_depth``, the same sums of products with the stride folded into channels."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


def space_to_depth_applies(conv: nn.Conv2d) -> bool:
    """Whether :func:`strided_conv2d` can compute ``conv``: square kernel a multiple of its stride,
    symmetric zero padding, no dilation or groups."""
    (kh, kw), (sh, sw), padding = conv.kernel_size, conv.stride, conv.padding
    return (kh == kw and sh == sw and kh % sh == 0 and not isinstance(padding, str) and padding[0] == padding[1]
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == 'zeros')


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
