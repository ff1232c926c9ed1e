"""What the Swin and CrossFormer backbones share: init_cfg / pretrained handling, checkpoint loading,
frozen stages and the checks at the model's entry."""
import copy
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize

from ..checkpoint import read_backbone_weights
from ..loading import convert_on_load, describing_load
from .kernels import check_overrides
from .layers import check_impl

_STRUCTURE_SETTINGS = ('embed_dims', 'depths', 'num_heads')
_PRETRAINED_KEYS = {'type', 'checkpoint', 'prefix', 'map_location', 'weights_only'}


class PyramidBackbone(BaseModule):
    """Base of a backbone that returns a tuple of NCHW maps at strides 4, 8, 16 and 32.

    Subclasses build ``self.num_stages`` stages and implement ``_forward_features``,
    ``_stage_modules`` (what ``frozen_stages`` freezes) and ``convert_state_dict`` (checkpoint layouts).

    ``load_state_dict`` (torch's and mmengine's alike) accepts every checkpoint layout the backbone reads,
    under any prefix, and refuses to leave any weight unloaded unless ``allow_partial_loading`` is set:
    see :mod:`swin_backbones.loading`.
    """

    def __init__(self, in_channels: int, num_stages: int, out_indices: Sequence[int], frozen_stages: int,
                 pretrained=None, init_cfg=None, check_finite: bool = False, allow_partial_loading: bool = False):
        if init_cfg is not None and pretrained is not None:
            raise ValueError('init_cfg and pretrained cannot be specified at the same time')
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a str (checkpoint path) or None, got {type(pretrained).__name__}')
            warnings.warn('pretrained is deprecated, use init_cfg=dict(type="Pretrained", checkpoint=...)',
                          DeprecationWarning)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        self.in_channels = in_channels
        self.num_stages = num_stages
        self.out_indices = _check_out_indices(out_indices, num_stages)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {num_stages}] (-1 freezes nothing, '
                             f'0 the stem, k the stem and the first k stages), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.check_finite = check_finite
        self.allow_partial_loading = bool(allow_partial_loading)
        self.register_load_state_dict_pre_hook(convert_on_load)

    def _set_structure(self, arch: Optional[str], impl: str, save_memory: bool, kernels: Optional[Dict[str, str]],
                       embed_dims: int, depths: Sequence[int], num_heads: Sequence[int]) -> None:
        """Records the arguments every backbone shares, and the stage widths ``embed_dims * 2**i`` (each must
        divide by its stage's heads)."""
        self.arch = arch
        self.impl = check_impl(impl)
        self.save_memory = bool(save_memory)
        self.kernels = check_overrides(kernels)
        self.embed_dims = embed_dims
        self.depths = tuple(depths)
        self.num_heads = tuple(num_heads)
        self.num_features = [embed_dims * 2 ** i for i in range(self.num_stages)]
        for dim, heads in zip(self.num_features, self.num_heads):
            if dim % heads:
                raise ValueError(f'stage width {dim} is not divisible by its num_heads {heads}')

    # ----------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        return tuple(self._forward_features(x))

    def _forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def _run_stages(self, x: torch.Tensor) -> List[torch.Tensor]:
        """(B, H, W, C) embedded tokens through ``self.layers`` (each stage returns its output and the next
        stage's input); the ``out_indices`` stages' outputs as NCHW, through their output norm ``norm{i}``
        where the backbone has one."""
        outs = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x)
            if i in self.out_indices:
                norm = getattr(self, f'norm{i}', None)
                outs.append((out if norm is None else norm(out)).permute(0, 3, 1, 2).contiguous())
        return outs

    def _check_input(self, x) -> None:
        name = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f'{name} expects a torch.Tensor of shape (N, {self.in_channels}, H, W), '
                            f'got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError(f'{name} expects a 4-d tensor (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'{name} expects {self.in_channels} input channels (N, {self.in_channels}, H, W), '
                             f'got shape {tuple(x.shape)}; for channels-last data use x.permute(0, 3, 1, 2)')
        if x.shape[0] == 0 or x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError(f'{name} got an empty input of shape {tuple(x.shape)}')
        if not x.is_floating_point():
            raise TypeError(f'{name} expects a floating point input, got {x.dtype}; '
                            'convert images with x.float() and normalise them first')
        self._check_input_matches_parameters(x)
        # Opt-in: scanning the input costs a pass over it and a device sync.
        if self.check_finite and not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).flatten(1).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f'{name} got NaN or inf input values (in batch items {bad})')

    def _check_input_matches_parameters(self, x: torch.Tensor) -> None:
        """The input's device and dtype against the parameters', so that a mismatch is named here rather
        than by the first convolution. Under autocast the dtypes may differ, except float64, which
        autocast does not cast."""
        name = type(self).__name__
        param = next(self.parameters(), None)
        if param is None:
            return
        if x.device != param.device:
            raise ValueError(f'{name} got an input on {x.device} but its parameters are on {param.device}; '
                             f'move one of them: x.to({str(param.device)!r}) or model.to({str(x.device)!r})')
        autocast = torch.is_autocast_enabled(x.device.type)
        if x.dtype != param.dtype and (not autocast or x.dtype == torch.float64):
            fixes = f'cast the input (x.to({param.dtype})) or the model (model.to({x.dtype}))'
            raise TypeError(f'{name} got a {x.dtype} input but its parameters are {param.dtype}; '
                            + (f'autocast does not cast float64 inputs: {fixes}' if autocast else
                               f'{fixes}, or run it under torch.autocast for mixed precision'))

    # ---------------------------------------------------------------------------------- freezing
    def _stage_modules(self, index: int) -> List[nn.Module]:
        """Modules (and a parameter holder for the stem) that ``frozen_stages`` freezes; index -1 is the stem."""
        raise NotImplementedError

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def _freeze_stages(self) -> None:
        for index in range(-1, self.frozen_stages):
            for module in self._stage_modules(index):
                if isinstance(module, nn.Parameter):
                    module.requires_grad = False
                    continue
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    # ---------------------------------------------------------------------------- initialisation
    def _init_from_scratch(self) -> None:
        """Truncated normal (std 0.02) Linear weights with zero bias, LayerNorm ones and zeros."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def init_weights(self) -> None:
        self._init_from_scratch()
        init_cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [self.init_cfg] if self.init_cfg else []
        pretrained = [cfg for cfg in init_cfgs if cfg.get('type') == 'Pretrained']
        others = [cfg for cfg in init_cfgs if cfg.get('type') != 'Pretrained']
        if others:
            initialize(self, others)
        if len(pretrained) > 1:
            raise ValueError(f'at most one Pretrained init_cfg is allowed, got {len(pretrained)}')
        if pretrained:
            cfg = pretrained[0]
            unknown = set(cfg) - _PRETRAINED_KEYS
            if unknown:
                raise ValueError(f'unknown keys in the Pretrained init_cfg: {sorted(unknown)}; '
                                 f'allowed: {sorted(_PRETRAINED_KEYS)}')
            if 'checkpoint' not in cfg:
                raise ValueError("the Pretrained init_cfg needs a 'checkpoint' path")
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'),
                                 weights_only=cfg.get('weights_only', True))
        self._is_init = True

    def load_pretrained(self, path: str, prefix=None, weights_only: bool = True) -> str:
        """Loads a checkpoint file in any supported layout through ``load_state_dict``, as every other loader
        does (:mod:`swin_backbones.loading`); returns the name of the layout it was in."""
        state_dict, origin = read_backbone_weights(path, prefix=prefix, weights_only=weights_only)
        with describing_load(f'checkpoint {path}', origin) as record:
            self.load_state_dict(state_dict, strict=not self.allow_partial_loading)
        return record.layout

    @classmethod
    def recognizes(cls, state_dict: Dict[str, torch.Tensor]) -> bool:
        """Whether a (prefix-stripped) state dict is a checkpoint of this kind of backbone."""
        raise NotImplementedError

    def _check_checkpoint(self, state_dict: Dict[str, torch.Tensor], source: str) -> None:
        """Hook for checks of the (prefix-stripped) state dict before conversion."""

    @classmethod
    def convert_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        """Maps a state dict in any supported layout to this package's; returns it and the layout's name."""
        raise NotImplementedError

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Fits a converted state dict to this model's options (window size, output norms, ...)."""
        return state_dict

    def _keys_not_in_pretraining(self) -> List[str]:
        """Keys a classification checkpoint does not have and that may stay at their initial values."""
        return []


