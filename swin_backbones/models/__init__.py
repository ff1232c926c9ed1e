"""The backbones: importing this package imports each of its modules, and every model file registers its
backbone class in the package's registry. Adding a backbone is adding its model file."""
import importlib
import pkgutil

from .base import PyramidBackbone

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

__all__ = ['PyramidBackbone']
