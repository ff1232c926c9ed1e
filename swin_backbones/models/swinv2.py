"""Swin Transformer V2 backbone (Liu et al., CVPR 2022) for detection and segmentation at any input size.

The computation (docs/design.md, "Swin Transformer V2"): res-post-norm blocks, scaled cosine attention with a
clamped per-head logit scale, q and v biases (no k bias), the continuous position bias of an MLP over
log-spaced window offsets normalised by the pretraining window, and patch merging that reduces before it
normalises. The window machinery is Swin's (:mod:`.windows`): a map smaller than a window is padded, never given
a smaller window (the authors' classification-only rule).

The constructor takes mmpretrain 1.2's ``SwinTransformerV2`` arguments with mmpretrain's meaning (the one way
to use Swin V2 in mmdet and mmseg configs), and refuses by name what describes another model.
:func:`convert_swinv2_state_dict` reads the authors', mmpretrain's and timm's checkpoint layouts.
"""
import logging
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from ..errors import ConfigError
from ..registry import MODELS
from . import ops
from .base import PyramidBackbone, StageSpec, per_stage, resolve_arch
from .grouping import pair_bias, relative_offsets, relative_position_index
from .layers import CheckpointedBlock, DropPath, Mlp, MultiHeadGroupAttention
from .swin_layouts import (detect_layout, from_authors_key, from_openmmlab_key, has_swin_patch_embedding,
                           merging_of_previous_stage, neighbour_to_unfold_order, resize_position_embedding)
from .windows import INTERPOLATE_MODES, PatchEmbed, SwinStage, WindowLayout, absolute_position_embedding, patch_grid

