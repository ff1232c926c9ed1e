"""Toy data, tools/train.py and tools/test.py, the same toy configs through mmdet's and mmseg's own
tools/train.py and tools/test.py (as shipped inside those packages), and mmengine reading checkpoints
through the package's safe reader."""
import filecmp
import json
import os
import os.path as osp
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import swin_backbones
from swin_backbones.checkpoint import CheckpointError, load_from_local_safely, publish_checkpoint
from swin_backbones.toy_data import make_toy_data

from .helpers import (MIM_TOOLS, REPO, TOY_CONFIGS, TOY_HEAD_CONFIGS, check, make_small_toy_data, read_checkpoint,
                          run, short_run_options, train_iterations)


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    return make_small_toy_data(str(tmp_path_factory.mktemp('toy_data')))


# ------------------------------------------------------------------------------------------ toy data
def _files(root):
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, files in os.walk(root) for f in files)


def test_toy_data_is_deterministic(tmp_path):
    make_toy_data(str(tmp_path / 'a'), num_train=6, num_val=3, size=96, seed=5)
    make_toy_data(str(tmp_path / 'b'), num_train=6, num_val=3, size=96, seed=5)
    make_toy_data(str(tmp_path / 'c'), num_train=6, num_val=3, size=96, seed=6)
    files = _files(tmp_path / 'a')
    assert files == _files(tmp_path / 'b') == _files(tmp_path / 'c')
    assert len(files) == 2 + 9 + 9 * 2 + 1  # 2 json, 9 COCO images, 9 ADE images + 9 label maps, summary
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / 'a', tmp_path / 'b', files, shallow=False)
    assert not mismatch and not errors
    _, different, _ = filecmp.cmpfiles(tmp_path / 'a', tmp_path / 'c', files, shallow=False)
    assert len(different) >= 20  # another seed, other pictures


def test_toy_coco_set_is_valid_coco(toy_data):
    from pycocotools.coco import COCO
    for split, count in (('train', 16), ('val', 8)):
        coco = COCO(osp.join(toy_data, 'coco', 'annotations', f'instances_{split}.json'))
        assert len(coco.getImgIds()) == count
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == ['circle', 'square', 'triangle']
        assert len(coco.getAnnIds()) >= count
        for ann in coco.loadAnns(coco.getAnnIds()):
            image = coco.loadImgs(ann['image_id'])[0]
            assert osp.isfile(osp.join(toy_data, 'coco', split, image['file_name']))
            mask = coco.annToMask(ann)
            assert abs(mask.sum() - ann['area']) <= 0.15 * ann['area'] + 10
            x, y, w, h = ann['bbox']
            assert 0 <= x and 0 <= y and x + w <= image['width'] and y + h <= image['height'] and w > 8 and h > 8
            assert ann['iscrowd'] == 0 and ann['category_id'] in (1, 2, 3)


def test_toy_ade_set_matches_the_coco_classes_and_layout(toy_data):
    import cv2
    for split, count in (('training', 16), ('validation', 8)):
        images = sorted(os.listdir(osp.join(toy_data, 'ade', 'images', split)))
        labels = sorted(os.listdir(osp.join(toy_data, 'ade', 'annotations', split)))
        assert len(images) == count and [osp.splitext(n)[0] for n in images] == [osp.splitext(n)[0] for n in labels]
        assert all(n.endswith('.jpg') for n in images) and all(n.endswith('.png') for n in labels)
        values = set()
        for name in labels:
            label = cv2.imread(osp.join(toy_data, 'ade', 'annotations', split, name), cv2.IMREAD_UNCHANGED)
            assert label.shape == (128, 128) and label.dtype == np.uint8
            values |= set(np.unique(label).tolist())
        assert values <= {1, 2, 3, 4} and 1 in values and len(values) >= 3


