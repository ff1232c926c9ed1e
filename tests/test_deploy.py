"""Deploying whole detectors and segmentors to ONNX Runtime (swin_backbones.deploy, swin-backbones-deploy).

Quick: the comparison rules, each of this package's rewrites of mmdeploy on its own (registered only while a
deployment runs), and the bad inputs, which fail before an export. Slow: every config family with every
backbone, exported with dynamic shapes and checked against PyTorch at two other sizes and a batch of two;
two published configs at a small size; the command line; mmdeploy's own inference on the written files;
and checks that fail when the graph's output names are swapped or its dynamic axes dropped.

The weights are random with a fixed seed, drawn so that what the comparison relies on holds as in a
trained model (benchmarks.deploy_benchmark.trained_like_weights_). Skipped, saying why, without the deploy
extra (mmdeploy, onnxruntime).
"""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from benchmarks.deploy_benchmark import trained_like_weights_
from swin_backbones.deployment import DeployError
from swin_backbones.deployment.check import (BOX_TOLERANCE, MASK_IOU, SCORE_MARGIN, CheckResult,
                                             compare_detections, compare_segmentations)

from .helpers import REPO, build, config_path

MISSING = [name for name in ('mmdeploy', 'onnxruntime', 'onnx', 'aenum') if importlib.util.find_spec(name) is None]
needs_deploy_extra = pytest.mark.skipif(
    bool(MISSING), reason=f'the deploy extra is not installed ({", ".join(MISSING)} missing): '
                          'bash tools/install.sh --with deploy')

FAMILIES = {
    'mask-rcnn': 'toy/mask-rcnn_swin-toy_fpn_toy-coco.py',
    'cascade-mask-rcnn': 'toy/cascade-mask-rcnn_swin-toy_fpn_4conv1f-giou_toy-coco.py',
    'retinanet': 'toy/retinanet_crossformer-toy_fpn_toy-coco.py',
    'upernet': 'toy/upernet_swin-toy_toy-ade.py',
    'semantic-fpn': 'toy/fpn_crossformer-toy_toy-ade.py',
}
# The toy backbones (32..256 channels, so every family's neck fits each): (config with it, overrides).
BACKBONES = {
    'swin': ('toy/mask-rcnn_swin-toy_fpn_toy-coco.py', {}),
    'swinv2': ('toy/mask-rcnn_swinv2-toy_fpn_toy-coco.py', {}),
    'crossformer': ('toy/mask-rcnn_crossformer-toy_fpn_toy-coco.py', {}),
    'crossformer-pp': ('toy/mask-rcnn_crossformer-toy_fpn_toy-coco.py', dict(lda_type='pp', use_acl=True)),
}
# CrossFormer's graph is valid from 225 px a side (a group of 7 at stride 32); the toy test scale is 128.
CROSSFORMER_TEST_SCALE = {'test_pipeline.1.scale': (320, 320)}


def toy_config(family: str, backbone: str) -> Config:
    cfg = Config.fromfile(config_path(FAMILIES[family]))
    source, overrides = BACKBONES[backbone]
    cfg.model.backbone = dict(Config.fromfile(config_path(source)).model.backbone, **overrides)
    if backbone.startswith('crossformer'):
        cfg.merge_from_dict(CROSSFORMER_TEST_SCALE)
    return cfg


def save_seeded_checkpoint(cfg: Config, path, seed: int = 0) -> str:
    model = trained_like_weights_(build(cfg), seed)
    torch.save({'state_dict': model.state_dict()}, path)
    return str(path)


def assert_checked_at_other_sizes(report):
    """Passed, at two input sizes other than the export's (and each other), and on a batch of two."""
    assert report.passed, report.lines()
    single = [check for check in report.checks if check.input_shape[0] == 1]
    sizes = {check.input_shape[-2:] for check in single}
    assert len(single) == 2 and len(sizes) == 2 and report.export_input_shape[-2:] not in sizes
    assert any(check.input_shape[0] == 2 for check in report.checks)
    for check in report.checks:
        if check.agreement is None:
            assert check.detections > 0, check.line()