ARCH_SETTINGS = {
    'tiny': dict(embed_dims=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'small': dict(embed_dims=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'base': dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'large': dict(embed_dims=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
}
# mmpretrain's names of the archs; its 'huge' and 'giant' add extra norms this package does not build.
_ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}
_ARCH_DICT_KEYS = {'embed_dims', 'depths', 'num_heads', 'extra_norm_every_n_blocks'}
MAX_LOGIT_SCALE = math.log(100.0)  # exp(logit_scale), the factor of the cosines, is at most 100
CPB_HIDDEN_DIMS = 512
# Keys only Swin V2 checkpoints have: its attention's position bias MLP, logit scale and q bias.
_SWINV2_KEY = re.compile(r'.*\.(cpb_mlp\.\d+\.weight|logit_scale|q_bias)')


def log_spaced_offsets(window: int, normaliser: int) -> torch.Tensor:
    """((2w-1)^2, 2) float32: every (dh, dw) offset of a ``window`` x ``window`` window, in the row order of
    :func:`.grouping.relative_position_index`, divided by ``normaliser - 1``, times 8, then
    sign(x) log2(|x| + 1) / 3."""
    offsets = relative_offsets(window, window) / (normaliser - 1) * 8
    return torch.sign(offsets) * torch.log2(offsets.abs() + 1.0) / math.log2(8)


class WindowAttentionV2(MultiHeadGroupAttention):
    """Scaled cosine attention over windows of tokens, with the continuous position bias (and the shift mask).

    The bias, 16 * sigmoid(cpb_mlp(offsets)), is computed once per forward for all windows.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, pretrained_window_size: int, qkv_bias: bool,
                 attn_drop: float, fast_path: ops.FastPath):
        super().__init__(dim, num_heads, qkv_bias=False, attn_drop=attn_drop, fast_path=fast_path)
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

    def forward(self, windows: torch.Tensor, shift_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """windows: (B * nW, ws * ws, C) -> the heads' outputs before the output projection, same shape
        (:meth:`project` them where the tokens are stored)."""
        table = 16 * torch.sigmoid(self.cpb_mlp(self.relative_coords_table))  # T, heads
        bias = pair_bias(table, self.relative_position_index, self.window_size ** 2)
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        cosine_scale = self.logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
        return self.attend_groups(windows, bias, shift_mask, qkv_bias=qkv_bias, cosine_scale=cosine_scale)

    def extra_repr(self) -> str:
        return f'window_size={self.window_size}, pretrained_window_size={self.pretrained_window_size}'


class SwinBlockV2(CheckpointedBlock):
    """Res-post-norm: ``x + DropPath(LN1(W-MSA(x)))``, ``x + DropPath(LN2(MLP(x)))`` on the tokens as the
    stage stores them (see :class:`.windows.WindowLayout`); the attention sees them as windows. Padded tokens
    enter attention as zeros (as mmpretrain's ``pad_small_map=True`` pads them); they are not masked."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shifted: bool, pretrained_window_size: int,
                 mlp_ratio: float, qkv_bias: bool, attn_drop: float, drop_path: float, act_cfg: dict,
                 fast_path: ops.FastPath):
        super().__init__()
        self.shifted = shifted
        self.fast_path = fast_path
        self.attn = WindowAttentionV2(dim, num_heads, window_size, pretrained_window_size, qkv_bias, attn_drop,
                                      fast_path)
        self.norm1 = nn.LayerNorm(dim)
        self.drop_path = DropPath(drop_path)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_cfg, fast_path=fast_path)
        self.norm2 = nn.LayerNorm(dim)

    def _forward(self, x: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        view = layout.view(self.shifted)
        heads = self.attn(view.to_windows(x, layout.grouping.group_len, self.fast_path), view.mask)
        x = x + self.drop_path(self.norm1(self.attn.project(view.from_windows(heads, x, self.fast_path))))
        return x + self.drop_path(self.norm2(self.mlp(x)))

    def extra_repr(self) -> str:
        return f'shifted={self.shifted}'


class PatchMergingV2(nn.Module):
    """(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 2C): 2x2 neighbours concatenated, Linear, then LayerNorm."""

    def __init__(self, dim: int, fast_path: ops.FastPath):
        super().__init__()
        self.fast_path = fast_path
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(ops.patch_merging(x, None, self.reduction, 2, self.fast_path))


@MODELS.register_module()
class SwinTransformerV2(PyramidBackbone):
    """Swin Transformer V2 backbone: NCHW maps of size ceil(H/4), ceil(H/8), ceil(H/16), ceil(H/32) with C, 2C,
    4C, 8C channels, each through its output norm ``norm{i}``.

    Takes mmpretrain 1.2's ``SwinTransformerV2`` arguments with mmpretrain's meaning (``arch`` names and
    dicts, ``img_size``, ``use_abs_pos_embed``, ``interpolate_mode``, ``pad_small_map``, ``norm_eval``,
    ``stage_cfgs`` and ``patch_cfg`` where they describe this model, ``frozen_stages`` counted as mmpretrain
    counts). Defaults that differ from mmpretrain's: ``out_indices`` (0, 1, 2, 3) (mmpretrain: (3,)) and
    ``pad_small_map=True`` (mmpretrain: False). Blocks and merging use LayerNorm (eps 1e-5), as the authors' and
    mmpretrain's.

    Args:
        arch (str | dict, optional): 'tiny', 'small', 'base', 'large' (or mmpretrain's 't', 's', 'b', 'l'), or a
            dict with keys embed_dims, depths, num_heads and extra_norm_every_n_blocks (which must be 0). Sets
            embed_dims, depths and num_heads; without arch, unset values come from 'tiny'. Defaults to None.
        img_size (int | tuple[int]): The pretraining image size, which sets the grid of the absolute position
            embedding. Defaults to 256.
        embed_dims (int, optional): Channels of the first stage. Defaults to None (from arch).
        patch_size (int): Side of the square patches of the patch embedding. Defaults to 4.
        window_size (int | Sequence[int]): The window side, an int or one per stage. Defaults to 8.
        pretrained_window_sizes (int | Sequence[int]): Per stage (or an int for all), the window whose offsets
            normalised the position bias coordinates in pretraining; 0 normalises by the stage's own window. A
            checkpoint runs at another window by giving its pretraining windows here (nothing is resized).
            Defaults to 0.
        mlp_ratio (float): Hidden width of the MLP over its input width. Defaults to 4.
        depths (Sequence[int], optional): Blocks per stage. Defaults to None (from arch).
        num_heads (Sequence[int], optional): Attention heads per stage. Defaults to None (from arch).
        qkv_bias (bool): The q and v biases. Defaults to True.
        drop_rate (float): Dropout after the patch embedding (as in mmpretrain: not inside the blocks).
            Defaults to 0.
        attn_drop_rate (float): Dropout of the attention probabilities. Defaults to 0.
        drop_path_rate (float): Stochastic depth rate of the last block (rising linearly from 0 at the first),
            applied to each normalised branch as the authors do. Defaults to 0.1.
        use_abs_pos_embed (bool): Add a learned absolute position embedding after the patch embedding, resized
            by ``interpolate_mode`` to the input. Defaults to False.
        interpolate_mode (str): 'bicubic', 'bilinear' or 'nearest': how the absolute position embedding is
            resized. Defaults to 'bicubic'.
        pad_small_map (bool): True pads every map to whole windows; False is mmpretrain's classification rule:
            a map whose shorter side equals the window is not shifted, and a shorter one is an error.
            Defaults to True.
        norm_eval (bool): mmpretrain's: set BatchNorm layers to eval mode in training. This backbone has none,
            so it changes nothing (as in mmpretrain's Swin V2). Defaults to False.
        stage_cfgs (dict | Sequence[dict], optional): mmpretrain's per-stage overrides; only entries that
            describe this model are accepted (``downsample_cfg=dict(use_post_norm=True)``, and the values the
            other arguments already set); anything else is an error naming it. Defaults to None.
        patch_cfg (dict, optional): mmpretrain's patch embedding overrides, accepted where they equal this
            model's patch embedding (Conv2d of kernel and stride ``patch_size``, 'corner' padding, LayerNorm).
            Defaults to None.
        act_cfg (dict): The MLP's activation (mmpretrain's is GELU). Defaults to ``dict(type='GELU')``.
        norm_cfg (dict, optional): The output norms ``norm{i}`` (as mmpretrain's, which uses it for nothing
            else); None for no output norms. Defaults to ``dict(type='LN')``.
        frozen_stages (int): As mmpretrain counts: -1 freezes nothing; k in [0, 3] freezes the stem, the blocks
            of stages 0 .. k with their output norms, and the patch mergings into stages 1 .. k. Defaults to -1.
    """
    presets = {'swinv2-t': 'tiny', 'swinv2-s': 'small', 'swinv2-b': 'base', 'swinv2-l': 'large'}

    def __init__(self,
                 arch=None,
                 img_size=256,
                 embed_dims: Optional[int] = None,
                 patch_size: int = 4,
                 window_size=8,
                 pretrained_window_sizes=0,
                 mlp_ratio: float = 4,
                 depths: Optional[Sequence[int]] = None,
                 num_heads: Optional[Sequence[int]] = None,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.1,
                 use_abs_pos_embed: bool = False,
                 interpolate_mode: str = 'bicubic',
                 pad_small_map: bool = True,
                 norm_eval: bool = False,
                 stage_cfgs=None,
                 patch_cfg=None,
                 act_cfg: dict = dict(type='GELU'),
                 norm_cfg: Optional[dict] = dict(type='LN'),
                 frozen_stages: int = -1,
                 **common):
        arch, structure = _arch_structure(arch, embed_dims=embed_dims, depths=depths, num_heads=num_heads)
        settings = resolve_arch('Swin V2', ARCH_SETTINGS, arch, 'tiny', **structure)
        num_stages = len(settings['depths'])
        window_sizes = per_stage('window_size', window_size, num_stages)
        pretrained_window_sizes = per_stage('pretrained_window_sizes', pretrained_window_sizes, num_stages, minimum=0)
        normalisers = tuple(pretrained or window for window, pretrained in zip(window_sizes, pretrained_window_sizes))
        if min(normalisers) < 2:
            raise ConfigError('a window of 1 has no offsets to normalise the position bias coordinates by: give '
                              f'pretrained_window_sizes >= 2 for those stages; got window_size {window_sizes} and '
                              f'pretrained_window_sizes {pretrained_window_sizes}')
        if isinstance(frozen_stages, int) and frozen_stages >= num_stages:
            raise ConfigError(f'frozen_stages counts as mmpretrain does (k freezes stages 0 .. k): it must be in '
                              f'[-1, {num_stages - 1}], got {frozen_stages}')
        if interpolate_mode not in INTERPOLATE_MODES:
            raise ConfigError(f'interpolate_mode must be one of {INTERPOLATE_MODES}, got {interpolate_mode!r}')
        _check_mmpretrain_overrides(stage_cfgs, patch_cfg, num_stages, patch_size, window_sizes,
                                    pretrained_window_sizes, pad_small_map, self_values=dict(
                                        in_channels=common.get('in_channels', 3), img_size=img_size))
        super().__init__(arch=arch, embed_dims=settings['embed_dims'], depths=settings['depths'],
                         num_heads=settings['num_heads'], frozen_stages=frozen_stages, **common)
        self.output_norms = norm_cfg is not None
        self.window_sizes = window_sizes
        self.pretrained_window_sizes = pretrained_window_sizes
        self.position_bias_normalisers = normalisers
        self.pad_small_map = bool(pad_small_map)
        self.norm_eval = bool(norm_eval)
        self.interpolate_mode = interpolate_mode
        self.patch_embed = PatchEmbed(self.in_channels, self.embed_dims, patch_size, dict(type='LN'),
                                      fast_path=self.fast_path)
        self.use_abs_pos_embed = use_abs_pos_embed
        self.pos_embed_grid = patch_grid('img_size', img_size, patch_size)
        if use_abs_pos_embed:
            self.absolute_pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.pos_embed_grid), self.embed_dims))

        def make_stage(spec: StageSpec) -> SwinStage:
            def block(j: int, shifted: bool) -> SwinBlockV2:
                return SwinBlockV2(spec.dim, spec.num_heads, window_sizes[spec.index], shifted,
                                   pretrained_window_sizes[spec.index], mlp_ratio, qkv_bias, attn_drop_rate,
                                   spec.drop_path[j], act_cfg, self.fast_path)
            merging = PatchMergingV2(spec.dim, self.fast_path) if spec.merge_stride else None
            return SwinStage(spec, window_sizes[spec.index], block, merging, pad_small_map=self.pad_small_map)

        self._build_stages(make_stage, drop_rate, drop_path_rate, norm_cfg, (patch_size, 2, 2, 2)[:num_stages])

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
        if self.use_abs_pos_embed:
            nn.init.trunc_normal_(self.absolute_pos_embed, std=0.02)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # B, H/4, W/4, C
        if self.use_abs_pos_embed:
            x = x + absolute_position_embedding(self.absolute_pos_embed, self.pos_embed_grid, x.shape[1], x.shape[2],
                                                self.interpolate_mode)
        return x

    def frozen_modules(self) -> List[nn.Module]:
        """mmpretrain's count: for k >= 0 the stem, the blocks of stages 0 .. k with their output norms, and the
        patch mergings into stages 1 .. k (here at the end of stages 0 .. k-1)."""
        if self.frozen_stages < 0:
            return []
        frozen = [self.patch_embed, self.drop_after_pos, *(p for p in self._parameters.values() if p is not None)]
        for index in range(self.frozen_stages):
            frozen += [self.stages[index], *self._output_norm(index)]
        return frozen + [self.stages[self.frozen_stages].blocks, *self._output_norm(self.frozen_stages)]

    def minimum_input_size(self) -> int:
        """With ``pad_small_map=False`` a stage whose map is not larger than its window takes another layout, a
        Python branch that a traced graph freezes; stage i's side is ceil(H / (4 * 2**i))."""
        if self.pad_small_map:
            return 1
        return max(window * 4 * 2 ** i for i, window in enumerate(self.window_sizes)) + 1

    # -------------------------------------------------------------------------------- checkpoints
    @classmethod
    def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        return has_swin_patch_embedding(state_dict) and any(_SWINV2_KEY.fullmatch(key) for key in state_dict)

    @classmethod
    def convert_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        return convert_swinv2_state_dict(state_dict)

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        pos = state_dict.get('absolute_pos_embed')
        if pos is not None and self.use_abs_pos_embed:
            state_dict = dict(state_dict, absolute_pos_embed=resize_position_embedding(
                pos, self.pos_embed_grid, self.embed_dims, self.interpolate_mode))
        return super().adapt_state_dict(state_dict)

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


