"""CrossFormer (Wang et al., ICLR 2022) and CrossFormer++ (TPAMI 2023) backbones for any input size.

Computes what the authors' detection/segmentation backbones compute for inputs whose sides are
multiples of 32 (docs/design.md, "CrossFormer"), and extends it to every size: the image is padded to a multiple of 4,
odd maps are padded before each merge, padded tokens are masked as keys, and the small-map fallback
to SDA is decided per forward instead of being stored on the module. Parameters use the authors' key
layout with OpenMMLab's ``stages.{i}`` for their ``layers.{i}`` (:func:`convert_crossformer_state_dict` renames
those and drops the classification-only extras).
"""
import re
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ..errors import ConfigError
from ..registry import MODELS
from . import ops
from .base import PyramidBackbone, StageSpec, per_stage, resolve_arch
from .grouping import (Grouping, ceil_div, group_tokens, pad_image_to_multiple, pad_to_multiple, pad_to_size,
                       padding_key_mask, pair_bias, relative_offsets, relative_position_index, round_up,
                       ungroup_tokens)
from .layers import CheckpointedBlock, DropPath, Mlp, MultiHeadGroupAttention, build_norm

# Structure of each arch, and the defaults the authors' detection/segmentation backbones used.
ARCH_SETTINGS = {
    'tiny': dict(embed_dims=64, depths=(1, 1, 8, 6), num_heads=(2, 4, 8, 16),
                 drop_path_rate=0.1, lda_type='paper', use_acl=False),
    'small': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                  drop_path_rate=0.2, lda_type='paper', use_acl=False),
    'base': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                 drop_path_rate=0.3, lda_type='paper', use_acl=False),
    'large': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
                  drop_path_rate=0.5, lda_type='paper', use_acl=False),
    'pp-small': dict(embed_dims=64, depths=(2, 2, 18, 2), num_heads=(2, 4, 8, 16),
                     drop_path_rate=0.2, lda_type='pp', use_acl=True),
    'pp-base': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24),
                    drop_path_rate=0.3, lda_type='pp', use_acl=True),
    'pp-large': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
                     drop_path_rate=0.5, lda_type='pp', use_acl=True),
}
LDA_TYPES = ('paper', 'pp')
EMBED_KERNELS = (4, 8, 16, 32)
NEG_INF = -1e6  # what the authors add to the logits of padded keys


def _larger(a: int, b: int) -> int:
    # While tracing, sizes are tensors and max() would freeze the example's choice into the graph; under
    # torch.compile with dynamic shapes, sym_max keeps it symbolic instead of guarding on which side is longer.
    return torch.maximum(a, b) if isinstance(a, torch.Tensor) else torch.sym_max(a, b)


def _mask_fill(dtype: torch.dtype) -> float:
    # fp16 cannot hold -1e6; half its lowest value still leaves room for the logits added to it.
    return max(NEG_INF, torch.finfo(dtype).min / 2)


class GroupLayout(NamedTuple):
    """How one attention pattern cuts a map in this forward: the grouping of the padded map, its size,
    the DPB inputs for the group shape and the padded-key mask. Shared by the blocks that use it."""
    grouping: Grouping
    padded_height: int
    padded_width: int
    offsets: torch.Tensor  # T, 2
    index: torch.Tensor  # N * N
    mask: Optional[torch.Tensor]  # nG, 1, N; None without padding


def group_layout(height: int, width: int, multiple: int, grouping_of, device, dtype) -> GroupLayout:
    """Layout for a map padded right/bottom to a multiple of ``multiple``; ``grouping_of(Hp, Wp)`` cuts it."""
    padded_height, padded_width = round_up(height, multiple), round_up(width, multiple)
    grouping = grouping_of(padded_height, padded_width)
    mask = padding_key_mask(height, width, padded_height, padded_width, grouping, device, dtype,
                            fill=_mask_fill(dtype))
    group_h, group_w = grouping.inner_h, grouping.inner_w
    return GroupLayout(grouping, padded_height, padded_width, relative_offsets(group_h, group_w, device),
                       relative_position_index(group_h, group_w, device).view(-1), mask)


