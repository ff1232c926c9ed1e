"""A plain, per-block CrossFormer / CrossFormer++ forward written from docs/design.md ("CrossFormer"), to check the
package's.

Independent of ``swin_backbones``: it reads parameters by name from a state dict in the authors' layout,
lists every group's tokens by explicit index arithmetic, evaluates the position-bias MLP on each
query/key offset directly, builds its own padded-key mask and loops over groups. Slow, meant for small
models and inputs.

For sides that are not multiples of 32 it follows the package's documented extension (zero-pad the
image to a multiple of 4, zero-pad odd maps after the merge's LayerNorm), so that the attention
grouping and masking can be checked at such sizes too.
"""
import math
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F

NEG_INF = -1e6
EMBED_KERNELS = (4, 8, 16, 32)
Group = Tuple[List[int], List[int], List[Tuple[int, int]]]  # rows, cols in the padded map; (a, b) in the group


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + '.weight'], sd[name + '.bias'], eps=1e-5)


def _linear(x, sd, name):
    return F.linear(x, sd[name + '.weight'], sd.get(name + '.bias'))


def _ceil_to(value: int, multiple: int) -> int:
    return math.ceil(value / multiple) * multiple


def sda_groups(height: int, width: int, g: int) -> Tuple[int, int, List[Group]]:
    """Contiguous g x g windows of the map padded to multiples of g."""
    hp, wp = _ceil_to(height, g), _ceil_to(width, g)
    groups = []
    for top in range(0, hp, g):
        for left in range(0, wp, g):
            local = [(a, b) for a in range(g) for b in range(g)]
            groups.append(([top + a for a, b in local], [left + b for a, b in local], local))
    return hp, wp, groups


def paper_lda_groups(height: int, width: int, interval: int) -> Tuple[int, int, List[Group]]:
    """Token (h, w) of the map padded to multiples of I belongs to group (h mod I, w mod I)."""
    hp, wp = _ceil_to(height, interval), _ceil_to(width, interval)
    gh, gw = hp // interval, wp // interval
    groups = []
    for r in range(interval):
        for s in range(interval):
            local = [(a, b) for a in range(gh) for b in range(gw)]
            groups.append(([r + a * interval for a, b in local], [s + b * interval for a, b in local], local))
    return hp, wp, groups


def pp_lda_groups(height: int, width: int, g: int, interval: int) -> Tuple[int, int, List[Group]]:
    """Regions of (G*I) x (G*I); inside one, token (h, w) belongs to group (h mod I, w mod I), G x G tokens."""
    span = g * interval
    hp, wp = _ceil_to(height, span), _ceil_to(width, span)
    groups = []
    for top in range(0, hp, span):
        for left in range(0, wp, span):
            for r in range(interval):
                for s in range(interval):
                    local = [(a, b) for a in range(g) for b in range(g)]
                    groups.append(([top + r + a * interval for a, b in local],
                                   [left + s + b * interval for a, b in local], local))
    return hp, wp, groups


def block_groups(height: int, width: int, long_distance: bool, cfg: dict, stage: int):
    g, interval = cfg['group_size'][stage], cfg['crs_interval'][stage]
    if min(height, width) <= g:
        return sda_groups(height, width, min(height, width) if cfg['lda'] == 'paper' else max(height, width))
    if not long_distance:
        return sda_groups(height, width, g)
    if cfg['lda'] == 'paper':
        return paper_lda_groups(height, width, interval)
    if cfg.get('adaptive_interval'):
        interval = math.ceil(max(height, width) / g)
    return pp_lda_groups(height, width, g, interval)


def position_bias_mlp(offsets: torch.Tensor, sd, prefix: str) -> torch.Tensor:
    """Linear(2, P), then three times LayerNorm, ReLU, Linear."""
    h = _linear(offsets, sd, prefix + '.pos_proj')
    for k in (1, 2, 3):
        h = _linear(F.relu(_ln(h, sd, f'{prefix}.pos{k}.0')), sd, f'{prefix}.pos{k}.2')
    return h


