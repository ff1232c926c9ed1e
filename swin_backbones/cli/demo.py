"""Training demo on generated data, on the CPU, in minutes (run it as tools/demo.py).

    bash tools/run.sh demo              # = python tools/demo.py
    python tools/demo.py --quick        # a shortened run (tiny data, a few iterations; what CI runs)

1. writes the toy data sets (swin_backbones.toy_data): circles, squares and triangles on textured
   backgrounds, as a COCO-format instance set and an ADE20K-layout semantic set;
2. trains Mask R-CNN + FPN with a slim Swin (configs/toy/mask-rcnn_swin-toy_fpn_toy-coco.py) and
   evaluates it with mmdet's CocoMetric (COCO box and mask mAP through pycocotools);
3. trains UperNet with a slim CrossFormer (configs/toy/upernet_crossformer-toy_toy-ade.py) and
   evaluates it with mmseg's IoUMetric (mIoU);
4. saves pictures of predictions beside the ground truth on validation images (mmdet's and mmseg's
   visualizers) and of both backbones' feature pyramids (first three principal components of each
   level as RGB), and prints their paths.

Everything goes under --work-dir (default work_dirs/demo). The full run checks that box mAP@0.5 and
mIoU reach 0.5 and exits with status 1 if they do not. tools/demo.py lets torch's OpenMP threads sleep
while they wait (OMP_WAIT_POLICY=PASSIVE, set before torch loads; see there).
"""
import argparse
import contextlib
import io
import json
import logging
import os
import os.path as osp
import sys
import time
import warnings

import torch

from ..paths import config_path
from ..toy_data import make_toy_data
from ..visualization import draw_predictions, render_pyramids

DET_CONFIG = 'toy/mask-rcnn_swin-toy_fpn_toy-coco.py'
SEG_CONFIG = 'toy/upernet_crossformer-toy_toy-ade.py'
THRESHOLDS = {'bbox mAP@0.5': 0.5, 'mIoU': 0.5}

FULL = dict(num_train=200, num_val=50, det_iters=None, seg_iters=None)  # iterations: the configs' own
QUICK = dict(num_train=16, num_val=8, det_iters=8, seg_iters=8)


_STDOUT = sys.stdout  # progress goes here even while pycocotools' prints are hidden


def log(message: str = '') -> None:
    print(message, file=_STDOUT, flush=True)


@contextlib.contextmanager
def quiet(loggers: bool = False):
    """Hides what pycocotools prints (and with ``loggers``, mmengine's current logger below ERROR).

    A runner built inside this block writes its console log into the discarded buffer; its log file
    in the work dir still gets everything.
    """
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance() if loggers else None
    level = logger.level if logger else None
    if logger:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if logger:
            logger.setLevel(level)


def elapsed(start: float) -> str:
    seconds = int(time.perf_counter() - start)
    return f'{seconds // 60}m{seconds % 60:02d}s'


def make_progress_hook(name: str, max_iters: int, every: int):
    """A hook that prints one line every ``every`` iterations and when evaluation starts."""
    from mmengine.hooks import Hook

    class Progress(Hook):
        priority = 'VERY_LOW'

        def __init__(self):
            self.start = None
            self.metrics = {}
            self.losses = []

        def before_train(self, runner):
            self.start = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            step = runner.iter + 1
            self.losses.append(sum(float(v) for k, v in (outputs or {}).items() if k.startswith('loss')))
            if step % every and step != max_iters:
                return
            seconds = time.perf_counter() - self.start
            eta = seconds / step * (max_iters - step)
            loss = sum(self.losses) / len(self.losses)  # mean since the last line
            self.losses = []
            log(f'  [{name}] iter {step:4d}/{max_iters}  loss {loss:.3f}  '
                f'{seconds / step:.2f} s/iter  eta {int(eta) // 60}m{int(eta) % 60:02d}s')

        def before_val(self, runner):
            log(f'  [{name}] evaluating on the validation set ...')

        def after_val_epoch(self, runner, metrics=None):
            self.metrics = dict(metrics or {})

    return Progress()