def _arch_structure(arch, **explicit) -> Tuple[Optional[str], dict]:
    """``arch`` as one of ARCH_SETTINGS' names (or None), and the explicit structure: the ``explicit`` values, or
    those of a dict arch (mmpretrain's form), which explicit values must then agree with."""
    if arch is None:
        return None, explicit
    if isinstance(arch, dict):
        if set(arch) != _ARCH_DICT_KEYS:
            raise ConfigError(f'a dict arch needs exactly the keys {sorted(_ARCH_DICT_KEYS)} (as mmpretrain\'s), '
                              f'got {sorted(arch)}')
        if arch['extra_norm_every_n_blocks']:
            raise ConfigError('arch extra_norm_every_n_blocks must be 0: the extra norms of mmpretrain\'s huge and '
                              f'giant Swin V2 are not built here, got {arch["extra_norm_every_n_blocks"]!r}')
        structure = dict(embed_dims=arch['embed_dims'], depths=tuple(arch['depths']),
                         num_heads=tuple(arch['num_heads']))
        for name, value in explicit.items():
            if value is not None and (tuple(value) if isinstance(value, (list, tuple)) else value) != structure[name]:
                raise ConfigError(f'arch sets {name}={structure[name]}, which conflicts with {name}={value}')
        return None, structure
    if not isinstance(arch, str):
        raise ConfigError(f'arch must be a str, a dict or None, got {type(arch).__name__}')
    name = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    if name in ('h', 'huge', 'g', 'giant'):
        raise ConfigError(f"arch {arch!r}: mmpretrain's huge and giant Swin V2 add extra norms every 6 blocks, "
                          f'which this package does not build; choose one of {sorted(ARCH_SETTINGS)}')
    return name, explicit