# ----------------------------------------------------------------------------------- comparison rules
def detections(boxes, scores, labels, masks=None):
    result = dict(boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32),
                  labels=np.asarray(labels))
    if masks is not None:
        result['masks'] = np.asarray(masks, np.float32)
    return result


REFERENCE = detections([[10, 10, 50, 60], [100, 20, 180, 90], [5, 100, 40, 190]], [0.9, 0.7, 0.3], [0, 1, 2])


def compared(ours, reference=REFERENCE, keep_top_k=100):
    return compare_detections(reference, ours, (200, 200), 0.05, keep_top_k, CheckResult('t', (1, 3, 200, 200)))


def test_detections_pair_up_in_any_order():
    order = [2, 0, 1]
    ours = detections(REFERENCE['boxes'][order] + 1e-4, REFERENCE['scores'][order], REFERENCE['labels'][order])
    result = compared(ours)
    assert result.passed and result.detections == 3 and 0 < result.box_diff < BOX_TOLERANCE


@pytest.mark.parametrize('change', ['label', 'box', 'missing', 'extra', 'score'])
def test_detections_that_differ_fail(change):
    ours = {key: value.copy() for key, value in REFERENCE.items()}
    if change == 'label':
        ours['labels'][1] = 2
    elif change == 'box':
        ours['boxes'][1, 2] += 2 * BOX_TOLERANCE * 200
    elif change == 'missing':
        ours = {key: value[:2] for key, value in ours.items()}
    elif change == 'extra':
        ours = {key: np.concatenate([value, value[:1]]) for key, value in ours.items()}
        ours['boxes'][-1] += 30
    else:
        ours['scores'][0] -= 0.01
    assert not compared(ours).passed


def test_a_detection_at_a_score_cut_may_be_on_one_side_only():
    extra_box, extra_label = [[60, 60, 90, 90]], [0]
    at_threshold = detections(np.r_[REFERENCE['boxes'], extra_box], np.r_[REFERENCE['scores'], 0.05 + SCORE_MARGIN / 2],
                              np.r_[REFERENCE['labels'], extra_label])
    assert compared(REFERENCE, reference=at_threshold).passed
    # Full lists (keep_top_k 3) whose last places hold the two sides of a tie.
    tie = detections(np.r_[REFERENCE['boxes'][:2], extra_box], REFERENCE['scores'], np.r_[REFERENCE['labels'][:2], 0])
    result = compared(tie, keep_top_k=3)
    assert result.passed and result.at_cut == 2
    # Above the cut, a detection without a partner fails.
    missing_second = {key: value[[0, 2]] for key, value in REFERENCE.items()}
    assert not compared(detections(np.r_[missing_second['boxes'], extra_box], np.r_[missing_second['scores'], 0.3],
                                   np.r_[missing_second['labels'], 0]), keep_top_k=3).passed


def test_masks_are_compared_by_iou_outside_the_threshold_band():
    mask = np.zeros((3, 200, 200), np.float32)
    mask[:, 20:60, 20:60] = 0.9
    reference = dict(REFERENCE, masks=mask)
    undecided = mask.copy()
    undecided[0, 60:80, 20:60] = 0.5005  # PyTorch's 0.4995 there: rounding decides
    reference_undecided = dict(REFERENCE, masks=np.where(undecided == 0.5005, 0.4995, mask))
    assert compared(dict(REFERENCE, masks=undecided), reference=reference_undecided).min_mask_iou == 1.0
    grown = mask.copy()
    grown[1, 60:62, 20:60] = 0.9
    result = compared(dict(REFERENCE, masks=grown), reference=reference)
    assert result.min_mask_iou < MASK_IOU and not result.passed


def test_segmentation_maps_agree_on_almost_every_pixel():
    reference = np.random.default_rng(0).integers(0, 4, (2, 1, 100, 100))
    nearly = reference.copy()
    nearly[0, 0, 0, :10] = (nearly[0, 0, 0, :10] + 1) % 4
    assert compare_segmentations(reference, nearly, CheckResult('t', (2, 3, 100, 100))).passed
    nearly[0, 0, 1, :20] = (nearly[0, 0, 1, :20] + 1) % 4
    assert not compare_segmentations(reference, nearly, CheckResult('t', (2, 3, 100, 100))).passed
    assert not compare_segmentations(reference, reference[:, :, :99], CheckResult('t', (2, 3, 100, 100))).passed