def build_runner(config: str, work_dir: str, data_root: str, max_iters, name: str):
    from mmengine.config import Config
    from mmengine.runner import Runner
    os.environ['TOY_DATA'] = data_root
    with quiet(loggers=True):
        cfg = Config.fromfile(config_path(config))
    cfg.work_dir = work_dir
    if max_iters is not None:
        cfg.train_cfg.max_iters = max_iters
        cfg.train_cfg.val_interval = max_iters
        cfg.default_hooks.checkpoint.interval = max_iters
        for scheduler in cfg.param_scheduler:
            scheduler.end = min(scheduler.end, max_iters)
            if 'T_max' in scheduler:
                scheduler.T_max = max_iters
            scheduler.begin = min(scheduler.begin, max(max_iters - 1, 0))
    cfg.randomness = dict(seed=0)
    with quiet():  # the progress hook below reports instead; the full log goes to the work dir
        runner = Runner.from_cfg(cfg)
    iters = cfg.train_cfg.max_iters
    hook = make_progress_hook(name, iters, every=max(1, min(25, iters // 10)))
    runner.register_hook(hook)
    return runner, hook, iters


def train(name: str, config: str, work_dir: str, data_root: str, max_iters, what: str):
    log(f'\n== {what}\n   config configs/{config}')
    start = time.perf_counter()
    runner, hook, iters = build_runner(config, work_dir, data_root, max_iters, name)
    model = runner.model
    params = sum(p.numel() for p in model.parameters())
    log(f'   {params / 1e6:.2f}M parameters, {iters} iterations of batch {runner.cfg.train_dataloader.batch_size}')
    with quiet():  # what pycocotools prints while loading and evaluating (the metrics are logged)
        runner.train()
    log(f'   done in {elapsed(start)}')
    return runner, hook.metrics, time.perf_counter() - start


# ------------------------------------------------------------------------------------------- pictures
def draw_pyramids(runners, path: str) -> None:
    """One row per (title, runner): the first validation image, then its backbone's 4x ... 32x maps."""
    from mmengine.dataset import pseudo_collate

    rows = []
    for title, runner in runners:
        model = runner.model.eval()
        item = runner.test_dataloader.dataset[0]
        with torch.no_grad():
            data = model.data_preprocessor(pseudo_collate([item]), False)
            levels = model.backbone(data['inputs'])
        image = item['inputs'].permute(1, 2, 0).numpy()[..., ::-1]  # BGR (3, H, W) -> RGB (H, W, 3)
        rows.append((title, image, dict(zip(model.backbone.out_strides, levels))))
    render_pyramids(rows, path, tile_height=192,
                    title='Feature pyramids of the trained backbones (first 3 principal components as RGB)')


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(prog='tools/demo.py', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo', help='where data, checkpoints and pictures go')
    parser.add_argument('--quick', action='store_true',
                        help='tiny data and a few iterations: checks that everything runs, not the metrics')
    parser.add_argument('--det-iters', type=int, help='Mask R-CNN training iterations (default: the config\'s)')
    parser.add_argument('--seg-iters', type=int, help='UperNet training iterations (default: the config\'s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the generated data')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s choice)')
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = dict(QUICK if args.quick else FULL)
    if args.det_iters:
        settings['det_iters'] = args.det_iters
    if args.seg_iters:
        settings['seg_iters'] = args.seg_iters

    warnings.filterwarnings('ignore')

    start = time.perf_counter()
    work_dir = osp.abspath(args.work_dir)
    data_root = osp.join(work_dir, 'toy_data')
    log(f'swin_backbones demo ({"quick" if args.quick else "full"}): torch {torch.__version__}, '
        f'{torch.get_num_threads()} CPU threads; output in {work_dir}')

    log(f'\n== generating toy data in {data_root}')
    summary = make_toy_data(data_root, settings['num_train'], settings['num_val'], seed=args.seed)
    log(f"   instance set (COCO format): {summary['coco']['train']['images']} train / "
        f"{summary['coco']['val']['images']} val images, {summary['coco']['train']['objects']} / "
        f"{summary['coco']['val']['objects']} objects; semantic set (ADE20K layout): "
        f"{summary['ade']['training']['images']} / {summary['ade']['validation']['images']} images; "
        f"{summary['size']}x{summary['size']} px, classes {', '.join(summary['classes'])}  [{elapsed(start)}]")

    det_runner, det_metrics, det_time = train(
        'det', DET_CONFIG, osp.join(work_dir, 'mask-rcnn_swin'), data_root, settings['det_iters'],
        'Mask R-CNN + FPN + Swin on the instance set')
    seg_runner, seg_metrics, seg_time = train(
        'seg', SEG_CONFIG, osp.join(work_dir, 'upernet_crossformer'), data_root, settings['seg_iters'],
        'UperNet + CrossFormer on the semantic set')

    log('\n== pictures')
    pictures = {
        'detections': osp.join(work_dir, 'predictions_mask-rcnn_swin.png'),
        'segmentations': osp.join(work_dir, 'predictions_upernet_crossformer.png'),
        'pyramids': osp.join(work_dir, 'feature_pyramids.png'),
    }
    with quiet():
        draw_predictions(det_runner.model, det_runner.test_dataloader.dataset, pictures['detections'],
                         title='Mask R-CNN + Swin on validation images (mmdet DetLocalVisualizer)')
        draw_predictions(seg_runner.model, seg_runner.test_dataloader.dataset, pictures['segmentations'],
                         title='UperNet + CrossFormer on validation images (mmseg SegLocalVisualizer)')
        draw_pyramids([('Swin (Mask R-CNN)', det_runner), ('CrossFormer (UperNet)', seg_runner)],
                      pictures['pyramids'])
    for path in pictures.values():
        log(f'   {path}')

    def metric(metrics, key, scale=1.0):
        return None if metrics.get(key) is None else round(float(metrics[key]) * scale, 4)

    results = {
        'bbox mAP@0.5': metric(det_metrics, 'coco/bbox_mAP_50'),
        'bbox mAP': metric(det_metrics, 'coco/bbox_mAP'),
        'segm mAP@0.5': metric(det_metrics, 'coco/segm_mAP_50'),
        'segm mAP': metric(det_metrics, 'coco/segm_mAP'),
        'mIoU': metric(seg_metrics, 'mIoU', 0.01),  # mmseg reports percentages
        'aAcc': metric(seg_metrics, 'aAcc', 0.01),
    }
    total = time.perf_counter() - start
    log(f'\n== results on the toy validation sets ({"quick run: metrics not checked" if args.quick else "full run"})')
    for key, value in results.items():
        bar = THRESHOLDS.get(key)
        verdict = '' if bar is None or args.quick else ('  ok (>= %.1f)' % bar if value is not None and value >= bar
                                                         else '  BELOW %.1f' % bar)
        log(f'   {key:<14} {"n/a" if value is None else f"{value:.3f}"}{verdict}')
    log(f'   training: Mask R-CNN {det_time / 60:.1f} min, UperNet {seg_time / 60:.1f} min; '
        f'total wall time {elapsed(start)}')
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(dict(metrics=results, wall_time_s=round(total, 1), det_train_s=round(det_time, 1),
                       seg_train_s=round(seg_time, 1), quick=args.quick, pictures=pictures), f, indent=1)
    failed = [key for key, bar in THRESHOLDS.items() if results[key] is None or results[key] < bar]
    if failed and not args.quick:
        log(f'FAILED: {", ".join(failed)} below the target')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