# mmpretrain's stage_cfgs entries, with the values that describe this model (given the other arguments).
def _check_mmpretrain_overrides(stage_cfgs, patch_cfg, num_stages: int, patch_size: int, window_sizes,
                                pretrained_window_sizes, pad_small_map: bool, self_values: dict) -> None:
    """Refuses, by name, mmpretrain ``stage_cfgs`` / ``patch_cfg`` entries that would describe another model."""
    if stage_cfgs is not None:
        per_stage_cfgs = stage_cfgs if isinstance(stage_cfgs, (list, tuple)) else [stage_cfgs] * num_stages
        if len(per_stage_cfgs) != num_stages or not all(isinstance(cfg, dict) for cfg in per_stage_cfgs):
            raise ConfigError(f'stage_cfgs must be a dict or one dict per stage ({num_stages}), got {stage_cfgs!r}')
        for index, cfg in enumerate(per_stage_cfgs):
            ours = dict(downsample_cfg=dict(use_post_norm=True), window_size=window_sizes[index],
                        pretrained_window_size=pretrained_window_sizes[index], pad_small_map=pad_small_map,
                        extra_norm_every_n_blocks=0, block_cfgs=dict())
            _check_same(f'stage_cfgs[{index}]', cfg, ours)
    if patch_cfg is not None:
        if not isinstance(patch_cfg, dict):
            raise ConfigError(f'patch_cfg must be a dict, got {patch_cfg!r}')
        ours = dict(conv_type='Conv2d', kernel_size=patch_size, stride=patch_size, padding='corner', dilation=1,
                    bias=True, norm_cfg=dict(type='LN'), input_size=self_values['img_size'],
                    in_channels=self_values['in_channels'])
        _check_same('patch_cfg', patch_cfg, ours)


