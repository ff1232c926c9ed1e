# Imported in the order the backbones are listed (create_backbone's names, the benchmark's models).
from ..registry import registered_backbones
from .base import PyramidBackbone
from .swin import SwinTransformer  # noqa: I001
from .swinv2 import SwinTransformerV2
from .crossformer import CrossFormer

__all__ = ['PyramidBackbone', 'registered_backbones', 'SwinTransformer', 'SwinTransformerV2', 'CrossFormer']
