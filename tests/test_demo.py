"""The README's demo (tools/demo.py), shortened: data, both trainings, the real evaluators, pictures."""
import json
import sys

import pytest

from .helpers import check, run


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path):
    from PIL import Image
    work_dir = tmp_path / 'demo'
    log = check(run([sys.executable, 'tools/demo.py', '--quick', '--work-dir', work_dir], str(tmp_path)))
    for line in ('== generating toy data', '== Mask R-CNN + FPN + Swin', '== UperNet + CrossFormer',
                 '[det] iter    8/8', '[seg] iter    8/8', 'evaluating on the validation set', '== results'):
        assert line in log
    with open(work_dir / 'results.json') as f:
        results = json.load(f)
    assert results['quick'] is True
    metrics = results['metrics']
    # Real evaluators ran: COCO box and mask mAP, mmseg's mIoU and pixel accuracy (values in [0, 1]).
    for key in ('bbox mAP@0.5', 'bbox mAP', 'segm mAP@0.5', 'segm mAP', 'mIoU', 'aAcc'):
        assert metrics[key] is not None and 0 <= metrics[key] <= 1, (key, metrics)
        assert f'{key:<14} {metrics[key]:.3f}' in log
    assert metrics['aAcc'] > 0.5  # even 8 iterations learn that most pixels are background
    sizes = {}
    for name, path in results['pictures'].items():
        assert path in log
        with Image.open(path) as picture:
            assert picture.format == 'PNG', name
            sizes[name] = picture.size
    # Predictions: 4 validation images, one per row, ground truth beside prediction, each 3 x 128 px.
    for name in ('detections', 'segmentations'):
        width, height = sizes[name]
        assert width == 3 * 10 + 2 * 3 * 128 and height > 4 * 3 * 128, (name, sizes[name])
    # Pyramids: a row per backbone, the input and 4 levels.
    assert sizes['pyramids'][0] > 5 * 192 and 2 * 192 < sizes['pyramids'][1] < 3 * 192
    # The training logs and checkpoints stay in the work dir.
    assert (work_dir / 'mask-rcnn_swin' / 'iter_8.pth').is_file()
    assert (work_dir / 'upernet_crossformer' / 'iter_8.pth').is_file()
    assert (work_dir / 'toy_data' / 'coco' / 'annotations' / 'instances_val.json').is_file()