class CrossScaleEmbedding(nn.Module):
    """(B, in, H, W) -> (B, ceil(H/4), ceil(W/4), C): four convs of kernel 4, 8, 16, 32 (stride 4, centred)
    with C/2, C/4, C/8, C/8 channels, concatenated, LayerNorm."""

    def __init__(self, in_channels: int, dim: int, norm_cfg: dict, *, fast_path: ops.FastPath):
        super().__init__()
        self.fast_path = fast_path
        dims = [dim // 2 ** (i + 1) for i in range(len(EMBED_KERNELS) - 1)]
        dims.append(dim - sum(dims))
        self.projs = nn.ModuleList([
            nn.Conv2d(in_channels, d, kernel_size=k, stride=4, padding=(k - 4) // 2)
            for k, d in zip(EMBED_KERNELS, dims)])
        self.norm = build_norm(norm_cfg, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The authors' convs give floor(H/4); zeros to a multiple of 4 give ceil(H/4), and the extra zeros
        # continue the convs' own zero padding, so multiples of 4 are unchanged.
        # One channels-last copy of the image for the four convolutions (the fast ops.conv2d would make one each,
        # and each would be kept for backward).
        x = pad_image_to_multiple(x, 4).contiguous(memory_format=torch.channels_last)
        x = torch.cat([ops.conv2d(x, proj, self.fast_path) for proj in self.projs], dim=1)
        return self.norm(x.permute(0, 2, 3, 1))


class CrossScaleMerging(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): LayerNorm, then Conv2d(C, C, 2, s2) and
    Conv2d(C, C, 4, s2, p1) concatenated."""

    def __init__(self, dim: int, norm_cfg: dict, *, fast_path: ops.FastPath):
        super().__init__()
        self.fast_path = fast_path
        self.norm = build_norm(norm_cfg, dim)
        self.reductions = nn.ModuleList([nn.Conv2d(dim, dim, kernel_size=2, stride=2),
                                         nn.Conv2d(dim, dim, kernel_size=4, stride=2, padding=1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Odd sides are padded after the norm, with zeros, so padded positions look like the convs' own
        # zero padding; this gives ceil(H/2) where the authors' code requires even sides.
        x = pad_to_multiple(self.norm(x), 2, 2).permute(0, 3, 1, 2)
        outs = [ops.conv2d(x, reduction, self.fast_path) for reduction in self.reductions]
        return torch.cat(outs, dim=1).permute(0, 2, 3, 1)


class DynamicPosBias(nn.Module):
    """Position bias from an MLP over (dh, dw) offsets: Linear(2, P), then 3x [LayerNorm, ReLU, Linear]."""

    def __init__(self, hidden_dim: int, num_heads: int):
        super().__init__()
        self.pos_proj = nn.Linear(2, hidden_dim)
        self.pos1 = nn.Sequential(nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
        self.pos2 = nn.Sequential(nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
        self.pos3 = nn.Sequential(nn.LayerNorm(hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, num_heads))

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        """(T, 2) offsets -> (T, heads)."""
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets.to(self.pos_proj.weight.dtype)))))


class CrossScaleAttention(MultiHeadGroupAttention):
    """SDA or LDA on a (B, H, W, C) map as described by a :class:`GroupLayout`: pad, group, attend with
    the dynamic position bias and the padded-key mask, ungroup, crop."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, qk_scale: Optional[float], attn_drop: float,
                 proj_drop: float, fast_path: ops.FastPath):
        super().__init__(dim, num_heads, qkv_bias, qk_scale, attn_drop, proj_drop, fast_path=fast_path)
        # The authors build DynamicPosBias(dim // 4), whose hidden width is again a quarter of that.
        self.pos = DynamicPosBias(dim // 16, num_heads)

    def position_bias(self, layout: GroupLayout) -> torch.Tensor:
        return pair_bias(self.pos(layout.offsets), layout.index, layout.grouping.group_len)

    def forward(self, x: torch.Tensor, layout: GroupLayout) -> torch.Tensor:
        """(B, H, W, C) -> the heads' outputs before the output projection, same shape (the projection
        acts on each token alone: :meth:`project` the unpadded map)."""
        _, height, width, _ = x.shape
        x = pad_to_size(x, layout.padded_height, layout.padded_width)
        groups = group_tokens(x, layout.grouping)
        groups = self.attend_groups(groups, self.position_bias(layout).to(groups.dtype), layout.mask)
        x = ungroup_tokens(groups, layout.grouping, layout.padded_height, layout.padded_width)
        return x[:, :height, :width]


class CrossFormerBlock(CheckpointedBlock):
    """``x + DropPath(attn(LN1(x)))``, ``x + DropPath(MLP(LN2(x)))``, then for ACL blocks
    ``LN(DepthwiseConv3x3(x))`` without a residual."""

    def __init__(self, dim: int, num_heads: int, long_distance: bool, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: Optional[float], drop: float, attn_drop: float, drop_path: float, act_cfg: dict,
                 norm_cfg: dict, use_acl: bool, fast_path: ops.FastPath):
        super().__init__()
        self.long_distance = long_distance
        self.norm1 = build_norm(norm_cfg, dim)
        self.attn = CrossScaleAttention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, fast_path)
        self.drop_path = DropPath(drop_path)
        self.norm2 = build_norm(norm_cfg, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg, drop, fast_path=fast_path)
        self.use_acl = use_acl
        if use_acl:
            self.ex_conv = nn.Conv2d(dim, dim, kernel_size=3, padding=1, groups=dim)
            self.ex_ln = build_norm(norm_cfg, dim)

    def _forward(self, x: torch.Tensor, layout: GroupLayout) -> torch.Tensor:
        heads = self.attn(self.norm1(x), layout)
        x = self.attn.project(heads, residual=x, drop_path=self.drop_path)
        x = self.mlp(self.norm2(x), residual=x, drop_path=self.drop_path)
        if self.use_acl:
            x = self.ex_ln(self.ex_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))
        return x

    def extra_repr(self) -> str:
        return f'long_distance={self.long_distance}, use_acl={self.use_acl}'


class CrossFormerStage(nn.Module):
    """Blocks alternating SDA (even) and LDA (odd), then (except in the last stage) the cross-scale merge."""

    def __init__(self, spec: StageSpec, group_size: int, interval: int, lda_type: str, adaptive_interval: bool,
                 block, downsample: Optional[nn.Module]):
        super().__init__()
        self.group_size = group_size
        self.interval = interval
        self.lda_type = lda_type
        self.adaptive_interval = adaptive_interval
        self.blocks = nn.ModuleList([block(j) for j in range(spec.depth)])
        self.downsample = downsample

    def layouts(self, height: int, width: int, device, dtype) -> Tuple[GroupLayout, GroupLayout]:
        """The (SDA, LDA) layouts for a height x width map in this forward; nothing is stored, so a small
        input never changes what a later large one computes."""
        group = self.group_size
        if min(height, width) <= group:
            # Small map: every block does SDA, as in the authors' code. The paper version uses G' = min(H, W).
            # CrossFormer++ uses one max(H, W)-square group; its padded keys get exactly zero weight and the
            # bias depends only on offsets, so one unpadded H x W group computes the same at a fraction of
            # the cost (a 2 x 75 map would otherwise be padded to 75 x 75).
            if self.lda_type == 'paper':
                group = min(height, width)
                sda = group_layout(height, width, group, lambda hp, wp: Grouping(group, group), device, dtype)
            else:
                sda = group_layout(height, width, 1, lambda hp, wp: Grouping(hp, wp), device, dtype)
            return sda, sda
        sda = group_layout(height, width, group, lambda hp, wp: Grouping(group, group), device, dtype)
        interval = self.interval
        if self.lda_type == 'paper':
            lda = group_layout(height, width, interval,
                               lambda hp, wp: Grouping(hp // interval, wp // interval, interval, interval),
                               device, dtype)
        else:
            if self.adaptive_interval:
                interval = ceil_div(_larger(height, width), group)
            lda = group_layout(height, width, group * interval,
                               lambda hp, wp: Grouping(group, group, interval, interval), device, dtype)
        return sda, lda

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Returns the stage's output map and, when the stage merges, the merged map."""
        sda, lda = self.layouts(x.shape[1], x.shape[2], x.device, x.dtype)
        for block in self.blocks:
            x = block(x, lda if block.long_distance else sda)
        return x, self.downsample(x) if self.downsample is not None else None

    def extra_repr(self) -> str:
        return (f'group_size={self.group_size}, interval={self.interval}, lda_type={self.lda_type!r}, '
                f'adaptive_interval={self.adaptive_interval}')


@MODELS.register_module()
class CrossFormer(PyramidBackbone):
    """CrossFormer / CrossFormer++ backbone: NCHW maps of size ceil(H/4), ceil(H/8), ceil(H/16), ceil(H/32) with
    C, 2C, 4C, 8C channels (no output norms, as in the authors' backbones).

    Args:
        arch (str, optional): 'tiny', 'small', 'base', 'large' (CrossFormer) or 'pp-small', 'pp-base',
            'pp-large' (CrossFormer++). Sets embed_dims, depths and num_heads, and the defaults of
            drop_path_rate, lda_type and use_acl. Without arch, unset values come from 'small' (the authors'
            defaults). Defaults to None.
        embed_dims (int, optional): Channels of the first stage, a multiple of 8. Defaults to None (from arch).
        depths (Sequence[int], optional): Blocks per stage. Defaults to None (from arch).
        num_heads (Sequence[int], optional): Attention heads per stage. Defaults to None (from arch).
        group_size (int | Sequence[int]): G per stage (an int for all stages). Defaults to 7.
        crs_interval (int | Sequence[int]): LDA interval I per stage (an int for all stages).
            Defaults to (8, 4, 2, 1).
        lda_type (str, optional): 'paper' (token (h, w) to group (h mod I, w mod I) of the whole padded map)
            or 'pp' (CrossFormer++: the same inside (G*I) x (G*I) regions, G x G groups). Defaults to None
            (from arch).
        adaptive_interval (bool): CrossFormer++ only: I = ceil(max(H, W) / G) per forward instead of
            crs_interval. Defaults to False.
        use_acl (bool, optional): The CrossFormer++ ACL layers (depthwise 3x3 conv + LayerNorm every third
            block). Defaults to None (from arch).
        mlp_ratio (float): Hidden width of the MLP over its input width. Defaults to 4.
        qkv_bias (bool): Biases of the query, key and value projections. Defaults to True.
        qk_scale (float, optional): The logits' scale instead of head_dim ** -0.5. Defaults to None.
        drop_rate (float): Dropout after the embedding and in the MLP and projection. Defaults to 0.
        attn_drop_rate (float): Dropout of the attention probabilities. Defaults to 0.
        drop_path_rate (float, optional): Stochastic depth rate of the last block (rising linearly from 0 at
            the first). Defaults to None (from arch).
        act_cfg (dict): The MLP's activation. Defaults to ``dict(type='GELU')``.
        norm_cfg (dict): The norm layers (LayerNorm). Defaults to ``dict(type='LN')``.
    """
    presets = {'crossformer-t': 'tiny', 'crossformer-s': 'small', 'crossformer-b': 'base', 'crossformer-l': 'large',
               'crossformer-pp-s': 'pp-small', 'crossformer-pp-b': 'pp-base', 'crossformer-pp-l': 'pp-large'}
    output_norms = False  # the authors' detection and segmentation backbones emit the stages' maps as they are

    def __init__(self,
                 arch: Optional[str] = None,
                 embed_dims: Optional[int] = None,
                 depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None,
                 group_size=7,
                 crs_interval=(8, 4, 2, 1),
                 lda_type: Optional[str] = None,
                 adaptive_interval: bool = False,
                 use_acl: Optional[bool] = None,
                 mlp_ratio: float = 4.0,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: Optional[float] = None,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: dict = dict(type='LN'),
                 **common):
        settings = resolve_arch('CrossFormer', ARCH_SETTINGS, arch, 'small', embed_dims=embed_dims, depths=depths,
                                num_heads=num_heads, drop_path_rate=drop_path_rate, lda_type=lda_type,
                                use_acl=use_acl)
        embed_dims, num_stages = settings['embed_dims'], len(settings['depths'])
        if not isinstance(embed_dims, int) or embed_dims < 16 or embed_dims % 8:
            raise ConfigError('embed_dims must be a multiple of 8 and at least 16 (the embedding splits it into '
                              f'C/2, C/4, C/8, C/8 and the position bias MLP is C/16 wide), got {embed_dims!r}')
        group_size = per_stage('group_size', group_size, num_stages)
        crs_interval = per_stage('crs_interval', crs_interval, num_stages)
        if settings['lda_type'] not in LDA_TYPES:
            raise ConfigError(f"lda_type must be one of {LDA_TYPES} ('paper': CrossFormer, 'pp': CrossFormer++), "
                              f"got {settings['lda_type']!r}")
        if adaptive_interval and settings['lda_type'] != 'pp':
            raise ConfigError("adaptive_interval is a CrossFormer++ option: it needs lda_type='pp'")
        super().__init__(arch=arch, embed_dims=embed_dims, depths=settings['depths'], num_heads=settings['num_heads'],
                         **common)
        self.group_size = group_size
        self.crs_interval = crs_interval
        self.lda_type = settings['lda_type']
        self.adaptive_interval = bool(adaptive_interval)
        self.use_acl = bool(settings['use_acl'])
        self.patch_embed = CrossScaleEmbedding(self.in_channels, embed_dims, norm_cfg, fast_path=self.fast_path)

        def make_stage(spec: StageSpec) -> CrossFormerStage:
            def block(j: int) -> CrossFormerBlock:
                return CrossFormerBlock(spec.dim, spec.num_heads, j % 2 == 1, mlp_ratio, qkv_bias, qk_scale,
                                        drop_rate, attn_drop_rate, spec.drop_path[j], act_cfg, norm_cfg,
                                        self.use_acl and (j + 1) % 3 == 0 and j < spec.depth - 1, self.fast_path)
            merging = CrossScaleMerging(spec.dim, norm_cfg, fast_path=self.fast_path) if spec.merge_stride else None
            return CrossFormerStage(spec, group_size[spec.index], crs_interval[spec.index], self.lda_type,
                                    self.adaptive_interval, block, merging)

        self._build_stages(make_stage, drop_rate, settings['drop_path_rate'], norm_cfg)

    def minimum_input_size(self) -> int:
        """A stage whose map side L is at most its group size G switches to its small-map layout, a Python
        branch that a traced graph freezes at the traced size. Stage i's side is ceil(H / (4 * 2**i)), so
        every stage keeps the normal layout exactly when H > G_i * 4 * 2**i for all i."""
        return max(group * 4 * 2 ** i for i, group in enumerate(self.group_size)) + 1

    # -------------------------------------------------------------------------------- checkpoints
    @classmethod
    def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        """Whether a (prefix-stripped) state dict is a CrossFormer / CrossFormer++ checkpoint."""
        return detect_crossformer_layout(state_dict) is not None

    @classmethod
    def convert_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        return convert_crossformer_state_dict(state_dict)


# ------------------------------------------------------------------------------ checkpoint layouts
# Classification-only keys of the authors' checkpoints: final norm, head, and the attention buffers
# their classification model keeps for a fixed input size.
_UNUSED_KEYS = re.compile(r'(head\..*|norm\.(weight|bias)|.*\.attn\.biases|.*\.attn\.relative_position_index)')


def detect_crossformer_layout(state_dict: Dict[str, torch.Tensor]) -> Optional[str]:
    """'swin_backbones' (``stages.{i}``) or 'original' (the authors', ``layers.{i}``) for a CrossFormer state
    dict, else None."""
    if not any(key.startswith('patch_embed.projs.') for key in state_dict):
        return None
    return 'swin_backbones' if any(key.startswith('stages.') for key in state_dict) else 'original'


def convert_crossformer_state_dict(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Renames the authors' ``layers.{i}`` to ``stages.{i}`` and drops the classification-only keys of a
    CrossFormer / CrossFormer++ state dict.

    Nothing else is renamed or dropped, so a checkpoint of another model fails the strict load with
    its key lists.
    """
    layout = detect_crossformer_layout(state_dict) or 'original'
    return {('stages.' + key[len('layers.'):] if key.startswith('layers.') else key): value
            for key, value in state_dict.items() if not _UNUSED_KEYS.fullmatch(key)}, layout