def _check_same(name: str, given: dict, ours: dict) -> None:
    for key, value in given.items():
        if key not in ours:
            raise ConfigError(f'{name}: {key!r} is not supported: it would describe another model than this '
                              f'package builds (accepted keys: {sorted(ours)})')
        if value != ours[key]:
            raise ConfigError(f'{name}: {key}={value!r} is not supported here: this model has {key}={ours[key]!r}')


# ------------------------------------------------------------------------------ checkpoint layouts
# Keys the layouts carry that this package does not use: classifier, final norm, derived buffers.
_UNUSED_KEYS = re.compile(r'(head\..*|norm\.(weight|bias)|'
                          r'.*\.(relative_position_index|relative_coords_table|attn_mask|k_bias))')
_COORDS_TABLE_KEY = re.compile(r'(?:layers|stages)\.(\d+)\.blocks\.\d+\.attn\.(?:w_msa\.)?relative_coords_table')


def convert_swinv2_state_dict(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
    """Maps a Swin V2 state dict in this package's, the authors', mmpretrain's or timm's layout to this
    package's; returns it and the layout's name."""
    layout = detect_layout(state_dict, 'mmpretrain')
    converted = {}
    for key, value in state_dict.items():
        if _UNUSED_KEYS.fullmatch(key):
            continue
        if layout == 'mmpretrain':
            key = merging_of_previous_stage(from_openmmlab_key(key))
        elif layout in ('original', 'timm'):
            key = from_authors_key(merging_of_previous_stage(key) if layout == 'timm' else key)
            if key.endswith('.downsample.reduction.weight'):  # the norm follows the reduction: 2C, not reordered
                value = neighbour_to_unfold_order(value, key)
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
