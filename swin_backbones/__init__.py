"""Swin Transformer (V1 and V2) and CrossFormer backbones for mmdet 3.x and mmsegmentation 1.x."""
from .api import create_backbone, extract_features, list_backbones
from .checkpoint import CheckpointError, CheckpointMismatchError
from .models import CrossFormer, SwinTransformer, SwinTransformerV2
from .convert import convert_checkpoint
from .registry import MODELS

__version__ = '0.1.0'
__all__ = ['MODELS', 'SwinTransformer', 'SwinTransformerV2', 'CrossFormer', 'convert_checkpoint', 'CheckpointError',
           'CheckpointMismatchError', 'create_backbone', 'extract_features', 'list_backbones']
