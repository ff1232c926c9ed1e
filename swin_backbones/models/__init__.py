from .crossformer import CrossFormer
from .swin import SwinTransformer

# Every backbone of the package, for tools that must recognise a checkpoint's architecture.
BACKBONES = (SwinTransformer, CrossFormer)

__all__ = ['BACKBONES', 'SwinTransformer', 'CrossFormer']