def test_toy_configs_load_the_toy_data(toy_data, monkeypatch):
    """The toy configs' datasets (mmdet CocoDataset, mmseg BaseSegDataset in ADE20K's layout) read it."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS, DefaultScope
    monkeypatch.setenv('TOY_DATA', toy_data)
    for key, expected in ((('det', 'swin'), 16), (('seg', 'swin'), 16)):
        cfg = Config.fromfile(TOY_CONFIGS[key])
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            train = DATASETS.build(cfg.train_dataloader.dataset)
            val = DATASETS.build(cfg.val_dataloader.dataset)
        assert (len(train), len(val)) == (expected, 8)
        sample = train[0]
        if key[0] == 'det':
            assert tuple(sample['inputs'].shape) == (3, 128, 128)
            assert train.metainfo['classes'] == ('circle', 'square', 'triangle')
            assert len(sample['data_samples'].gt_instances) >= 1
            assert sample['data_samples'].gt_instances.masks.masks.shape[1:] == (128, 128)
        else:  # random scale 0.75-1.5, then a crop of at most 128x128
            assert sample['inputs'].shape[0] == 3 and 96 <= max(sample['inputs'].shape[1:]) <= 128
            assert train.metainfo['classes'] == ('background', 'circle', 'square', 'triangle')
            labels = set(sample['data_samples'].gt_sem_seg.data.unique().tolist())
            assert labels <= {0, 1, 2, 3, 255} and 0 in labels  # ADE's reduce_zero_label: 1 -> 0


# ------------------------------------------------------------------------------------ our own tools
def test_tools_check_the_config(tmp_path, toy_data):
    bad = tmp_path / 'bad.py'
    bad.write_text("default_scope = 'mmpretrain'\n")
    result = run([sys.executable, 'tools/train.py', bad], toy_data)
    assert result.returncode != 0 and "default_scope is 'mmpretrain'" in result.stdout
    result = run([sys.executable, 'tools/test.py', TOY_CONFIGS['det', 'swin'], tmp_path / 'missing.pth'], toy_data)
    assert result.returncode != 0 and 'checkpoint file not found' in result.stdout
    (tmp_path / 'weights.pth').write_bytes(b'')
    result = run([sys.executable, 'tools/test.py', TOY_CONFIGS['det', 'swin'], tmp_path / 'weights.pth', '--tta'],
                 toy_data)
    assert result.returncode != 0 and 'no test-time augmentation for instance masks' in result.stdout
    if not torch.cuda.is_available():
        result = run([sys.executable, 'tools/train.py', TOY_CONFIGS['seg', 'swin'], '--amp'], toy_data)
        assert result.returncode != 0 and '--amp needs a GPU' in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize('task, backbone', [('det', 'swin'), ('seg', 'crossformer'), ('seg', 'swinv2')])
def test_train_then_test_with_our_tools(tmp_path, toy_data, task, backbone):
    config = TOY_CONFIGS[task, backbone]
    work_dir = tmp_path / 'work'
    log = check(run([sys.executable, 'tools/train.py', config, '--work-dir', work_dir,
                     '--cfg-options', *short_run_options(iters=2)], toy_data))
    assert train_iterations(log) == [1, 2]
    checkpoint = work_dir / 'iter_2.pth'
    assert checkpoint.is_file()
    out = tmp_path / ('results.pkl' if task == 'det' else 'pred_maps')
    log = check(run([sys.executable, 'tools/test.py', config, checkpoint, '--work-dir', tmp_path / 'eval',
                     '--out', out, '--show-dir', 'vis'], toy_data))
    metric = 'coco/bbox_mAP_50' if task == 'det' else 'mIoU'
    assert f'{metric}:' in log
    if task == 'det':
        with open(out, 'rb') as f:
            assert len(pickle.load(f)) == 8  # one prediction per validation image
    else:
        assert len(os.listdir(out)) == 8
    painted = [f for d, _, files in os.walk(tmp_path / 'eval') if 'vis' in d.split(os.sep) for f in files
               if f.endswith(('.jpg', '.png'))]
    assert len(painted) == 8


# ---------------------------------------------------------------------- mmdet's and mmseg's own tools
@pytest.mark.slow
@pytest.mark.parametrize('task, backbone', [('det', 'crossformer'), ('det', 'swinv2'), ('seg', 'swin')])
def test_downstream_tools_train_test_and_resume(tmp_path, toy_data, task, backbone):
    """mmdet's / mmseg's own train.py, then test.py on the checkpoint train.py wrote, then train.py --resume,
    each in a fresh interpreter with no re-saving step: the config's custom_imports imports swin_backbones,
    which makes mmengine read the runner's checkpoints with the package's safe reader (torch >= 2.6's
    weights_only default refuses them)."""
    scope = 'mmdet' if task == 'det' else 'mmseg'
    config = TOY_CONFIGS[task, backbone]
    work_dir = tmp_path / 'work'
    train = [sys.executable, osp.join(MIM_TOOLS[scope], 'train.py'), config, '--work-dir', work_dir]
    log = check(run(train + ['--cfg-options', *short_run_options(iters=2, val=False)], toy_data))
    assert train_iterations(log) == [1, 2]
    checkpoint = work_dir / 'iter_2.pth'
    with pytest.raises(Exception, match='weights_only|Weights only'):
        torch.load(checkpoint)  # what mmengine 0.10 would do on its own

    log = check(run([sys.executable, osp.join(MIM_TOOLS[scope], 'test.py'), config, checkpoint,
                     '--work-dir', tmp_path / 'eval'], toy_data))
    assert f'Loads checkpoint by local_safely backend from path: {checkpoint}' in log
    assert ('coco/bbox_mAP_50:' if task == 'det' else 'mIoU:') in log

    log = check(run(train + ['--resume', '--cfg-options', *short_run_options(iters=3, val=False)], toy_data))
    assert f'Loads checkpoint by local_safely backend from path: {checkpoint}' in log
    assert 'resumed epoch: 0, iter: 2' in log
    assert train_iterations(log) == [3]
    resumed = read_checkpoint(str(work_dir / 'iter_3.pth'))
    assert resumed['meta']['iter'] == 3
    assert {int(state['step']) for state in resumed['optimizer']['state'].values()} == {3}


@pytest.mark.slow
@pytest.mark.parametrize('head, losses, metric, trained', [
    # Three cascade stages, each with its GIoU box loss; the 4conv1fc heads' SyncBN trained as BN (one process).
    pytest.param('cascade-mask-rcnn', ('s0.loss_bbox', 's1.loss_bbox', 's2.loss_bbox', 's2.loss_mask'),
                 'coco/segm_mAP', 'roi_head.bbox_head.2.shared_convs.3.bn.num_batches_tracked', id='cascade-mask-rcnn'),
    pytest.param('retinanet', ('loss_cls', 'loss_bbox'), 'coco/bbox_mAP', 'bbox_head.retina_cls.bias', id='retinanet'),
    pytest.param('semantic-fpn', ('decode.loss_ce',), 'mIoU', 'decode_head.scale_heads.3.0.bn.num_batches_tracked',
                 id='semantic-fpn'),
])
def test_downstream_train_runs_the_other_heads(tmp_path, toy_data, head, losses, metric, trained):
    """The toy twins of the Cascade Mask R-CNN, RetinaNet and Semantic FPN configs train for a few iterations
    and evaluate with mmdet's / mmseg's own train.py."""
    scope, config = TOY_HEAD_CONFIGS[head]
    work_dir = tmp_path / 'work'
    log = check(run([sys.executable, osp.join(MIM_TOOLS[scope], 'train.py'), config, '--work-dir', work_dir,
                     '--cfg-options', *short_run_options(iters=2)], toy_data))
    assert train_iterations(log) == [1, 2]
    first_iteration = next(line for line in log.splitlines() if 'Iter(train) [1/2]' in line)
    for loss in losses:
        assert re.search(rf'\b{re.escape(loss)}: \d', first_iteration), (loss, first_iteration)
    assert re.search(rf'{re.escape(metric)}: -?\d', log), log[-3000:]
    state = read_checkpoint(str(work_dir / 'iter_2.pth'))['state_dict']
    if trained.endswith('num_batches_tracked'):
        assert int(state[trained]) == 2
    else:
        assert trained in state


# ------------------------------------------------------------------------------ checkpoint safety
class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


class _GetattrGadget:
    """getattr is allowed for HistoryBuffer's statistics methods only, never as a general gadget."""

    def __reduce__(self):
        import collections
        return (getattr, (collections.OrderedDict, 'fromkeys'))


