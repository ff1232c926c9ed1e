"""Parameters and multiply-accumulates ("FLOPs", as the Swin and CrossFormer papers call them) of a detector,
a segmentor or a backbone at a given input size, from its config alone: no data set, no checkpoint.

    result = count_flops('mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco')          # a config name, path, Config or dict
    print(result.params / 1e6, result.flops / 1e9)                      # 47.8 (M), ~270 (G) at 1280 x 800
    count_flops(model, shape=(512, 2048))                               # or a model built with impl='plain'

The counting follows what the papers' numbers were made with. The authors' ``get_flops.py`` ran mmcv 1.x's
``get_model_complexity_info`` on one image through the model's dummy forward; that counter adds, for every
call of a layer whose type is exactly one of these (subclasses such as SyncBatchNorm count nothing):

* ``Conv1d/2d/3d``: output positions x kernel volume x in x out / groups, plus out x positions with a bias;
* ``ConvTranspose2d``: *input* positions x kernel area x in x out / groups, plus out x output positions with
  a bias;
* ``Linear``: input elements x out features (the bias counts nothing);
* ``BatchNorm1d/2d/3d``, ``GroupNorm``, ``InstanceNorm1d/2d/3d``, ``LayerNorm``: input elements, twice with
  an affine transform;
* ``ReLU``, ``PReLU``, ``ELU``, ``LeakyReLU``, ``ReLU6``: output elements;
* max and average pooling, adaptive too: input elements;
* ``Upsample``: output elements;

and nothing for everything else: GELU, softmax, ``F.interpolate``, RoIAlign, and the matrix products of
attention. The CrossFormer authors added those products (q @ k^T and attn @ v: N x N x C multiply-accumulates
each for a group of N tokens of C channels) from their backbone's ``flops()``; here they are counted for
every attention module of this package from the token groups it attends, so the count is the same whichever
kernel would compute them (:attr:`Complexity.attention_flops` gives that part).

The dummy forward is the one of mmdet 2 and mmseg 0.x, run on mmdet 3 / mmseg 1 models: a detector runs its
backbone and neck, its RPN head's convolutions, and its RoI heads on 1000 proposals (the mask heads on the
first 100; a cascade runs every stage on the same boxes); a single-stage detector runs its head on the
features; a segmentor runs its decode head (not the auxiliary head) on the whole image. Parameters are all
the model's parameters, the auxiliary head's included.
"""
import copy
import math
import os.path as osp
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

from .models.base import PyramidBackbone
from .models.layers import MultiHeadGroupAttention
from .paths import config_path

__all__ = ['Complexity', 'count_flops', 'build_for_counting', 'default_shape', 'DETECTION_SHAPE',
           'SEGMENTATION_SHAPE', 'BACKBONE_SHAPE', 'NUM_PROPOSALS', 'NUM_MASK_ROIS']

# Input sizes (height, width) of the published numbers: the authors' detection get_flops.py feeds a
# (1, 3, 1280, 800) image; the segmentation numbers are for 2048 x 512 images (512 rows of 2048 pixels).
DETECTION_SHAPE = (1280, 800)
SEGMENTATION_SHAPE = (512, 2048)
BACKBONE_SHAPE = (224, 224)
# mmdet 2's forward_dummy: 1000 proposals for the box heads, the first 100 of them for the mask heads.
NUM_PROPOSALS = 1000
NUM_MASK_ROIS = 100


@dataclass(frozen=True)
class Complexity:
    """What :func:`count_flops` counted for one image of ``shape`` (height, width)."""
    params: int
    flops: int  # multiply-accumulates, attention products included
    attention_flops: int  # the q @ k^T and attn @ v products alone
    shape: Tuple[int, int]
    parts: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # top-level module -> (params, flops)

    def summary(self) -> str:
        return f'params {self.params / 1e6:.3f}M  FLOPs {self.flops / 1e9:.1f}G'


