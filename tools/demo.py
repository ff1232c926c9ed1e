"""Training demo on generated data, on the CPU, in minutes.

    bash tools/run.sh demo              # = python tools/demo.py
    python tools/demo.py --quick        # a shortened run (tiny data, a few iterations; what CI runs)

1. writes the toy data sets (tools/make_toy_data.py): circles, squares and triangles on textured
   backgrounds, as a COCO-format instance set and an ADE20K-layout semantic set;
2. trains Mask R-CNN + FPN with a slim Swin (configs/toy/mask-rcnn_swin-toy_fpn_toy-coco.py) and
   evaluates it with mmdet's CocoMetric (COCO box and mask mAP through pycocotools);
3. trains UperNet with a slim CrossFormer (configs/toy/upernet_crossformer-toy_toy-ade.py) and
   evaluates it with mmseg's IoUMetric (mIoU);
4. saves a picture of predictions on validation images and a picture of both backbones' feature
   pyramids (first three principal components of each level as RGB), and prints their paths.

Everything goes under --work-dir (default work_dirs/demo). The full run checks that box mAP@0.5 and
mIoU reach 0.5 and exits with status 1 if they do not.
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

# torch's OpenMP threads busy-wait between parallel regions by default. With 2 cores shared with any
# other busy program, that makes the many small operations of these slim models many times slower
# (UperNet iterations went from 0.2 s to 4-7 s beside other jobs on the 2-core test machine). Threads
# that sleep while they wait cost about 35% on an idle machine and keep the demo within minutes when
# the machine is busy (measured: 0.47 / 0.56 s per Mask R-CNN iteration idle / beside a busy program,
# against 0.35 / 0.87 with a short spin and far worse with the default). Set OMP_WAIT_POLICY=ACTIVE
# for the last bit of speed on an idle machine. Must precede importing torch.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import numpy as np  # noqa: E402
import torch  # noqa: E402

TOOLS = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from make_toy_data import PALETTE, make_toy_data  # noqa: E402

DET_CONFIG = osp.join(REPO, 'configs/toy/mask-rcnn_swin-toy_fpn_toy-coco.py')
SEG_CONFIG = osp.join(REPO, 'configs/toy/upernet_crossformer-toy_toy-ade.py')
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
        cfg = Config.fromfile(config)
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
    log(f'\n== {what}\n   config {osp.relpath(config, REPO)}')
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
def _to_rgb(inputs: torch.Tensor) -> np.ndarray:
    """A data sample's input (3, H, W) BGR uint8 tensor -> (H, W, 3) RGB uint8."""
    return inputs.permute(1, 2, 0).numpy()[..., ::-1].copy()


def draw_detections(runner, out_path: str, count: int = 4, score_thr: float = 0.5) -> None:
    import cv2
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmengine.dataset import pseudo_collate

    dataset = runner.test_dataloader.dataset
    classes = dataset.metainfo['classes']
    model = runner.model.eval()
    count = min(count, len(dataset))
    fig, axes = plt.subplots(1, count, figsize=(3.2 * count, 3.4), squeeze=False)
    for ax, index in zip(axes[0], range(count)):
        item = dataset[index]
        with torch.no_grad():
            result = model.test_step(pseudo_collate([item]))[0]
        image = cv2.cvtColor(cv2.imread(result.img_path), cv2.COLOR_BGR2RGB).astype(np.float32)
        pred = result.pred_instances
        keep = pred.scores >= score_thr
        overlay = image.copy()
        for mask, label in zip(pred.masks[keep].numpy(), pred.labels[keep].tolist()):
            overlay[mask] = 0.45 * overlay[mask] + 0.55 * np.array(PALETTE[label + 1], np.float32)
        ax.imshow(overlay.clip(0, 255).astype(np.uint8))
        for box, label, score in zip(pred.bboxes[keep].tolist(), pred.labels[keep].tolist(), pred.scores[keep].tolist()):
            x0, y0, x1, y1 = box
            colour = np.array(PALETTE[label + 1]) / 255
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=1.5))
            ax.text(x0, y0 - 1, f'{classes[label]} {score:.2f}', color='white', fontsize=7,
                    bbox=dict(facecolor=colour, alpha=0.8, pad=1, edgecolor='none'))
        ax.set_title(f'{osp.basename(result.img_path)}: {int(keep.sum())} found, '
                     f'{len(result.gt_instances)} true', fontsize=8)
        ax.axis('off')
    fig.suptitle(f'Mask R-CNN + Swin: predictions with score >= {score_thr} on validation images', fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def draw_segmentations(runner, out_path: str, count: int = 4) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmengine.dataset import pseudo_collate

    dataset = runner.test_dataloader.dataset
    palette = np.array(dataset.metainfo['palette'], np.uint8)
    model = runner.model.eval()
    count = min(count, len(dataset))
    fig, axes = plt.subplots(3, count, figsize=(2.6 * count, 8), squeeze=False)
    for column, index in enumerate(range(count)):
        item = dataset[index]
        with torch.no_grad():
            result = model.test_step(pseudo_collate([item]))[0]
        image = _to_rgb(item['inputs'])
        truth = result.gt_sem_seg.data[0].numpy()
        pred = result.pred_sem_seg.data[0].numpy()
        truth_rgb = np.where((truth == 255)[..., None], 0, palette[np.minimum(truth, len(palette) - 1)])
        for row, (picture, title) in enumerate(((image, 'image'), (truth_rgb, 'ground truth'),
                                                (palette[pred], 'prediction'))):
            axes[row, column].imshow(picture)
            axes[row, column].set_title(title, fontsize=8)
            axes[row, column].axis('off')
    fig.suptitle('UperNet + CrossFormer: semantic segmentation of validation images', fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


def draw_pyramids(runners, out_path: str) -> None:
    """Rows: each backbone; columns: the input, then the 4x, 8x, 16x and 32x maps as PCA colours."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from mmengine.dataset import pseudo_collate

    from swin_backbones.visualization import principal_components_rgb

    fig, axes = plt.subplots(len(runners), 5, figsize=(13, 3.1 * len(runners) + 0.4), squeeze=False)
    for row, (title, runner) in enumerate(runners):
        model = runner.model.eval()
        item = runner.test_dataloader.dataset[0]
        with torch.no_grad():
            data = model.data_preprocessor(pseudo_collate([item]), False)
            feats = model.backbone(data['inputs'])
        axes[row, 0].imshow(_to_rgb(item['inputs']))
        axes[row, 0].set_title(f'{title}\ninput {tuple(data["inputs"].shape[2:])}', fontsize=8)
        for column, feat in enumerate(feats, start=1):
            axes[row, column].imshow(principal_components_rgb(feat[0]), interpolation='nearest')
            axes[row, column].set_title(f'C{column + 1}: {tuple(feat.shape[1:])}, stride {2 ** (column + 1)}',
                                        fontsize=8)
        for ax in axes[row]:
            ax.axis('off')
    fig.suptitle('Feature pyramids of the trained backbones (first 3 principal components as RGB)', fontsize=10)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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

    from runner_utils import use_safe_checkpoint_loading
    use_safe_checkpoint_loading()
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
        draw_detections(det_runner, pictures['detections'])
        draw_segmentations(seg_runner, pictures['segmentations'])
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
