"""An independent, plainly written Swin Transformer V2 backbone (docs/design.md, "Swin Transformer V2") for the tests.

It shares no code with the package: it reads its weights by name from a dict in the authors' key layout,
pads each stage's map to whole windows with zeros, rolls it for shifted blocks, labels the shift
regions by slices as the authors do, and attends window by window in Python loops, with the position
bias looked up pair by pair from the MLP's table. Differentiable in the input and the weights.
"""
import functools
import math
from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F


def _layer_norm(x, weights, name):
    return F.layer_norm(x, x.shape[-1:], weights[f'{name}.weight'], weights[f'{name}.bias'], eps=1e-5)


def _coordinates_table(window: int, normaliser: int) -> torch.Tensor:
    """(2w-1, 2w-1, 2): [dh, dw] offsets, dh along the first axis, as the authors' relative_coords_table."""
    values = torch.arange(-(window - 1), window, dtype=torch.float32)
    table = torch.zeros(2 * window - 1, 2 * window - 1, 2)
    for a, dh in enumerate(values):
        for b, dw in enumerate(values):
            table[a, b, 0], table[a, b, 1] = dh, dw
    table = table / (normaliser - 1) * 8
    return torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)


def _position_bias(weights, prefix: str, window: int, normaliser: int, heads: int) -> torch.Tensor:
    """(heads, N, N): 16 sigmoid of the MLP's value at the offset (query - key) of every pair."""
    table = _coordinates_table(window, normaliser)
    hidden = F.relu(F.linear(table, weights[f'{prefix}.cpb_mlp.0.weight'], weights[f'{prefix}.cpb_mlp.0.bias']))
    table = 16 * torch.sigmoid(F.linear(hidden, weights[f'{prefix}.cpb_mlp.2.weight']))  # 2w-1, 2w-1, heads
    rows, cols = _pair_offsets(window)
    return table[rows, cols].permute(2, 0, 1)  # heads, N, N


@functools.lru_cache(maxsize=None)
def _pair_offsets(window: int):
    """(N, N) table coordinates of each (query, key) pair of a window: query minus key offsets, shifted to >= 0."""
    positions = [(r, c) for r in range(window) for c in range(window)]
    rows = torch.tensor([[rq - rk + window - 1 for rk, _ in positions] for rq, _ in positions])
    cols = torch.tensor([[cq - ck + window - 1 for _, ck in positions] for _, cq in positions])
    return rows, cols


def _window_attention(tokens, weights, prefix: str, heads: int, bias, mask):
    """tokens: (N, C) of one window -> (N, C)."""
    length, channels = tokens.shape
    qkv_bias = None
    if f'{prefix}.q_bias' in weights:
        qkv_bias = torch.cat([weights[f'{prefix}.q_bias'], torch.zeros_like(weights[f'{prefix}.v_bias']),
                              weights[f'{prefix}.v_bias']])
    qkv = F.linear(tokens, weights[f'{prefix}.qkv.weight'], qkv_bias).view(length, 3, heads, channels // heads)
    scale = torch.clamp(weights[f'{prefix}.logit_scale'], max=math.log(100.0)).exp()  # heads, 1, 1
    outs = []
    for head in range(heads):
        q, k, v = qkv[:, 0, head], qkv[:, 1, head], qkv[:, 2, head]
        logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).t() * scale[head] + bias[head] + mask
        outs.append(logits.softmax(dim=-1) @ v)
    return F.linear(torch.cat(outs, dim=-1), weights[f'{prefix}.proj.weight'], weights[f'{prefix}.proj.bias'])


def _region_labels(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    labels = torch.zeros(height, width)
    count = 0
    for rows in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for cols in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            labels[rows, cols] = count
            count += 1
    return labels


def _block(x, weights, prefix: str, heads: int, window: int, shift: int, normaliser: int):
    """x: (B, H, W, C) -> (B, H, W, C)."""
    batch, height, width, channels = x.shape
    padded = F.pad(x, (0, 0, 0, -width % window, 0, -height % window))
    padded_height, padded_width = padded.shape[1:3]
    if shift:
        padded = torch.roll(padded, shifts=(-shift, -shift), dims=(1, 2))
        labels = _region_labels(padded_height, padded_width, window, shift)
    bias = _position_bias(weights, f'{prefix}.attn', window, normaliser, heads)
    rows_out = []
    for image in range(batch):
        for top in range(0, padded_height, window):
            for left in range(0, padded_width, window):
                tokens = padded[image, top:top + window, left:left + window].reshape(-1, channels)
                mask = torch.zeros(window * window, window * window)
                if shift:
                    region = labels[top:top + window, left:left + window].reshape(-1)
                    mask = (region[:, None] != region[None, :]).float() * -100.0
                rows_out.append(_window_attention(tokens, weights, f'{prefix}.attn', heads, bias, mask))
    windows_per_row = padded_width // window
    out = torch.stack(rows_out).view(batch, padded_height // window, windows_per_row, window, window, channels)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(batch, padded_height, padded_width, channels)
    if shift:
        out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
    x = x + _layer_norm(out[:, :height, :width], weights, f'{prefix}.norm1')
    hidden = F.gelu(F.linear(x, weights[f'{prefix}.mlp.fc1.weight'], weights[f'{prefix}.mlp.fc1.bias']))
    mlp = F.linear(hidden, weights[f'{prefix}.mlp.fc2.weight'], weights[f'{prefix}.mlp.fc2.bias'])
    return x + _layer_norm(mlp, weights, f'{prefix}.norm2')


def _merge(x, weights, prefix: str):
    """The authors' PatchMerging after zero-padding odd sides: x0..x3 concatenated, reduction, then norm."""
    x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
    return _layer_norm(F.linear(x, weights[f'{prefix}.reduction.weight']), weights, f'{prefix}.norm')


def reference_forward(weights: Dict[str, torch.Tensor], image: torch.Tensor, depths: Sequence[int],
                      num_heads: Sequence[int], window_sizes: Sequence[int], pretrained_window_sizes: Sequence[int],
                      out_indices: Sequence[int], patch_size: int = 4) -> List[torch.Tensor]:
    """NCHW outputs of the stages in ``out_indices`` through their norms ``norm{i}``."""
    image = F.pad(image, (0, -image.shape[3] % patch_size, 0, -image.shape[2] % patch_size))
    x = F.conv2d(image, weights['patch_embed.proj.weight'], weights['patch_embed.proj.bias'], stride=patch_size)
    x = _layer_norm(x.permute(0, 2, 3, 1), weights, 'patch_embed.norm')
    outs = []
    for stage, (depth, heads, window, pretrained) in enumerate(
            zip(depths, num_heads, window_sizes, pretrained_window_sizes)):
        for j in range(depth):
            shift = window // 2 if j % 2 == 1 else 0
            x = _block(x, weights, f'layers.{stage}.blocks.{j}', heads, window, shift, pretrained or window)
        if stage in out_indices:
            outs.append(_layer_norm(x, weights, f'norm{stage}').permute(0, 3, 1, 2))
        if stage < len(depths) - 1:
            x = _merge(x, weights, f'layers.{stage}.downsample')
    return outs
