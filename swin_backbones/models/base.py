"""What every backbone of the package shares: the constructor arguments every backbone takes (written and
documented once, here), the skeleton of embedding, stages and output norms, the checks at the model's entry,
init_cfg / pretrained handling, checkpoint loading hooks and frozen stages.

A backbone is one model file: a subclass of :class:`PyramidBackbone` registered in the package's registry,
with its arch table, its ``presets`` (the names :func:`swin_backbones.create_backbone` knows), its patch
embedding and stage modules, and its checkpoint layouts (``recognizes`` / ``convert_state_dict``).
docs/design.md describes the skeleton.
"""
import copy
import inspect
import math
import re
import textwrap
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import initialize

from ..checkpoint import read_backbone_weights
from ..errors import ConfigError
from ..loading import convert_on_load, describing_load
from .layers import CheckpointedBlock, build_norm
from .ops import FastPath

_STRUCTURE_SETTINGS = ('embed_dims', 'depths', 'num_heads')
_PRETRAINED_KEYS = {'type', 'checkpoint', 'prefix', 'map_location', 'weights_only'}
_OUTPUT_NORM_KEY = re.compile(r'norm\d+\.(weight|bias)')

# The Args entries of the arguments every backbone takes; each backbone's class docstring gets those it does
# not document itself (see PyramidBackbone.__init_subclass__).
COMMON_ARGUMENTS_DOC = {
    'in_channels': 'in_channels (int): Channels of the input images. Defaults to 3.',
    'out_indices': 'out_indices (Sequence[int] | int): The stages whose output maps ``forward`` returns, in '
                   'increasing order. Defaults to (0, 1, 2, 3).',
    'frozen_stages': 'frozen_stages (int): -1 freezes nothing; k >= 0 freezes (no gradients, eval mode) the stem '
                     '(patch embedding and absolute position embedding) and the first k stages with their output '
                     'norms. Defaults to -1.',
    'with_cp': 'with_cp (bool): Activation checkpointing of every block: its activations are recomputed in '
               'backward instead of kept. Defaults to False.',
    'impl': "impl (str): 'fast' runs the fast kernels of :mod:`swin_backbones.models.ops` where they apply, "
            "'plain' the textbook operations (a reference). Defaults to 'fast'.",
    'save_memory': 'save_memory (bool): In training, keep less for backward: attention probabilities and MLP '
                   "activations are recomputed (impl='fast' only). Defaults to False.",
    'kernels': "kernels (dict, optional): Overrides of the fast path's kernel rules, e.g. ``dict(linear='aten')``; "
               'an override the device or dtype cannot run is an error. Defaults to None.',
    'pretrained': "pretrained (str, optional): Deprecated, as in mmdet: a checkpoint path, the same as "
                  "``init_cfg=dict(type='Pretrained', checkpoint=path)``. Defaults to None.",
    'init_cfg': "init_cfg (dict | list[dict], optional): mmengine's initialisation config; "
                "``dict(type='Pretrained', checkpoint=path)`` loads a checkpoint in any layout the backbone reads "
                '(``prefix``, ``map_location`` and ``weights_only`` keys are taken too). Defaults to None.',
    'check_finite': 'check_finite (bool): Every forward rejects NaN or inf inputs (it costs a pass over the '
                    'input). Defaults to False.',
    'allow_partial_loading': 'allow_partial_loading (bool): A checkpoint that leaves weights unloaded is '
                             'loaded with a warning instead of raising CheckpointMismatchError. Defaults to False.',
}


def _with_common_arguments(doc: Optional[str], documented_by_class: str) -> str:
    """A backbone's class docstring with the Args entries of the common arguments it does not document."""
    lines = (doc or '').rstrip().splitlines()
    indent = next((line[:len(line) - len(line.lstrip())] for line in lines if line.strip().startswith('Args:')), '    ')
    entries = [text for name, text in COMMON_ARGUMENTS_DOC.items()
               if not re.search(rf'^\s*{name} \(', documented_by_class, re.MULTILINE)]
    if not any(line.strip() == 'Args:' for line in lines):
        lines += ['', indent + 'Args:']
    for entry in entries:
        lines += textwrap.wrap(entry, 110, initial_indent=indent + '    ', subsequent_indent=indent + '        ')
    return '\n'.join(lines) + '\n'


class StageSpec(NamedTuple):
    """What a backbone's ``make_stage`` builds stage ``index`` from (see :meth:`PyramidBackbone._build_stages`)."""
    index: int
    dim: int  # embed_dims * 2 ** index
    depth: int
    num_heads: int
    drop_path: List[float]  # one rate per block
    merge_stride: Optional[int]  # the stride of the merging that ends the stage; None for the last stage


