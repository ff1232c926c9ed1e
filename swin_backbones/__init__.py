"""Swin Transformer (V1 and V2) and CrossFormer backbones for mmdet 3.x and mmsegmentation 1.x.

Importing the package registers the backbones in mmengine's registry and makes mmengine read local
checkpoints without running code from them (:func:`use_safe_checkpoint_loading`), which lets mmengine
0.10 resume and test from its own checkpoints on torch >= 2.6. Set the environment variable
``SWIN_BACKBONES_SAFE_LOADING=0`` before the import, or call ``use_safe_checkpoint_loading(False)``, to
leave mmengine's own loader in place.
"""
from . import models
from .api import create_backbone, extract_features, list_backbones
from .checkpoint import (CheckpointError, CheckpointMismatchError, safe_checkpoint_loading_enabled,
                         safe_loading_requested, use_safe_checkpoint_loading)
from .convert import convert_checkpoint
from .deployment import DeployError, deploy
from .errors import ConfigError
from .export import ExportError, check_onnx, export_onnx
from .flops import Complexity, count_flops
from .paths import config_path, list_configs, tool_path
from .registry import MODELS, registered_backbones
from .version import __version__  # noqa: F401

# The backbone classes, each under its name (swin_backbones.SwinTransformer, ...): whatever the registry holds.
_BACKBONES = {backbone.__name__: backbone for backbone in registered_backbones()}
globals().update(_BACKBONES)

__all__ = [*_BACKBONES, 'PyramidBackbone', 'MODELS', 'ConfigError', 'CheckpointError', 'CheckpointMismatchError',
           'convert_checkpoint', 'create_backbone', 'extract_features', 'list_backbones', 'export_onnx', 'check_onnx',
           'ExportError', 'deploy', 'DeployError', 'count_flops', 'Complexity', 'config_path', 'list_configs',
           'tool_path', 'use_safe_checkpoint_loading', 'safe_checkpoint_loading_enabled']
PyramidBackbone = models.PyramidBackbone

if safe_loading_requested():
    use_safe_checkpoint_loading()