def test_checkpoints_are_read_without_running_code(tmp_path):
    """Through mmengine's loader (what the runner and every OpenMMLab tool call) once the package is imported."""
    from mmengine.runner import CheckpointLoader
    read = CheckpointLoader.load_checkpoint
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': {'x': _Exploit(marker)}}, path)
    with pytest.raises(RuntimeError, match='refusing to load.*posix.system|refusing to load.*os.system'):
        read(str(path))
    assert not marker.exists()
    getattr_path = tmp_path / 'getattr.pth'
    torch.save({'f': _GetattrGadget()}, getattr_path)
    with pytest.raises(RuntimeError, match='refusing to load.*getattr'):
        read(str(getattr_path))


def test_runner_state_survives_reading(tmp_path):
    """The MessageHub's history buffers (what mmengine needs to resume) come back as real objects."""
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('test_runner_state_survives_reading')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 7)
    path = tmp_path / 'runner.pth'
    torch.save({'meta': {'iter': 7}, 'state_dict': {'w': torch.arange(3.)}, 'message_hub': hub.state_dict(),
                'optimizer': {'state': {0: {'step': torch.tensor(7.)}}, 'param_groups': []},
                'np': np.arange(4)}, path)
    with pytest.raises(Exception):
        torch.load(path)  # torch's default refuses it
    state = read_checkpoint(str(path))
    buffer = state['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() == 1.0 and buffer.current() == 0.5
    assert state['message_hub']['runtime_info']['iter'] == 7
    assert state['np'].tolist() == [0, 1, 2, 3]
    assert torch.equal(state['state_dict']['w'], torch.arange(3.))


def _runner_checkpoint(path):
    """A file like the runner's: weights plus a MessageHub history buffer, which torch's default refuses."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('_runner_checkpoint')
    hub.update_scalar('train/loss', 1.0)
    torch.save({'meta': {'iter': 1}, 'state_dict': {'w': torch.ones(2)}, 'message_hub': hub.state_dict(),
                'optimizer': {'state': {}, 'param_groups': []}}, path)
    return path


def test_importing_the_package_makes_mmengine_read_safely_and_it_can_be_turned_off(tmp_path):
    from mmengine.runner import CheckpointLoader
    from mmengine.runner.checkpoint import load_from_local
    path = str(_runner_checkpoint(tmp_path / 'iter_1.pth'))
    assert swin_backbones.safe_checkpoint_loading_enabled()
    assert CheckpointLoader._get_checkpoint_loader(path) is load_from_local_safely
    assert CheckpointLoader.load_checkpoint(path)['meta'] == {'iter': 1}
    try:
        swin_backbones.use_safe_checkpoint_loading(False)
        assert not swin_backbones.safe_checkpoint_loading_enabled()
        assert CheckpointLoader._get_checkpoint_loader(path) is load_from_local
        with pytest.raises(Exception, match='weights_only|Weights only'):
            CheckpointLoader.load_checkpoint(path)  # mmengine's own loader, torch's default
        swin_backbones.use_safe_checkpoint_loading(False)  # a second call changes nothing
        assert CheckpointLoader._get_checkpoint_loader(path) is load_from_local
    finally:
        swin_backbones.use_safe_checkpoint_loading()
    assert CheckpointLoader._get_checkpoint_loader(path) is load_from_local_safely
    # URLs and other schemes keep their own loaders.
    assert CheckpointLoader._get_checkpoint_loader('https://example.com/a.pth') is not load_from_local_safely


@pytest.mark.parametrize('value, requested', [(None, True), ('1', True), ('yes', True), ('0', False),
                                              ('off', False), (' False ', False), ('no', False)])
def test_environment_variable_values(monkeypatch, value, requested):
    if value is None:
        monkeypatch.delenv('SWIN_BACKBONES_SAFE_LOADING', raising=False)
    else:
        monkeypatch.setenv('SWIN_BACKBONES_SAFE_LOADING', value)
    assert swin_backbones.checkpoint.safe_loading_requested() is requested


def test_environment_variable_turns_it_off_at_import():
    env = dict(os.environ, SWIN_BACKBONES_SAFE_LOADING='0')
    code = ('import swin_backbones; from mmengine.runner.checkpoint import CheckpointLoader; '
            'print("enabled:", swin_backbones.safe_checkpoint_loading_enabled(), '
            'CheckpointLoader._schemes[""].__name__)')
    result = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=300)
    assert 'enabled: False load_from_local\n' in check(result)


def test_publish_checkpoint_keeps_weights_and_meta(tmp_path):
    source = _runner_checkpoint(tmp_path / 'iter_1.pth')
    output = tmp_path / 'published.pth'
    log = check(run([sys.executable, 'tools/publish_checkpoint.py', source, output], str(tmp_path)))
    assert 'wrote 1 tensors and meta' in log
    published = torch.load(output, map_location='cpu')  # weights_only=True in torch >= 2.6
    assert set(published) == {'meta', 'state_dict'} and torch.equal(published['state_dict']['w'], torch.ones(2))
    result = run([sys.executable, 'tools/publish_checkpoint.py', source, source], str(tmp_path))
    assert result.returncode == 2 and 'refusing to overwrite the input' in result.stdout
    torch.save({'weights': torch.ones(1)}, tmp_path / 'other.pth')
    with pytest.raises(CheckpointError, match='no state_dict'):
        publish_checkpoint(str(tmp_path / 'other.pth'), str(tmp_path / 'out.pth'))
    assert not (tmp_path / 'out.pth').exists()


def test_make_toy_data_command_line(tmp_path):
    result = run([sys.executable, 'tools/make_toy_data.py', '--out', tmp_path / 'd', '--num-train', '3',
                  '--num-val', '2', '--size', '64'], str(tmp_path))
    out = check(result)
    assert 'COCO-format instance set' in out and 'ADE20K-layout semantic set' in out
    with open(tmp_path / 'd' / 'toy_data.json') as f:
        summary = json.load(f)
    assert summary['coco']['train']['images'] == 3 and summary['ade']['validation']['images'] == 2


def test_atomic_output_renames_on_success_and_leaves_nothing_on_failure(tmp_path):
    from swin_backbones.files import atomic_output
    target = tmp_path / 'out' / 'result.bin'
    with pytest.raises(RuntimeError):
        with atomic_output(str(target)) as temporary:
            open(temporary, 'wb').write(b'half')
            raise RuntimeError('interrupted')
    assert os.listdir(tmp_path / 'out') == []
    target.write_bytes(b'old')
    with atomic_output(str(target)) as temporary:
        open(temporary, 'wb').write(b'new')
        assert target.read_bytes() == b'old'  # readers see the old file until the block ends
    assert target.read_bytes() == b'new' and os.listdir(tmp_path / 'out') == ['result.bin']
    (tmp_path / 'plain').write_bytes(b'')
    assert os.stat(target).st_mode == os.stat(tmp_path / 'plain').st_mode  # not mkstemp's 0600
