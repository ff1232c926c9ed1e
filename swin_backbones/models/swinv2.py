"""Swin Transformer V2 backbone (Liu et al., CVPR 2022) for detection and segmentation at any input size.

The computation (docs/design.md, "Swin Transformer V2"): res-post-norm blocks, scaled cosine attention
with a clamped per-head logit scale, q and v biases (no k bias), the continuous position bias of an MLP
over log-spaced window offsets normalised by the pretraining window, and patch merging that reduces
before it normalises.
The skeleton is Swin's (:mod:`.swin`): patch embedding, the window layout with zero padding to whole
windows, the shift mask, the stage loop and the 2x2 merging concatenation; the attention core is the
shared one, fast or plain. A map smaller than a window is padded, never given a smaller window (the
authors' classification-only rule).

Parameters use the authors' key layout plus the output norms ``norm{i}``;
:func:`convert_swinv2_state_dict` reads the authors', mmpretrain's and timm's layouts.
"""
import logging
import math
import re
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..registry import MODELS
from .base import PyramidBackbone, per_stage, resolve_arch
from .kernels import FastPath
from .layers import (CheckpointedBlock, DropPath, Mlp, MultiHeadGroupAttention, build_norm, pair_bias, relative_offsets,
                     relative_position_index)
from .swin import (PatchEmbed, SwinStage, WindowLayout, concat_neighbours, detect_swin_layout, from_openmmlab_key,
                   has_swin_patch_embedding, merging_of_previous_stage, unfold_to_neighbour_order)

# Structure of each arch and its default window (the published ImageNet-1k windows: 8 at 256 px for
# tiny, small and base; 12 at 192 px, ImageNet-22k, for large).
ARCH_SETTINGS = {
    'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=8),
    'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=8),
    'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=8),
    'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
}
MAX_LOGIT_SCALE = math.log(100.0)  # exp(logit_scale), the factor of the cosines, is at most 100
CPB_HIDDEN_DIMS = 512
# Keys only Swin V2 checkpoints have: its attention's position bias MLP, logit scale and q bias.
_SWINV2_KEY = re.compile(r'.*\.(cpb_mlp\.\d+\.weight|logit_scale|q_bias)')


def log_spaced_offsets(window: int, normaliser: int) -> torch.Tensor:
    """((2w-1)^2, 2) float32: every (dh, dw) offset of a ``window`` x ``window`` window, in the row order of
    :func:`.swin.relative_position_index`, divided by ``normaliser - 1``, times 8, then sign(x) log2(|x| + 1) / 3."""
    offsets = relative_offsets(window, window) / (normaliser - 1) * 8
    return torch.sign(offsets) * torch.log2(offsets.abs() + 1.0) / math.log2(8)


