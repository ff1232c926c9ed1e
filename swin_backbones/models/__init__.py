from .crossformer import CrossFormer
from .swin import SwinTransformer
from .swinv2 import SwinTransformerV2

# Every backbone of the package, for tools that must recognise a checkpoint's architecture.
BACKBONES = (SwinTransformer, SwinTransformerV2, CrossFormer)

__all__ = ['BACKBONES', 'SwinTransformer', 'SwinTransformerV2', 'CrossFormer']