# ------------------------------------------------------------------------ the rewrites, one at a time
def test_importing_the_package_imports_and_patches_nothing_of_mmdeploy():
    probe = ('import sys, torch.nn.functional as F; sdpa = F.scaled_dot_product_attention; import swin_backbones; '
             'print(sorted(m for m in ("mmdeploy", "onnxruntime") if m in sys.modules)); '
             'print(F.scaled_dot_product_attention is sdpa)')
    result = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.split() == ['[]', 'True']


@needs_deploy_extra
def test_rewrites_are_registered_only_inside_the_block():
    from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER

    from swin_backbones.deployment.rewrites import FUNCTION_REWRITES, SYMBOLIC_REWRITES, registered_rewrites

    def ours():
        """(path, rewrite) of this package's rewrites in mmdeploy's registries."""
        records = {**FUNCTION_REWRITER._registry._rewrite_records, **SYMBOLIC_REWRITER._registry._rewrite_records}
        return {(path, record['_object']) for path, entries in records.items() for record in entries} & set(
            FUNCTION_REWRITES + SYMBOLIC_REWRITES)

    assert not ours()
    with registered_rewrites():
        assert ours() == set(FUNCTION_REWRITES + SYMBOLIC_REWRITES)
    assert not ours()


def rewriter_context(codebase='mmdet'):
    from mmdeploy.core import RewriterContext
    from mmdeploy.utils import IR

    from swin_backbones.deployment.configs import OPSET
    task = 'ObjectDetection' if codebase == 'mmdet' else 'Segmentation'
    cfg = Config(dict(backend_config=dict(type='onnxruntime'), onnx_config=dict(type='onnx', opset_version=OPSET),
                      codebase_config=dict(type=codebase, task=task)))
    return RewriterContext(cfg=cfg, backend='onnxruntime', ir=IR.ONNX, opset=OPSET)


def export_and_run(module, inputs, runs, dynamic_axes, codebase='mmdet'):
    """Exports ``module`` inside mmdeploy's context with this package's rewrites, then runs each input tuple of
    ``runs`` in onnxruntime and in PyTorch (outside any context); returns the largest difference."""
    import io

    import onnxruntime as ort

    from swin_backbones.deployment.configs import OPSET
    from swin_backbones.deployment.rewrites import registered_rewrites
    names = [f'in{index}' for index in range(len(inputs))]
    buffer = io.BytesIO()
    with registered_rewrites(), rewriter_context(codebase), torch.no_grad():
        torch.onnx.export(module.eval(), inputs, buffer, dynamo=False, autograd_inlining=False, opset_version=OPSET,
                          input_names=names, dynamic_axes=dynamic_axes)
    session = ort.InferenceSession(buffer.getvalue(), providers=['CPUExecutionProvider'])
    worst = 0.0
    for run in runs:
        with torch.no_grad():
            expected = module(*run)
        got = session.run(None, dict(zip(names, (tensor.numpy() for tensor in run))))[0]
        assert got.shape == tuple(expected.shape)
        worst = max(worst, float(np.abs(got - expected.numpy()).max()))
    return worst


@needs_deploy_extra
def test_pyramid_pooling_is_exact_at_every_size_in_the_graph():
    """mmdeploy's own rewrite freezes the traced size's kernel (and fails below the bins: 3 x 4 for 6 bins)."""
    pool = torch.nn.AdaptiveAvgPool2d(6)
    generator = torch.Generator().manual_seed(0)
    runs = [(torch.randn(2, 4, height, width, generator=generator), ) for height, width in
            [(24, 32), (3, 4), (13, 29), (6, 6), (37, 11)]]
    assert export_and_run(pool, runs[0], runs, {'in0': {0: 'n', 2: 'h', 3: 'w'}}, 'mmseg') < 1e-5


