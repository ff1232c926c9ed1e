"""The checkpoint layouts of Swin V1 and V2, and the key and tensor mappings between them and this package's.

This package's layout (``swin_backbones``) names modules as OpenMMLab does at the top (``stages.{i}``,
``norm{i}``) and as the authors do inside a block (``attn.qkv``, ``mlp.fc1``, ``patch_embed.proj``); a stage's
patch merging is at its end (``stages.{i}.downsample``), and the merging's 4C input axis is in mmdet's unfold
order (channel-major over the 2x2 taps), so mmdet's, mmseg's and mmpretrain's merging weights are ours as they
are. The layouts read:

* ``original``: the authors' (``layers.{i}``, merging at the end of stage i, the 4C axis in neighbour order
  (0,0), (1,0), (0,1), (1,1), each neighbour's C channels together);
* ``timm``: as the authors', with the merging at the start of the next stage (``layers.{i+1}.downsample``);
* ``mmdet`` (V1: mmdet and mmseg) / ``mmpretrain`` (V2): ``stages.{i}``, ``attn.w_msa.*``, ``ffn.layers.*``,
  ``patch_embed.projection``; mmpretrain's V2 merges at the start of the next stage.
"""
import re
from typing import Dict, Tuple

import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointError

_OPENMMLAB_RENAMES = (('patch_embed.projection.', 'patch_embed.proj.'), ('.attn.w_msa.', '.attn.'),
                      ('.ffn.layers.0.0.', '.mlp.fc1.'), ('.ffn.layers.1.', '.mlp.fc2.'))
_OPENMMLAB_MARKS = ('.attn.w_msa.', '.ffn.layers.', 'patch_embed.projection.')
_MERGING_KEY = re.compile(r'(layers|stages)\.(\d+)\.downsample\.(.*)')


def has_swin_patch_embedding(state_dict: Dict[str, torch.Tensor]) -> bool:
    """The patch embedding of Swin (V1 and V2) in the authors', timm's or OpenMMLab's naming."""
    return 'patch_embed.proj.weight' in state_dict or 'patch_embed.projection.weight' in state_dict


def detect_layout(state_dict: Dict[str, torch.Tensor], openmmlab_name: str) -> str:
    """'swin_backbones', ``openmmlab_name`` ('mmdet' or 'mmpretrain'), 'timm' or 'original'."""
    keys = set(state_dict)
    if any(mark in key for key in keys for mark in _OPENMMLAB_MARKS):
        return openmmlab_name
    if any(key.startswith('stages.') for key in keys):
        return 'swin_backbones'
    merges = {int(match.group(2)) for key in keys if (match := _MERGING_KEY.fullmatch(key))}
    return 'timm' if merges and 0 not in merges else 'original'


def from_openmmlab_key(key: str) -> str:
    """An OpenMMLab (mmdet, mmseg, mmpretrain) Swin key -> this package's name of the same tensor, stage index kept."""
    for old, new in _OPENMMLAB_RENAMES:
        key = key.replace(old, new)
    return key


def to_openmmlab_key(key: str) -> str:
    """The inverse of :func:`from_openmmlab_key`."""
    for old, new in reversed(_OPENMMLAB_RENAMES):
        key = key.replace(new, old)
    return key


def from_authors_key(key: str) -> str:
    """An authors' (or timm's) key -> this package's, stage index kept: ``layers.`` -> ``stages.``."""
    return 'stages.' + key[len('layers.'):] if key.startswith('layers.') else key


def merging_of_previous_stage(key: str) -> str:
    """``*.{i}.downsample.*`` (merging at the start of stage i, as timm and mmpretrain's V2 keep it) ->
    ``*.{i-1}.downsample.*`` (the end of stage i-1, as the authors and this package)."""
    match = _MERGING_KEY.fullmatch(key)
    return f'{match.group(1)}.{int(match.group(2)) - 1}.downsample.{match.group(3)}' if match else key


# Our merging concatenates channel-major over the row-major 2x2 taps (mmdet's nn.Unfold order). The authors'
# concatenate whole neighbours in the order (0,0), (1,0), (0,1), (1,1): neighbour n is row-major tap
# _NEIGHBOUR_TAPS[n]. The permutation is its own inverse, so it maps taps to neighbours as well.
_NEIGHBOUR_TAPS = [0, 2, 1, 3]


def neighbour_to_unfold_order(value: torch.Tensor, key: str) -> torch.Tensor:
    """A merging tensor whose 4C axis is in the authors' neighbour order -> in unfold order (ours)."""
    return _reorder_merging_axis(value, key, from_unfold=False)


def unfold_to_neighbour_order(value: torch.Tensor, key: str) -> torch.Tensor:
    """The inverse of :func:`neighbour_to_unfold_order`."""
    return _reorder_merging_axis(value, key, from_unfold=True)


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


def resize_bias_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """Bicubic resize of a ((2w-1)^2, heads) bias table to ``length`` rows, as a (2w-1) x (2w-1) image per head."""
    old_length, heads = table.shape
    old_side, new_side = round(old_length ** 0.5), round(length ** 0.5)
    image = table.float().permute(1, 0).reshape(1, heads, old_side, old_side)
    image = F.interpolate(image, size=(new_side, new_side), mode='bicubic', align_corners=False)
    return image.reshape(heads, length).permute(1, 0).contiguous().to(table.dtype)


def resize_position_embedding(pos: torch.Tensor, grid: Tuple[int, int], dim: int,
                              mode: str = 'bicubic') -> torch.Tensor:
    """An absolute position embedding in any published shape -> (1, grid_h * grid_w, dim), resized by ``mode``."""
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
        pos = F.interpolate(pos.float(), size=grid, mode=mode,
                            align_corners=False if mode != 'nearest' else None).to(pos.dtype)
    return pos.flatten(2).transpose(1, 2).contiguous()
