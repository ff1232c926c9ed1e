"""The package's model registry: a child of mmengine's root MODELS registry with scope ``swin_backbones``.

mmdet's and mmseg's registries are children of the same root, so a config that imports this package
(``custom_imports=dict(imports=['swin_backbones'], allow_failed_imports=False)``) can build
``dict(type='swin_backbones.SwinTransformer', ...)`` from either of them.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='swin_backbones', locations=['swin_backbones.models'])


def registered_backbones() -> list:
    """The package's backbones, in the order they were registered: the registered classes with ``presets``
    (every ``PyramidBackbone`` has them; anything else a user registers here is not a backbone of the package)."""
    return [cls for cls in MODELS.module_dict.values() if isinstance(getattr(cls, 'presets', None), dict)]


def build_backbone_from_cfg(cfg: dict):
    """``MODELS.build(cfg)`` with this package's class of the name in ``cfg['type']`` (bare or scoped), whatever
    default scope is set: a bare name is looked up in the default scope's registry first, and mmdet's and
    mmseg's have a SwinTransformer of their own (any DetInferencer, MMSegInferencer, runner or
    ``register_all_modules()`` sets their scope)."""
    cfg = dict(cfg)
    cfg['type'] = f"{MODELS.scope}.{str(cfg['type']).rsplit('.', 1)[-1]}"
    return MODELS.build(cfg)