@needs_deploy_extra
def test_semantic_fpn_upsampling_follows_the_input_size():
    from mmseg.models.utils import Upsample
    upsample = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1), Upsample(scale_factor=2, mode='bilinear'))
    runs = [(torch.randn(1, 3, height, width), ) for height, width in [(8, 12), (11, 5), (16, 16)]]
    assert export_and_run(upsample, runs[0], runs, {'in0': {2: 'h', 3: 'w'}}, 'mmseg') < 1e-5


@needs_deploy_extra
def test_roi_align_exports_without_torchs_removed_helper():
    from mmcv.ops import RoIAlign
    roi_align = RoIAlign(7, spatial_scale=0.25, sampling_ratio=0, aligned=True)
    features = torch.randn(2, 8, 24, 32)
    rois = torch.tensor([[0, 3.3, 4.1, 50.2, 60.7], [1, 10, 20, 100, 90], [0, 0, 0, 5, 5.]])
    runs = [(features, rois), (torch.randn(2, 8, 13, 17), rois[1:]), (features[:1], rois[[0, 2]])]
    assert export_and_run(roi_align, runs[0], runs, {'in0': {0: 'n', 2: 'h', 3: 'w'}, 'in1': {0: 'k'}}) < 1e-5


@needs_deploy_extra
def test_attention_keeps_its_scale_inside_mmdeploys_context():
    """mmdeploy's default rewrite divides by ``scale``; every PyTorch run of the backbones inside its context
    would compute other attention."""
    from swin_backbones.deployment.rewrites import registered_rewrites
    q, k, v = torch.randn(3, 2, 4, 49, 8).unbind(0)
    expected = F.scaled_dot_product_attention(q, k, v, scale=8 ** -0.5)
    with rewriter_context():
        assert not torch.allclose(F.scaled_dot_product_attention(q, k, v, scale=8 ** -0.5), expected, atol=1e-3)
    with registered_rewrites(), rewriter_context():
        torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, scale=8 ** -0.5), expected)


@needs_deploy_extra
def test_crossformer_padding_mask_traces_under_mmdeploys_rewrites():
    """The padding mask (layers.padding_key_mask) once assigned a boolean slice, which mmdeploy's setitem rewrite
    turns into a boolean new_full that torch cannot trace; CrossFormer failed there."""
    from swin_backbones import CrossFormer
    backbone = CrossFormer(embed_dims=16, depths=(1, 2, 1, 1), num_heads=(1, 1, 1, 1), group_size=7,
                           crs_interval=(8, 4, 2, 1), drop_path_rate=0.0).eval()

    class Last(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone

        def forward(self, x):
            return self.backbone(x)[-1]

    runs = [(torch.randn(1, 3, height, width), ) for height, width in [(231, 257), (250, 229)]]
    assert export_and_run(Last(), runs[0], runs, {'in0': {2: 'h', 3: 'w'}}) < 1e-4


# ------------------------------------------------------------------------------------ bad inputs
def deploy_command(argv):
    from swin_backbones.cli.deploy import main
    return main([str(arg) for arg in argv])


def one_error_line(capsys, *fragments):
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err, err
    assert all(fragment in errors[0] for fragment in fragments), err


def nothing_written(folder, out):
    assert not osp.exists(out)
    assert not [name for name in os.listdir(folder) if name.startswith(('.partial-', '.replaced-'))]


@needs_deploy_extra
def test_an_existing_out_is_kept_without_force(tmp_path, capsys):
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'mine.txt').write_text('keep')
    (tmp_path / 'weights.pth').write_bytes(b'')
    config = config_path(FAMILIES['mask-rcnn'])
    assert deploy_command([config, tmp_path / 'weights.pth', '--out', tmp_path / 'out']) == 2
    one_error_line(capsys, 'exists', '--force')
    assert (tmp_path / 'out' / 'mine.txt').read_text() == 'keep'


@needs_deploy_extra
def test_an_unwritable_out_is_one_error_line(tmp_path, capsys):
    (tmp_path / 'file').write_text('')
    (tmp_path / 'weights.pth').write_bytes(b'')
    config = config_path(FAMILIES['upernet'])
    assert deploy_command([config, tmp_path / 'weights.pth', '--out', tmp_path / 'file' / 'out']) == 2
    one_error_line(capsys, 'cannot write', 'file')