def resolve_arch(family: str, table: Dict[str, dict], arch: Optional[str], default_arch: str,
                 **explicit) -> dict:
    """The settings of ``arch`` (``default_arch`` when None) with the explicit, non-None values applied.

    With an arch, an explicit ``embed_dims`` / ``depths`` / ``num_heads`` must agree with it (the arch
    names the structure); other settings of the table are defaults that explicit values override.
    """
    if arch is not None and arch not in table:
        raise ValueError(f'unknown {family} arch {arch!r}; choose one of {sorted(table)}')
    settings = dict(table[arch or default_arch])
    for name, value in explicit.items():
        if value is None:
            continue
        value = tuple(value) if isinstance(value, (list, tuple)) else value
        if arch is not None and name in _STRUCTURE_SETTINGS and value != settings[name]:
            raise ValueError(f"arch={arch!r} sets {name}={settings[name]}, which conflicts with {name}={value}; "
                             'give either arch or the explicit setting')
        settings[name] = value
    return settings


def per_stage(name: str, value, num_stages: int, minimum: int = 1) -> Tuple[int, ...]:
    """``value`` (an int, or one per stage) as one int per stage, each at least ``minimum``."""
    values = (value,) * num_stages if isinstance(value, int) else tuple(value)
    if len(values) != num_stages or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        kind = 'positive int' if minimum == 1 else f'int >= {minimum}'
        raise ValueError(f'{name} must be a {kind} or one {kind} per stage ({num_stages}), got {value!r}')
    return values


def _check_out_indices(out_indices: Sequence[int], num_stages: int) -> Tuple[int, ...]:
    if isinstance(out_indices, int):
        out_indices = (out_indices,)
    out_indices = tuple(out_indices)
    if (not out_indices or len(set(out_indices)) != len(out_indices)
            or any(not isinstance(i, int) or not 0 <= i < num_stages for i in out_indices)):
        raise ValueError(f'out_indices must be distinct stage indices in [0, {num_stages - 1}], got {out_indices!r}')
    return tuple(sorted(out_indices))