class WindowAttentionV2(MultiHeadGroupAttention):
    """Scaled cosine attention over windows of tokens, with the continuous position bias (and the shift mask).

    The bias, 16 * sigmoid(cpb_mlp(offsets)), is computed once per forward for all windows.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, pretrained_window_size: int, qkv_bias: bool,
                 attn_drop: float, proj_drop: float, options: FastPath):
        super().__init__(dim, num_heads, qkv_bias=False, attn_drop=attn_drop, proj_drop=proj_drop, options=options)
        self.window_size = window_size
        self.pretrained_window_size = pretrained_window_size
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, CPB_HIDDEN_DIMS), nn.ReLU(),
                                     nn.Linear(CPB_HIDDEN_DIMS, num_heads, bias=False))
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.register_buffer('relative_coords_table',
                             log_spaced_offsets(window_size, pretrained_window_size or window_size), persistent=False)
        self.register_buffer('relative_position_index', relative_position_index(window_size, window_size),
                             persistent=False)

    def position_bias(self) -> torch.Tensor:
        """(heads, N, N)."""
        table = 16 * torch.sigmoid(self.cpb_mlp(self.relative_coords_table))  # T, heads
        return pair_bias(table, self.relative_position_index, self.window_size ** 2)

    def forward(self, windows: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """windows: (B * nW, ws * ws, C) -> the heads' outputs before the output projection, same shape
        (:meth:`project` them where the tokens are stored)."""
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        cosine_scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return self.attend_groups(windows, self.position_bias(), shift_mask, qkv_bias=qkv_bias,
                                  cosine_scale=cosine_scale)

    def extra_repr(self) -> str:
        return f'window_size={self.window_size}, pretrained_window_size={self.pretrained_window_size}'


class SwinBlockV2(CheckpointedBlock):
    """Res-post-norm: ``x + DropPath(LN1(W-MSA(x)))``, ``x + DropPath(LN2(MLP(x)))`` on the tokens as the
    stage stores them (see :class:`.swin.WindowLayout`); the attention sees them as windows. Padded tokens
    enter attention as zeros (the map is zero-padded to whole windows, as mmpretrain's ``pad_small_map=True``
    pads it); they are not masked."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, pretrained_window_size: int,
                 mlp_ratio: float, qkv_bias: bool, drop: float, attn_drop: float, drop_path: float, act_cfg: dict,
                 norm_cfg: dict, with_cp: bool, options: FastPath):
        super().__init__()
        self.shifted = shifted
        self.with_cp = with_cp
        self.attn = WindowAttentionV2(dim, num_heads, window_size, pretrained_window_size, qkv_bias, attn_drop,
                                      drop, options)
        self.norm1 = build_norm(norm_cfg, dim)
        self.drop_path = DropPath(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg=act_cfg, drop=drop, options=options)
        self.norm2 = build_norm(norm_cfg, dim)

    def _forward(self, x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        view = layout.shifted if self.shifted else layout.regular
        heads = self.attn(view.to_windows(x, layout.grouping.group_len), view.mask)
        x = x + self.drop_path(self.norm1(self.attn.project(view.from_windows(heads, like=x))))
        return x + self.drop_path(self.norm2(self.mlp(x)))

    def extra_repr(self) -> str:
        return f'shifted={self.shifted}'


class PatchMergingV2(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): 2x2 neighbours concatenated, Linear, then LayerNorm."""

    def __init__(self, dim: int, norm_cfg: dict):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = build_norm(norm_cfg, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(concat_neighbours(x)))


@MODELS.register_module()
class SwinTransformerV2(PyramidBackbone):
    """Swin Transformer V2 backbone returning NCHW maps of size ceil(H/4), ceil(H/8), ceil(H/16), ceil(H/32)
    with C, 2C, 4C, 8C channels, each through its output norm ``norm{i}``.

    Args:
        arch: 'tiny', 'small', 'base' or 'large': sets embed_dims, depths, num_heads and the default
            window_size (8, or 12 for large). Without arch, unset values come from 'tiny'.
        embed_dims, depths, num_heads: the structure; explicit values must agree with ``arch`` if given.
        window_size: the window side, an int or one per stage.
        pretrained_window_sizes: per stage (or an int for all), the window whose offsets normalised the
            position bias coordinates in pretraining; 0 (default) normalises by the stage's own window.
            A checkpoint runs at another window by giving its pretraining windows here (nothing is resized).
        mlp_ratio, qkv_bias (the q and v biases), drop_rate, attn_drop_rate, drop_path_rate, act_cfg,
            norm_cfg, in_channels, patch_size: as in :class:`.swin.SwinTransformer`.
        out_indices, frozen_stages, with_cp, impl, save_memory, kernels, pretrained, init_cfg, check_finite,
            allow_partial_loading: as in :class:`.swin.SwinTransformer`.
    """
    presets = {'swinv2-t': 'tiny', 'swinv2-s': 'small', 'swinv2-b': 'base', 'swinv2-l': 'large'}

    def __init__(self,
                 arch: Optional[str] = None,
                 in_channels: int = 3,
                 embed_dims: Optional[int] = None,
                 patch_size: int = 4,
                 window_size=None,
                 pretrained_window_sizes=0,
                 mlp_ratio: float = 4,
                 depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 qkv_bias: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 with_cp: bool = False,
                 impl: str = 'fast',
                 save_memory: bool = False,
                 kernels: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 frozen_stages: int = -1,
                 init_cfg=None,
                 check_finite: bool = False,
                 allow_partial_loading: bool = False):
        settings = resolve_arch('Swin V2', ARCH_SETTINGS, arch, 'tiny', embed_dims=embed_dims, depths=depths,
                                num_heads=num_heads, window_size=window_size)
        num_stages = len(settings['depths'])
        window_sizes = per_stage('window_size', settings['window_size'], num_stages)
        pretrained_window_sizes = per_stage('pretrained_window_sizes', pretrained_window_sizes, num_stages, minimum=0)
        normalisers = tuple(pretrained or window for window, pretrained in zip(window_sizes, pretrained_window_sizes))
        if min(normalisers) < 2:
            raise ValueError('a window of 1 has no offsets to normalise the position bias coordinates by: give '
                             f'pretrained_window_sizes >= 2 for those stages; got window_size {window_sizes} and '
                             f'pretrained_window_sizes {pretrained_window_sizes}')
        super().__init__(arch=arch, embed_dims=settings['embed_dims'], depths=settings['depths'],
                         num_heads=settings['num_heads'], in_channels=in_channels, out_indices=out_indices,
                         frozen_stages=frozen_stages, impl=impl, save_memory=save_memory, kernels=kernels,
                         pretrained=pretrained, init_cfg=init_cfg, check_finite=check_finite,
                         allow_partial_loading=allow_partial_loading)
        self.window_sizes = window_sizes
        self.pretrained_window_sizes = pretrained_window_sizes
        self.position_bias_normalisers = normalisers
        self.patch_embed = PatchEmbed(in_channels, self.embed_dims, patch_size, norm_cfg, self.options)
        self._build_stages(
            lambda spec: SwinStage(spec, window_sizes[spec.index], norm_cfg, patch_norm=True, block=SwinBlockV2,
                                   merging=PatchMergingV2, pretrained_window_size=pretrained_window_sizes[spec.index],
                                   mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop=drop_rate, attn_drop=attn_drop_rate,
                                   act_cfg=act_cfg, with_cp=with_cp, options=self.options),
            drop_rate, drop_path_rate, norm_cfg)

    def _init_from_scratch(self) -> None:
        """As the authors: logit scales log 10, zero q and v biases, and zero res-post-norms (each block
        starts as the identity)."""
        super()._init_from_scratch()
        for module in self.modules():
            if isinstance(module, WindowAttentionV2):
                nn.init.constant_(module.logit_scale, math.log(10.0))
                if module.q_bias is not None:
                    nn.init.zeros_(module.q_bias)
                    nn.init.zeros_(module.v_bias)
            elif isinstance(module, SwinBlockV2):
                for norm in (module.norm1, module.norm2):
                    nn.init.zeros_(norm.weight)
                    nn.init.zeros_(norm.bias)

    # -------------------------------------------------------------------------------- checkpoints
    @classmethod
    def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        return has_swin_patch_embedding(state_dict) and any(_SWINV2_KEY.fullmatch(key) for key in state_dict)

    @classmethod
    def convert_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        return convert_swinv2_state_dict(state_dict)

    def check_checkpoint(self, state_dict: Dict[str, torch.Tensor], source: str) -> None:
        """Says which windows normalise the position bias coordinates, and warns when the checkpoint's own
        coordinate tables (the authors' and mmpretrain's checkpoints keep them) were normalised by others."""
        if not self.recognizes(state_dict):
            return
        by_pretraining = all(self.pretrained_window_sizes)
        print_log(f'{type(self).__name__}: position bias offsets normalised by the '
                  + (f'pretrained windows {self.pretrained_window_sizes}' if by_pretraining else
                     f'windows {self.position_bias_normalisers} (pretrained_window_sizes '
                     f'{self.pretrained_window_sizes}, 0: the stage\'s own window)')
                  + f' for windows {self.window_sizes}; nothing in the checkpoint is resized',
                  logger='current', level=logging.INFO)
        stored = checkpoint_normalisers(state_dict)
        if any(stage < self.num_stages and self.position_bias_normalisers[stage] != normaliser
               for stage, normaliser in stored.items()):
            suggested = tuple(stored.get(i, n) for i, n in enumerate(self.position_bias_normalisers))
            print_log(f'{source}: its position bias was trained with offsets normalised by the windows '
                      f'{tuple(stored[i] for i in sorted(stored))} (per stage), this model normalises them by '
                      f'{self.position_bias_normalisers}: to use the bias as trained, set '
                      f'pretrained_window_sizes={suggested}', logger='current', level=logging.WARNING)


# ------------------------------------------------------------------------------ checkpoint layouts
# Keys the layouts carry that this package does not use: classifier, final norm, derived buffers.
_UNUSED_KEYS = re.compile(r'(head\..*|norm\.(weight|bias)|'
                          r'.*\.(relative_position_index|relative_coords_table|attn_mask|k_bias))')
_COORDS_TABLE_KEY = re.compile(r'(?:layers|stages)\.(\d+)\.blocks\.\d+\.attn\.(?:w_msa\.)?relative_coords_table')


def detect_swinv2_layout(state_dict: Dict[str, torch.Tensor]) -> str:
    """'mmpretrain' (``stages.``, ``w_msa``, ``ffn``, merging at the start of the next stage in unfold
    order), 'timm' (merging at the start of the next stage) or 'original' (the authors' and ours)."""
    layout = detect_swin_layout(state_dict)  # V1's OpenMMLab key names are mmpretrain's V2 ones
    return 'mmpretrain' if layout == 'mmdet' else layout


def convert_swinv2_state_dict(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Maps a Swin V2 state dict in the authors', mmpretrain's or timm's layout to this package's layout."""
    layout = detect_swinv2_layout(state_dict)
    converted = {}
    for key, value in state_dict.items():
        if _UNUSED_KEYS.fullmatch(key):
            continue
        if layout == 'mmpretrain':
            key = merging_of_previous_stage(from_openmmlab_key(key))
            if key.endswith('.downsample.reduction.weight'):  # the norm follows the reduction: 2C, not reordered
                value = unfold_to_neighbour_order(value, key)
        elif layout == 'timm':
            key = merging_of_previous_stage(key)
        converted[key] = value
    return converted, layout


def checkpoint_normalisers(state_dict: Dict[str, torch.Tensor]) -> Dict[int, int]:
    """Per stage, the window whose offsets normalised a checkpoint's stored coordinate tables, from their
    largest coordinate log2(8 (w - 1) / (n - 1) + 1) / 3 for a window w and normaliser n. Stages
    without a table (or with a window of 1) are left out."""
    found = {}
    for key, table in state_dict.items():
        match = _COORDS_TABLE_KEY.fullmatch(key)
        if not match or int(match.group(1)) in found or table.dim() < 2:
            continue
        window = (table.shape[-2] + 1) // 2
        largest = table[..., 0].abs().max().item()
        if window > 1 and largest > 0:
            found[int(match.group(1))] = round(1 + 8 * (window - 1) / (2 ** (3 * largest) - 1))
    return found