@needs_deploy_extra
def test_a_checkpoint_of_another_model_is_named_and_nothing_is_written(tmp_path, capsys):
    other = save_seeded_checkpoint(toy_config('mask-rcnn', 'swin'), tmp_path / 'mask-rcnn.pth')
    assert deploy_command([config_path(FAMILIES['upernet']), other, '--out', tmp_path / 'out']) == 2
    one_error_line(capsys, 'does not fit', 'missing decode_head.*', 'unexpected', 'roi_head.*')
    nothing_written(tmp_path, tmp_path / 'out')


@needs_deploy_extra
def test_a_head_mmdeploy_cannot_rewrite_is_named(tmp_path, capsys):
    """SABL's RetinaNet head has its own predict_by_feat, which mmdeploy 1.3.1 has no rewrite of."""
    cfg = Config.fromfile(config_path(FAMILIES['retinanet']))
    strides = [8, 16, 32, 64, 128]
    cfg.model.bbox_head = dict(  # mmdet's sabl-retinanet_r50_fpn_1x_coco head at the toy's widths
        type='SABLRetinaHead', num_classes=3, in_channels=64, stacked_convs=2, feat_channels=64,
        approx_anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4, scales_per_octave=3,
                                     ratios=[0.5, 1.0, 2.0], strides=strides),
        square_anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], scales=[4], strides=strides),
        bbox_coder=dict(type='BucketingBBoxCoder', num_buckets=14, scale_factor=3.0),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.5),
        loss_bbox_reg=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.5))
    cfg.dump(tmp_path / 'sabl.py')
    (tmp_path / 'weights.pth').write_bytes(b'')
    assert deploy_command([tmp_path / 'sabl.py', tmp_path / 'weights.pth', '--out', tmp_path / 'out']) == 2
    one_error_line(capsys, 'SABLRetinaHead cannot be deployed', 'no rewrite of SABLRetinaHead.predict_by_feat')
    nothing_written(tmp_path, tmp_path / 'out')


@needs_deploy_extra
def test_sliding_window_segmentation_is_refused(tmp_path, capsys):
    (tmp_path / 'weights.pth').write_bytes(b'')
    assert deploy_command([config_path(FAMILIES['upernet']), tmp_path / 'weights.pth', '--out', tmp_path / 'out',
                           '--cfg-options', "model.test_cfg.mode=slide"]) == 2
    one_error_line(capsys, "mode is 'slide'", "whole")


@needs_deploy_extra
def test_missing_files_are_named(tmp_path, capsys):
    config = config_path(FAMILIES['mask-rcnn'])
    assert deploy_command([config, tmp_path / 'nope.pth', '--out', tmp_path / 'out']) == 2
    one_error_line(capsys, 'checkpoint file not found')
    (tmp_path / 'weights.pth').write_bytes(b'')
    assert deploy_command([config, tmp_path / 'weights.pth', '--out', tmp_path / 'out', '--image', 'nope.jpg']) == 2
    one_error_line(capsys, 'image not found: nope.jpg')


def test_without_the_extra_the_error_says_what_to_install(monkeypatch, tmp_path):
    import builtins

    from swin_backbones.deployment import require_mmdeploy
    real_import = builtins.__import__

    def without_mmdeploy(name, *args, **kwargs):
        if name.split('.')[0] == 'mmdeploy':
            raise ImportError(f'No module named {name!r}')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', without_mmdeploy)
    with pytest.raises(DeployError, match=r'mmdeploy .*tools/install.sh --with deploy'):
        require_mmdeploy()


# ------------------------------------------------------------------------- end to end (slow)
@needs_deploy_extra
@pytest.mark.slow
@pytest.mark.parametrize('backbone', sorted(BACKBONES))
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_family_and_backbone_deploys_with_dynamic_shapes(family, backbone, tmp_path):
    from swin_backbones import deploy
    cfg = toy_config(family, backbone)
    checkpoint = save_seeded_checkpoint(cfg, tmp_path / 'weights.pth')
    report = deploy(cfg, checkpoint, str(tmp_path / 'out'))
    print('\n'.join(report.lines()))  # the figures of the docs' parity table (pytest -rP)
    assert_checked_at_other_sizes(report)
    assert report.minimum_input_size == (225 if backbone.startswith('crossformer') else 1)
    assert sorted(os.listdir(tmp_path / 'out')) == ['deploy.json', 'deploy_config.py', 'detail.json', 'end2end.onnx',
                                                    'model_config.py', 'pipeline.json']