# ------------------------------------------------------------------------------------------- the rules
def _conv(module, x, output) -> int:
    positions = x.shape[0] * math.prod(output.shape[2:])
    macs = positions * math.prod(module.kernel_size) * module.in_channels * (module.out_channels // module.groups)
    return macs + (module.out_channels * positions if module.bias is not None else 0)


def _transposed_conv(module, x, output) -> int:
    macs = (x.shape[0] * math.prod(x.shape[2:]) * math.prod(module.kernel_size) * module.in_channels
            * (module.out_channels // module.groups))
    bias = module.out_channels * output.shape[0] * math.prod(output.shape[2:]) if module.bias is not None else 0
    return macs + bias


def _linear(module, x, output) -> int:
    return x.numel() * output.shape[-1]


def _norm(module, x, output) -> int:
    affine = getattr(module, 'affine', False) or getattr(module, 'elementwise_affine', False)
    return x.numel() * (2 if affine else 1)


def _output_elements(module, x, output) -> int:
    return output.numel()


def _input_elements(module, x, output) -> int:
    return x.numel()


def _rules() -> Dict[type, Callable]:
    """Layer type -> its count, for exactly these types (mmcv 1.x's list, with mmcv's wrappers of them)."""
    rules = {nn.Conv1d: _conv, nn.Conv2d: _conv, nn.Conv3d: _conv, nn.ConvTranspose2d: _transposed_conv,
             nn.Linear: _linear, nn.Upsample: _output_elements}
    rules.update(dict.fromkeys((nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6), _output_elements))
    rules.update(dict.fromkeys((nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                                nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
                                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d), _input_elements))
    rules.update(dict.fromkeys((nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.InstanceNorm1d,
                                nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm), _norm))
    wrappers = sys.modules.get('mmcv.cnn.bricks.wrappers')  # imported by mmdet and mmseg; absent without them
    if wrappers is not None:
        rules.update({wrappers.Conv2d: _conv, wrappers.Conv3d: _conv, wrappers.ConvTranspose2d: _transposed_conv,
                      wrappers.Linear: _linear, wrappers.MaxPool2d: _input_elements,
                      wrappers.MaxPool3d: _input_elements})
    return rules


class _Counter:
    """Forward hooks that apply the rules to one forward of ``model``, and the attention products."""

    def __init__(self, model: nn.Module):
        self.flops = defaultdict(int)  # module name -> multiply-accumulates
        self.attention = defaultdict(int)
        self.called = set()
        self._handles = []
        self._wrapped = []
        rules = _rules()
        attention = {name: module for name, module in model.named_modules()
                     if isinstance(module, MultiHeadGroupAttention)}
        # The attention modules' qkv projection is counted with the products from the groups they attend:
        # Swin V2 applies its weight with the q and v biases directly, not through the module.
        owned = {id(module.qkv) for module in attention.values()}
        for name, module in model.named_modules():
            rule = rules.get(type(module))
            if rule is not None and id(module) not in owned:
                self._handles.append(module.register_forward_hook(self._hook(name, rule), with_kwargs=True))
        for name, module in attention.items():
            self._count_attention(name, module)

    def _hook(self, name: str, rule: Callable):
        def hook(module, args, kwargs, output):
            x = args[0] if args else next(iter(kwargs.values()))
            self.flops[name] += rule(module, x, output)
            self.called.add(name)
        return hook

    def _count_attention(self, name: str, module: MultiHeadGroupAttention) -> None:
        """Counts qkv and the products of every call of ``module.attend_groups`` from its (groups, N, C) input,
        and returns zeros of the output's shape instead of computing it: nothing downstream depends on the
        values, and the products of long groups (CrossFormer's 1024-token LDA groups) are the slowest and most
        memory-hungry part of a forward on a CPU."""
        def attend_groups(x, *args, **kwargs):
            groups, length, channels = x.shape
            self.flops[f'{name}.qkv'] += x.numel() * module.qkv.out_features
            self.attention[name] += 2 * x.numel() * length
            self.called.add(f'{name}.qkv')
            return x.new_zeros(groups, length, channels)
        module.attend_groups = attend_groups  # an instance attribute: shadows the method until removed
        self._wrapped.append(module)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        for module in self._wrapped:
            del module.attend_groups


# ------------------------------------------------------------------------------------- dummy forwards
def _instance_of(obj, module_name: str, class_name: str) -> bool:
    """isinstance against a class of a package that may not be installed (then obj cannot be one)."""
    module = sys.modules.get(module_name)
    return module is not None and isinstance(obj, getattr(module, class_name))


def _is_detector(model) -> bool:
    return _instance_of(model, 'mmdet.models.detectors', 'BaseDetector')


def _is_segmentor(model) -> bool:
    return _instance_of(model, 'mmseg.models.segmentors', 'BaseSegmentor')


def default_shape(model: nn.Module) -> Tuple[int, int]:
    """The input size (height, width) of the published numbers for this kind of model."""
    if _is_detector(model):
        return DETECTION_SHAPE
    if _is_segmentor(model):
        return SEGMENTATION_SHAPE
    return BACKBONE_SHAPE


def _proposals(height: int, width: int, device) -> torch.Tensor:
    """NUM_PROPOSALS boxes (x1, y1, x2, y2) inside the image; their values do not change any count."""
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(NUM_PROPOSALS, 2, 2, generator=generator) * torch.tensor([width, height])
    return torch.cat((corners.min(1).values, corners.max(1).values), dim=1).to(device)


def _detector_forward(model, image: torch.Tensor) -> None:
    """mmdet 2's ``forward_dummy`` on an mmdet 3 detector."""
    from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
    from mmdet.models.roi_heads import CascadeRoIHead, StandardRoIHead
    from mmdet.structures.bbox import bbox2roi
    features = model.extract_feat(image)
    if isinstance(model, SingleStageDetector):
        model.bbox_head(features)
        return
    if not isinstance(model, TwoStageDetector):
        raise ValueError(f'count_flops runs single-stage and two-stage detectors, not {type(model).__name__}')
    if model.with_rpn:
        model.rpn_head(features)
    rois = bbox2roi([_proposals(*image.shape[2:], image.device)])
    head = model.roi_head
    if isinstance(head, CascadeRoIHead):  # every stage on the same boxes, as mmdet 2's forward_dummy
        box_forwards = [partial(head._bbox_forward, stage) for stage in range(head.num_stages)]
        mask_forwards = [partial(head._mask_forward, stage) for stage in range(head.num_stages)]
    elif isinstance(head, StandardRoIHead):
        box_forwards, mask_forwards = [head._bbox_forward], [head._mask_forward]
    else:
        raise ValueError(f'count_flops runs the standard and cascade RoI heads, not {type(head).__name__}')
    if head.with_bbox:
        for forward in box_forwards:
            forward(features, rois)
    if head.with_mask:
        for forward in mask_forwards:
            forward(features, rois[:NUM_MASK_ROIS])


def _dummy_forward(model: nn.Module, image: torch.Tensor) -> None:
    if _is_detector(model):
        _detector_forward(model, image)
    elif _is_segmentor(model):
        model._forward(image)  # the decode head on the backbone's (and neck's) features, as mmseg 0.x's
    else:
        model(image)


# --------------------------------------------------------------------------------------- counting
def count_flops(model_or_config, shape: Optional[Union[int, Sequence[int]]] = None,
                cfg_options: Optional[dict] = None) -> Complexity:
    """Parameters and multiply-accumulates of one (3, H, W) image through a model (see the module doc).

    Args:
        model_or_config: a config (a path, a config name that :func:`swin_backbones.config_path` finds, an
            mmengine ``Config`` or a dict with ``model``), or an ``nn.Module``: an mmdet 3 detector, an mmseg 1
            segmentor, or anything called on an image tensor, such as a backbone. A config's backbones of this
            package are built with ``impl='plain'``; a model given directly must use it too (the fast paths
            apply the layers' weights directly, out of the counting hooks' sight).
        shape: (height, width), or one int for a square; default :func:`default_shape`.
        cfg_options: overrides merged into a config, as ``--cfg-options`` does.
    """
    if isinstance(model_or_config, nn.Module):
        if cfg_options:
            raise ValueError('cfg_options apply to a config, not to a model')
        model = model_or_config
    else:
        model = build_for_counting(model_or_config, cfg_options)
    height, width = _shape_pair(default_shape(model) if shape is None else shape)
    fast = [name or type(module).__name__ for name, module in model.named_modules()
            if isinstance(module, PyramidBackbone) and module.fast_path.enabled]
    if fast:
        raise ValueError(f"count_flops needs this package's backbones built with impl='plain', got impl='fast' in "
                         f"{', '.join(fast)}: its fused paths use the layers' weights without calling the layers, "
                         'which the counting cannot see. Pass the config (it is built plain) or build with '
                         "impl='plain'")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device('cpu')
    dtype = parameter.dtype if parameter is not None else torch.float32
    image = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device, dtype)

    was_training = model.training
    counter = _Counter(model)
    try:
        model.eval()
        with torch.no_grad():
            _dummy_forward(model, image)
    finally:
        counter.remove()
        model.train(was_training)
    _check_backbones_counted(model, counter.called)

    flops = defaultdict(int)
    for name, count in list(counter.flops.items()) + list(counter.attention.items()):
        flops[name.split('.')[0]] += count
    parts = {name: (sum(p.numel() for p in child.parameters()), flops.get(name, 0))
             for name, child in model.named_children()}
    return Complexity(params=sum(p.numel() for p in model.parameters()),
                      flops=sum(counter.flops.values()) + sum(counter.attention.values()),
                      attention_flops=sum(counter.attention.values()), shape=(height, width), parts=parts)


def _shape_pair(shape) -> Tuple[int, int]:
    pair = (shape, shape) if isinstance(shape, int) else tuple(shape)
    if len(pair) != 2 or not all(isinstance(side, int) and side > 0 for side in pair):
        raise ValueError(f'shape must be (height, width) or one int, positive, got {shape!r}')
    return pair


def _check_backbones_counted(model: nn.Module, called: set) -> None:
    """Every counted layer of this package's backbones runs in a forward: one that did not, ran out of sight."""
    rules = _rules()
    for prefix, backbone in model.named_modules():
        if not isinstance(backbone, PyramidBackbone):
            continue
        unseen = [name for name, module in backbone.named_modules(prefix=prefix)
                  if type(module) in rules and name not in called]
        if unseen:
            raise RuntimeError(f'layers of {type(backbone).__name__} ran without being counted: '
                               f'{", ".join(unseen[:5])}{" ..." if len(unseen) > 5 else ""}')


def build_for_counting(config, cfg_options: Optional[dict] = None) -> nn.Module:
    """The model of a config (path, name, ``Config`` or dict), with this package's backbones built with
    ``impl='plain'``, and without loading any checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    if isinstance(config, str):
        if not osp.isfile(config):
            config = config_path(config)
        cfg = Config.fromfile(config)
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    elif isinstance(config, dict):
        cfg = Config(copy.deepcopy(config))
    else:
        raise TypeError(f'expected a config (path, name, Config or dict) or an nn.Module, got {type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise ValueError('the config has no model')
    _plain_backbones(cfg.model)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return MODELS.build(cfg.model)


def _plain_backbones(node) -> None:
    """Sets ``impl='plain'`` on every model dict of this package's backbone types inside ``node``."""
    if isinstance(node, dict):
        model_type = node.get('type')
        if isinstance(model_type, str) and model_type.startswith('swin_backbones.') or (
                isinstance(model_type, type) and issubclass(model_type, PyramidBackbone)):
            node['impl'] = 'plain'
        for value in node.values():
            _plain_backbones(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _plain_backbones(value)
