from .swin import SwinTransformer

# Every backbone of the package, for tools that must recognise a checkpoint's architecture.
BACKBONES = (SwinTransformer,)

__all__ = ['BACKBONES', 'SwinTransformer']