@needs_deploy_extra
@pytest.mark.slow
@pytest.mark.parametrize('name', ['swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py',
                                  'crossformer/crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'])
def test_published_configs_deploy_at_a_small_size(name, tmp_path):
    from swin_backbones import deploy
    cfg = Config.fromfile(config_path(name))
    cfg.model.backbone.init_cfg = None
    checkpoint = save_seeded_checkpoint(cfg, tmp_path / 'weights.pth')
    report = deploy(cfg, checkpoint, str(tmp_path / 'out'), cfg_options={'test_pipeline.1.scale': (384, 256)})
    print('\n'.join(report.lines()))
    assert_checked_at_other_sizes(report)


@needs_deploy_extra
@pytest.mark.slow
def test_a_static_export_resizes_every_image_to_its_shape(tmp_path):
    from swin_backbones import deploy
    cfg = toy_config('upernet', 'swinv2')
    checkpoint = save_seeded_checkpoint(cfg, tmp_path / 'weights.pth')
    report = deploy(cfg, checkpoint, str(tmp_path / 'out'), shape=(112, 136), dynamic=False)
    assert report.passed and not report.dynamic and len(report.checks) == 2
    assert {check.input_shape for check in report.checks} == {report.export_input_shape} == {(1, 3, 112, 136)}
    assert 'static shapes' in report.lines()[-2]


@pytest.fixture(scope='module')
def deployed(tmp_path_factory):
    """Toy Mask R-CNN + Swin deployed by the command line: (folder, config, checkpoint, its output)."""
    folder = tmp_path_factory.mktemp('deployed')
    cfg = toy_config('mask-rcnn', 'swin')
    cfg.dump(folder / 'config.py')
    checkpoint = save_seeded_checkpoint(cfg, folder / 'weights.pth')
    result = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'deploy.py'), folder / 'config.py', checkpoint,
                             '--out', folder / 'out'], capture_output=True, text=True, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, folder / 'config.py', checkpoint, result.stdout


@needs_deploy_extra
@pytest.mark.slow
def test_the_command_prints_the_differences_and_what_it_wrote(deployed):
    folder, _, _, stdout = deployed
    lines = stdout.splitlines()
    checks = [line for line in lines if line.startswith('check ')]
    assert len(checks) == 3 and all('labels equal, boxes max |diff|' in line and 'mask IoU >=' in line
                                    for line in checks)
    assert 'dynamic batch, height and width' in stdout and f'wrote {folder / "out"}: ' in stdout


