"""Configs reach the backbones through mmdet's and mmseg's registries, importing the package via custom_imports."""
import json
import subprocess
import sys
import textwrap

import pytest

DETECTOR_CONFIG = """
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)
model = dict(
    backbone=dict(_delete_=True, type='swin_backbones.SwinTransformer', arch='tiny', out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[96, 192, 384, 768]))
"""

SEGMENTOR_CONFIG = """
_base_ = 'mmseg::_base_/models/upernet_swin.py'
custom_imports = dict(imports=['swin_backbones'], allow_failed_imports=False)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(64, 64)),
    backbone=dict(_delete_=True, type='swin_backbones.SwinTransformer', arch='tiny'),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=5, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=384, num_classes=5, norm_cfg=norm_cfg))
"""

# Runs in a fresh interpreter so that only the config's custom_imports can import swin_backbones.
BUILD_AND_RUN = """
import json, sys, torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
assert 'swin_backbones' not in sys.modules
cfg = Config.fromfile(sys.argv[1])
assert 'swin_backbones' in sys.modules
scope = sys.argv[2]
init_default_scope(scope)
MODELS = __import__(scope + '.registry', fromlist=['MODELS']).MODELS
backbone = MODELS.build(cfg.model.backbone)
model = MODELS.build(cfg.model).eval()
with torch.no_grad():
    feats = model.extract_feat(torch.randn(1, 3, 64, 96))
print(json.dumps(dict(backbone=type(backbone).__module__ + '.' + type(backbone).__name__,
                      model_backbone=type(model.backbone).__module__,
                      scope=DefaultScope.get_current_instance().scope_name,
                      shapes=[list(f.shape) for f in feats])))
"""


@pytest.mark.parametrize('scope, config, expected_shapes', [
    ('mmdet', DETECTOR_CONFIG, [[1, 256, 16, 24], [1, 256, 8, 12], [1, 256, 4, 6], [1, 256, 2, 3], [1, 256, 1, 2]]),
    ('mmseg', SEGMENTOR_CONFIG, [[1, 96, 16, 24], [1, 192, 8, 12], [1, 384, 4, 6], [1, 768, 2, 3]]),
])
def test_config_builds_through_downstream_registry(tmp_path, scope, config, expected_shapes):
    config_path = tmp_path / 'config.py'
    config_path.write_text(textwrap.dedent(config))
    result = subprocess.run([sys.executable, '-c', BUILD_AND_RUN, str(config_path), scope],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report['backbone'] == 'swin_backbones.models.swin.SwinTransformer'
    assert report['model_backbone'] == 'swin_backbones.models.swin'
    assert report['scope'] == scope
    assert report['shapes'] == expected_shapes


def test_package_registry_is_a_child_of_mmengine_root():
    from mmengine.registry import MODELS as ROOT

    from swin_backbones import MODELS, SwinTransformer
    assert MODELS.scope == 'swin_backbones'
    assert MODELS.parent is ROOT
    assert ROOT.children['swin_backbones'] is MODELS
    assert isinstance(MODELS.build(dict(type='SwinTransformer', arch='tiny')), SwinTransformer)
    assert isinstance(ROOT.build(dict(type='swin_backbones.SwinTransformer', arch='tiny')), SwinTransformer)