class PyramidBackbone(BaseModule):
    """Base of a backbone that returns a tuple of NCHW maps, by default at strides 4, 8, 16 and 32.

    A subclass's constructor resolves its arch (:func:`resolve_arch`), calls ``super().__init__`` with the
    structure and the arguments every backbone takes (``**common``), builds ``self.patch_embed``
    (B, in, H, W) -> (B, H/4, W/4, C), then calls :meth:`_build_stages` with a function that builds one stage;
    a stage maps (B, H, W, C) to its output map and, when it merges, the next stage's input. The forward is
    shared: :meth:`embed`, dropout, the stages, the output norms ``norm{i}`` (where ``output_norms``).

    Class attributes: ``presets`` ({name for create_backbone: arch}), ``output_norms``.
    Attributes for users: ``feature_info`` (per output: channels, stride, module), ``fast_path``.

    ``load_state_dict`` (torch's and mmengine's alike) accepts every checkpoint layout the backbone reads,
    under any prefix, and refuses to leave any weight unloaded unless ``allow_partial_loading`` is set:
    see :mod:`swin_backbones.loading`.

    Args:
        arch (str, optional): The named structure, or None for explicit values.
        embed_dims (int): Channels of the first stage; stage i has ``embed_dims * 2 ** i``.
        depths (Sequence[int]): Blocks per stage.
        num_heads (Sequence[int]): Attention heads per stage.
    """
    presets: Dict[str, str] = {}
    output_norms = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__doc__ = _with_common_arguments(cls.__doc__, cls.__doc__ or '')

    def __init__(self, *, arch: Optional[str], embed_dims: int, depths: Sequence[int], num_heads: Sequence[int],
                 in_channels: int = 3, out_indices: Sequence[int] = (0, 1, 2, 3), frozen_stages: int = -1,
                 with_cp: bool = False, impl: str = 'fast', save_memory: bool = False,
                 kernels: Optional[Dict[str, str]] = None, pretrained: Optional[str] = None, init_cfg=None,
                 check_finite: bool = False, allow_partial_loading: bool = False, **unknown):
        if unknown:
            raise ConfigError(f'{type(self).__name__} does not take the argument(s) {sorted(unknown)}; it takes '
                              f'{", ".join(type(self).argument_names())}')
        if init_cfg is not None and pretrained is not None:
            raise ConfigError('init_cfg and pretrained cannot be specified at the same time')
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError(f'pretrained must be a str (checkpoint path) or None, got {type(pretrained).__name__}')
            warnings.warn('pretrained is deprecated, use init_cfg=dict(type="Pretrained", checkpoint=...)',
                          DeprecationWarning)
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=copy.deepcopy(init_cfg))
        depths, num_heads = tuple(depths), tuple(num_heads)
        if len(num_heads) != len(depths):
            raise ConfigError(f'depths and num_heads must have one entry per stage, got {depths} and {num_heads}')
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
            raise ConfigError(f'in_channels must be a positive int, got {in_channels!r}')
        self.arch = arch
        self.in_channels = in_channels
        self.num_stages = len(depths)
        self.out_indices = _check_out_indices(out_indices, self.num_stages)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= self.num_stages:
            raise ConfigError(f'frozen_stages must be an int in [-1, {self.num_stages}] (-1 freezes nothing, '
                              f'0 the stem, k the stem and the first k stages), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.with_cp = bool(with_cp)
        self.check_finite = check_finite
        self.allow_partial_loading = bool(allow_partial_loading)
        self.register_load_state_dict_pre_hook(convert_on_load)
        self.fast_path = FastPath.from_arguments(impl, save_memory, kernels)
        self.embed_dims = embed_dims
        self.depths = depths
        self.num_heads = num_heads
        self.num_features = [embed_dims * 2 ** i for i in range(self.num_stages)]
        for dim, heads in zip(self.num_features, self.num_heads):
            if dim % heads:
                raise ConfigError(f'stage width {dim} is not divisible by its num_heads {heads}')

    @classmethod
    def argument_names(cls) -> List[str]:
        """Every constructor argument of the backbone: its own, then the common ones."""
        own = [name for name, param in inspect.signature(cls.__init__).parameters.items()
               if name != 'self' and param.kind is not param.VAR_KEYWORD]
        common = [name for name, param in inspect.signature(PyramidBackbone.__init__).parameters.items()
                  if param.kind is param.KEYWORD_ONLY and name not in _STRUCTURE_SETTINGS + ('arch',)]
        return own + [name for name in common if name not in own]

    def _build_stages(self, make_stage: Callable[[StageSpec], nn.Module], drop_rate: float, drop_path_rate: float,
                      norm_cfg: dict, strides: Sequence[int] = (4, 2, 2, 2)) -> None:
        """``drop_after_pos``, ``stages`` (stage i built by ``make_stage``, the drop path rate rising linearly
        from 0 at the first block to ``drop_path_rate`` at the last), the output norms, ``feature_info``, then
        activation checkpointing and frozen stages. ``strides``: the patch embedding's, then each merging's."""
        self.drop_after_pos = nn.Dropout(drop_rate)
        rates = torch.linspace(0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            merge_stride = strides[i + 1] if i < self.num_stages - 1 else None
            self.stages.append(make_stage(StageSpec(i, self.num_features[i], depth, self.num_heads[i],
                                                    rates[first:first + depth], merge_stride)))
        if self.output_norms:
            for i in self.out_indices:
                self.add_module(f'norm{i}', build_norm(norm_cfg, self.num_features[i]))
        reductions = [math.prod(strides[:i + 1]) for i in range(self.num_stages)]
        self.feature_info = [dict(num_chs=self.num_features[i], reduction=reductions[i], module=f'stages.{i}')
                             for i in self.out_indices]
        for module in self.modules():
            if isinstance(module, CheckpointedBlock):
                module.with_cp = self.with_cp
        self._freeze_stages()

    @property
    def out_strides(self) -> List[int]:
        """The stride of each output map, e.g. [4, 8, 16, 32]."""
        return [info['reduction'] for info in self.feature_info]

    def minimum_input_size(self) -> int:
        """Smallest H and W for which a graph traced at a larger size (ONNX export) computes what the model
        computes: 1, unless the backbone decides its layout by the input size."""
        return 1

    def extra_repr(self) -> str:
        param = next(self.parameters(), None)
        kernels = self.fast_path.describe(param.device, param.dtype) if param is not None else ''
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
        for i, stage in enumerate(self.stages):
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
    def frozen_modules(self) -> List[nn.Module]:
        """The modules (and parameters of the backbone itself) that ``frozen_stages`` freezes, counted as mmdet's
        Swin counts: for k >= 0 the stem (the patch embedding, its dropout and the backbone's own parameters,
        such as an absolute position embedding), then stages 0 .. k-1 with their output norms."""
        if self.frozen_stages < 0:
            return []
        frozen = [self.patch_embed, self.drop_after_pos, *(p for p in self._parameters.values() if p is not None)]
        for index in range(self.frozen_stages):
            frozen += [self.stages[index], *self._output_norm(index)]
        return frozen

    def _output_norm(self, index: int) -> List[nn.Module]:
        norm = getattr(self, f'norm{index}', None)
        return [norm] if norm is not None else []

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
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
            raise ConfigError(f'at most one Pretrained init_cfg is allowed, got {len(pretrained)}')
        if pretrained:
            cfg = pretrained[0]
            unknown = set(cfg) - _PRETRAINED_KEYS
            if unknown:
                raise ConfigError(f'unknown keys in the Pretrained init_cfg: {sorted(unknown)}; '
                                 f'allowed: {sorted(_PRETRAINED_KEYS)}')
            if 'checkpoint' not in cfg:
                raise ConfigError("the Pretrained init_cfg needs a 'checkpoint' path")
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
        raise ConfigError(f'unknown {family} arch {arch!r}; choose one of {sorted(table)}')
    settings = dict(table[arch or default_arch])
    for name, value in explicit.items():
        if value is None:
            continue
        value = tuple(value) if isinstance(value, (list, tuple)) else value
        if arch is not None and name in _STRUCTURE_SETTINGS and value != settings[name]:
            raise ConfigError(f"arch={arch!r} sets {name}={settings[name]}, which conflicts with {name}={value}; "
                             'give either arch or the explicit setting')
        settings[name] = value
    return settings


def per_stage(name: str, value, num_stages: int, minimum: int = 1) -> Tuple[int, ...]:
    """``value`` (an int, or one per stage) as one int per stage, each at least ``minimum``."""
    values = (value,) * num_stages if isinstance(value, int) else tuple(value)
    if len(values) != num_stages or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        kind = 'positive int' if minimum == 1 else f'int >= {minimum}'
        raise ConfigError(f'{name} must be a {kind} or one {kind} per stage ({num_stages}), got {value!r}')
    return values


def _check_out_indices(out_indices: Sequence[int], num_stages: int) -> Tuple[int, ...]:
    if isinstance(out_indices, int):
        out_indices = (out_indices,)
    out_indices = tuple(out_indices)
    if (not out_indices or len(set(out_indices)) != len(out_indices)
            or any(not isinstance(i, int) or not 0 <= i < num_stages for i in out_indices)):
        raise ConfigError(f'out_indices must be distinct stage indices in [0, {num_stages - 1}], got {out_indices!r}')
    return tuple(sorted(out_indices))