def attention(x: torch.Tensor, sd, prefix: str, heads: int, layout) -> torch.Tensor:
    batch, height, width, channels = x.shape
    hp, wp, groups = layout
    head_dim = channels // heads
    padded = x.new_zeros(batch, hp, wp, channels)
    padded[:, :height, :width] = x
    out = torch.zeros_like(padded)
    for rows, cols, local in groups:
        rows_t, cols_t = torch.tensor(rows), torch.tensor(cols)
        tokens = padded[:, rows_t, cols_t]  # B, N, C
        n = len(rows)
        qkv = _linear(tokens, sd, prefix + '.qkv').reshape(batch, n, 3, heads, head_dim)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # B, heads, N, d
        logits = (q * head_dim ** -0.5) @ k.transpose(-1, -2)
        coords = torch.tensor(local, dtype=torch.float32)
        offsets = coords[:, None, :] - coords[None, :, :]  # query minus key, (N, N, 2)
        bias = position_bias_mlp(offsets.reshape(-1, 2), sd, prefix + '.pos').reshape(n, n, heads)
        logits = logits + bias.permute(2, 0, 1)
        key_is_pad = (rows_t >= height) | (cols_t >= width)
        logits = logits + torch.where(key_is_pad, NEG_INF, 0.0)
        mixed = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, channels)
        out[:, rows_t, cols_t] = _linear(mixed, sd, prefix + '.proj')
    return out[:, :height, :width]


def block(x, sd, prefix, heads, layout, acl: bool):
    x = x + attention(_ln(x, sd, prefix + '.norm1'), sd, prefix + '.attn', heads, layout)
    x = x + _linear(F.gelu(_linear(_ln(x, sd, prefix + '.norm2'), sd, prefix + '.mlp.fc1')), sd, prefix + '.mlp.fc2')
    if acl:
        channels = x.shape[-1]
        conv = F.conv2d(x.permute(0, 3, 1, 2), sd[prefix + '.ex_conv.weight'], sd[prefix + '.ex_conv.bias'],
                        padding=1, groups=channels)
        x = _ln(conv.permute(0, 2, 3, 1), sd, prefix + '.ex_ln')
    return x


def merge(x, sd, prefix):
    x = _ln(x, sd, prefix + '.norm')
    x = F.pad(x, (0, 0, 0, x.shape[2] % 2, 0, x.shape[1] % 2)).permute(0, 3, 1, 2)
    a = F.conv2d(x, sd[prefix + '.reductions.0.weight'], sd[prefix + '.reductions.0.bias'], stride=2)
    b = F.conv2d(x, sd[prefix + '.reductions.1.weight'], sd[prefix + '.reductions.1.bias'], stride=2, padding=1)
    return torch.cat([a, b], dim=1).permute(0, 2, 3, 1)


def embed(img, sd):
    img = F.pad(img, (0, -img.shape[3] % 4, 0, -img.shape[2] % 4))
    maps = [F.conv2d(img, sd[f'patch_embed.projs.{i}.weight'], sd[f'patch_embed.projs.{i}.bias'],
                     stride=4, padding=(k - 4) // 2) for i, k in enumerate(EMBED_KERNELS)]
    return _ln(torch.cat(maps, dim=1).permute(0, 2, 3, 1), sd, 'patch_embed.norm')


def reference_forward(sd: Dict[str, torch.Tensor], cfg: dict, img: torch.Tensor) -> List[torch.Tensor]:
    """cfg: depths, num_heads, group_size and crs_interval (per stage), lda ('paper' or 'pp'), acl (bool),
    adaptive_interval (bool). Returns the four stage outputs, NCHW."""
    sd = {key: value.detach().float() for key, value in sd.items()}
    x = embed(img, sd)
    outs = []
    depths: Sequence[int] = cfg['depths']
    for i, depth in enumerate(depths):
        height, width = x.shape[1:3]
        for j in range(depth):
            layout = block_groups(height, width, j % 2 == 1, cfg, i)
            acl = cfg['acl'] and (j + 1) % 3 == 0 and j < depth - 1
            x = block(x, sd, f'layers.{i}.blocks.{j}', cfg['num_heads'][i], layout, acl)
        outs.append(x.permute(0, 3, 1, 2))
        if i < len(depths) - 1:
            x = merge(x, sd, f'layers.{i}.downsample')
    return outs
