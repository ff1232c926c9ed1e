"""What every backbone of the package shares: the skeleton of embedding, stages and output norms, the options
and checks at the model's entry, init_cfg / pretrained handling, checkpoint loading and frozen stages.

A backbone is one model file: a subclass of :class:`PyramidBackbone` registered in the package's registry,
with its arch table, its ``presets`` (the names :func:`swin_backbones.create_backbone` knows), its patch
embedding and stage modules, and its checkpoint layouts (``recognizes`` / ``convert_state_dict``).
docs/design.md describes the skeleton.
"""
import copy
import re
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize

from ..checkpoint import read_backbone_weights
from ..loading import convert_on_load, describing_load
from .kernels import FastPath
from .layers import build_norm

_STRUCTURE_SETTINGS = ('embed_dims', 'depths', 'num_heads')
_PRETRAINED_KEYS = {'type', 'checkpoint', 'prefix', 'map_location', 'weights_only'}
_OUTPUT_NORM_KEY = re.compile(r'norm\d+\.(weight|bias)')


class StageSpec(NamedTuple):
    """What a backbone's ``make_stage`` builds stage ``index`` from (see :meth:`PyramidBackbone._build_stages`)."""
    index: int
    dim: int  # embed_dims * 2 ** index
    depth: int
    num_heads: int
    drop_path: List[float]  # one rate per block
    downsample: bool  # whether the stage ends by merging into the next one


class PyramidBackbone(BaseModule):
    """Base of a backbone that returns a tuple of NCHW maps at strides 4, 8, 16 and 32.

    A subclass's constructor resolves its arch (:func:`resolve_arch`), calls ``super().__init__`` with the
    structure and the options every backbone takes, builds ``self.patch_embed`` (B, in, H, W) ->
    (B, H/4, W/4, C), then calls :meth:`_build_stages` with a function that builds one stage; a stage maps
    (B, H, W, C) to its output map and, when it merges, the next stage's input. The forward is shared:
    :meth:`embed`, dropout, the stages, the output norms ``norm{i}`` (where ``output_norms``).

    Class attributes: ``presets`` ({name for create_backbone: arch}), ``output_norms``.

    ``load_state_dict`` (torch's and mmengine's alike) accepts every checkpoint layout the backbone reads,
    under any prefix, and refuses to leave any weight unloaded unless ``allow_partial_loading`` is set:
    see :mod:`swin_backbones.loading`.
    """
    presets: Dict[str, str] = {}
    output_norms = True

    def __init__(self, *, arch: Optional[str], embed_dims: int, depths: Sequence[int], num_heads: Sequence[int],
                 in_channels: int, out_indices: Sequence[int], frozen_stages: int, impl: str, save_memory: bool,
                 kernels: Optional[Dict[str, str]], pretrained: Optional[str], init_cfg, check_finite: bool,
                 allow_partial_loading: bool):
        if init_cfg is not None and pretrained is not None:
            raise ValueError('init_cfg and pretrained cannot be specified at the same time')
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a str (checkpoint path) or None, got {type(pretrained).__name__}')
            warnings.warn('pretrained is deprecated, use init_cfg=dict(type="Pretrained", checkpoint=...)',
                          DeprecationWarning)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        depths, num_heads = tuple(depths), tuple(num_heads)
        if len(num_heads) != len(depths):
            raise ValueError(f'depths and num_heads must have one entry per stage, got {depths} and {num_heads}')
        self.arch = arch
        self.in_channels = in_channels
        self.num_stages = len(depths)
        self.out_indices = _check_out_indices(out_indices, self.num_stages)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be an int in [-1, {self.num_stages}] (-1 freezes nothing, '
                             f'0 the stem, k the stem and the first k stages), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.check_finite = check_finite
        self.allow_partial_loading = bool(allow_partial_loading)
        self.register_load_state_dict_pre_hook(convert_on_load)
        self.options = FastPath.from_arguments(impl, save_memory, kernels)
        self.embed_dims = embed_dims
        self.depths = depths
        self.num_heads = num_heads
        self.num_features = [embed_dims * 2 ** i for i in range(self.num_stages)]
        for dim, heads in zip(self.num_features, self.num_heads):
            if dim % heads:
                raise ValueError(f'stage width {dim} is not divisible by its num_heads {heads}')

    def _build_stages(self, make_stage: Callable[[StageSpec], nn.Module], drop_rate: float, drop_path_rate: float,
                      norm_cfg: dict) -> None:
        """``drop_after_pos``, ``layers`` (stage i built by ``make_stage``, the drop path rate rising linearly
        from 0 at the first block to ``drop_path_rate`` at the last), the output norms, then frozen stages."""
        self.drop_after_pos = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        self.layers = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            self.layers.append(make_stage(StageSpec(i, self.num_features[i], depth, self.num_heads[i],
                                                    rates[first:first + depth], i < self.num_stages - 1)))
        if self.output_norms:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm(norm_cfg, self.num_features[i]))
        self._freeze_stages()

    def minimum_input_size(self) -> int:
        """Smallest H and W for which a graph traced at a larger size (ONNX export) computes what the model
        computes: 1, unless the backbone decides its layout by the input size."""
        return 1

    def extra_repr(self) -> str:
        param = next(self.parameters(), None)
        kernels = self.options.describe(param.device, param.dtype) if param is not None else ''
        return f'arch={self.arch!r}, out_indices={self.out_indices}, kernels: {kernels}'

    # ----------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        return tuple(self._forward_features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in, H, W) image -> (B, H/4, W/4, C) tokens of the first stage."""
        return self.patch_embed(x)

    def _forward_features(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The ``out_indices`` stages' outputs as NCHW, through their output norm ``norm{i}`` where there is one."""
        x = self.drop_after_pos(self.embed(x))
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
        """Modules and parameters that ``frozen_stages`` freezes: for index -1 the stem (the patch embedding,
        its dropout and the backbone's own parameters, such as an absolute position embedding), else stage
        ``index`` and its output norm."""
        if index < 0:
            return [self.patch_embed, self.drop_after_pos, *(p for p in self._parameters.values() if p is not None)]
        norm = getattr(self, f'norm{index}', None)
        return [self.layers[index]] + ([norm] if norm is not None else [])

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

    def check_checkpoint(self, state_dict: Dict[str, torch.Tensor], source: str) -> None:
        """Hook for checks of the (prefix-stripped) state dict before conversion."""

    @classmethod
    def convert_state_dict(cls, state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        """Maps a state dict in any supported layout to this package's; returns it and the layout's name."""
        raise NotImplementedError

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Fits a converted state dict to this model's options (window size, ...): here, drops the output norms
        of stages this model does not output (unused, like a classifier head)."""
        own = self.state_dict()
        return {key: value for key, value in state_dict.items() if key in own or not _OUTPUT_NORM_KEY.fullmatch(key)}

    def keys_not_in_pretraining(self) -> List[str]:
        """Keys a classification checkpoint does not have and that may stay at their initial values: the
        output norms."""
        if not self.output_norms:
            return []
        return [f'norm{i}.{name}' for i in self.out_indices for name in ('weight', 'bias')]


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