@needs_deploy_extra
@pytest.mark.slow
def test_mmdeploys_inference_reads_the_written_files(deployed, tmp_path):
    """mmdeploy's own inference_model on the folder, in a process of its own as a user would run it."""
    import cv2

    from swin_backbones.deployment.run import generated_image
    folder = deployed[0] / 'out'
    cv2.imwrite(str(tmp_path / 'image.jpg'), generated_image(301, 397, seed=9))
    script = ('import sys; from mmdeploy.apis import inference_model; f = sys.argv[1]; '
              'r = inference_model(f + "/model_config.py", f + "/deploy_config.py", [f + "/end2end.onnx"], '
              'sys.argv[2], "cpu")[0].pred_instances; print(len(r.scores), tuple(r.masks.shape[-2:]))')
    result = subprocess.run([sys.executable, '-c', script, folder, tmp_path / 'image.jpg'], capture_output=True,
                            text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    detections, mask_size = result.stdout.strip().splitlines()[-1].split(maxsplit=1)  # after mmengine's log
    assert int(detections) > 0 and mask_size.strip() == '(301, 397)'


@needs_deploy_extra
@pytest.mark.slow
def test_the_deployed_detector_keeps_mmdets_detections_where_the_input_is_padded(deployed):
    """Against mmdet's own predict (not the deploy-time computation the check compares with): mmdet pads the
    input to a multiple of 32 and clips boxes at the image's size; the graph pads the unpadded image itself
    to know that size. Without that, boxes were clipped at the padded size and about half of mmdet's 20
    detections had no partner at these sizes. mmdeploy's RPN (one NMS across levels, proposals below 0.05
    dropped) may still change a detection or two: at least 18 of 20 must match."""
    import onnxruntime as ort

    from benchmarks.deploy_benchmark import preprocessed
    from swin_backbones.deployment.run import generated_image
    folder, config, checkpoint, _ = deployed
    cfg = Config.fromfile(config)
    model = build(cfg)
    model.load_state_dict(torch.load(checkpoint, weights_only=True)['state_dict'])
    session = ort.InferenceSession(str(folder / 'out' / 'end2end.onnx'), providers=['CPUExecutionProvider'])
    for size in [(588, 523), (300, 457)]:
        image = generated_image(*size, seed=11)
        data, inputs = preprocessed(cfg, folder / 'out', image, deployed=False)
        _, unpadded = preprocessed(cfg, folder / 'out', image, deployed=True)
        assert inputs.shape[-2] % 32 == inputs.shape[-1] % 32 == 0 and unpadded.shape != inputs.shape
        with torch.no_grad():
            expected = model.eval()(inputs, data['data_samples'], mode='predict')[0].pred_instances
        dets, labels = session.run(['dets', 'labels'], {'input': unpadded.numpy()})
        kept = dets[0][:, 4] > 0
        scale = np.tile(data['data_samples'][0].metainfo['scale_factor'], 2)
        ours = detections(dets[0][kept, :4] / scale, dets[0][kept, 4], labels[0][kept])
        result = compare_detections(detections(expected.bboxes, expected.scores, expected.labels), ours, size,
                                    cfg.model.test_cfg.rcnn.score_thr, cfg.model.test_cfg.rcnn.max_per_img,
                                    CheckResult(str(size), tuple(inputs.shape)))
        print(f'image {size}: {result.unpaired} of the 40 detections (mmdet\'s 20, onnxruntime\'s 20) without a '
              f'partner, boxes of the pairs within {result.box_diff:.1e} of the image size')
        assert result.detections == 20 and result.unpaired <= 4, result.line()


def tampered_export(monkeypatch, tamper):
    """Makes every deployment's export pass its ONNX model through ``tamper(model, traced input shape)`` before
    the check runs."""
    import onnx

    from swin_backbones.deployment import run
    export = run._Deployment.export

    def export_then_tamper(self, path, images):
        shape, seconds = export(self, path, images)
        model = onnx.load(path)
        tamper(model, shape)
        onnx.save(model, path)
        return shape, seconds

    monkeypatch.setattr(run._Deployment, 'export', export_then_tamper)


def swap_outputs(first, second):
    def tamper(model, shape):
        renamed = {first: second, second: first}
        for value in model.graph.output:
            value.name = renamed.get(value.name, value.name)
        for node in model.graph.node:
            node.output[:] = [renamed.get(name, name) for name in node.output]
            node.input[:] = [renamed.get(name, name) for name in node.input]
    return tamper


def drop_dynamic_axes(model, shape):
    for dim, side in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        dim.ClearField('dim_param')
        dim.dim_value = side


@needs_deploy_extra
@pytest.mark.slow
@pytest.mark.parametrize('tamper', [swap_outputs('dets', 'labels'), swap_outputs('labels', 'masks'), drop_dynamic_axes],
                         ids=['swapped dets and labels', 'swapped labels and masks', 'dropped dynamic axes'])
def test_the_check_fails_on_a_graph_that_names_or_shapes_wrongly(tamper, deployed, monkeypatch, tmp_path):
    from swin_backbones import deploy
    _, config, checkpoint, _ = deployed
    tampered_export(monkeypatch, tamper)
    with pytest.raises(DeployError, match='nothing was written|onnxruntime failed'):
        deploy(str(config), str(checkpoint), str(tmp_path / 'out'))
    nothing_written(tmp_path, tmp_path / 'out')
