"""The package's model registry: a child of mmengine's root MODELS registry with scope ``swin_backbones``.

mmdet's and mmseg's registries are children of the same root, so a config that imports this package
(``custom_imports=dict(imports=['swin_backbones'], allow_failed_imports=False)``) can build
``dict(type='swin_backbones.SwinTransformer', ...)`` from either of them.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='swin_backbones', locations=['swin_backbones.models'])
