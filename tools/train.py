"""Train a detector (mmdet) or a segmentor (mmseg) from a config; the config's default scope picks which.

    python tools/train.py configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py
    python tools/train.py CONFIG --work-dir work_dirs/run1 --resume          # continue from the latest checkpoint
    python tools/train.py CONFIG --resume work_dirs/run1/iter_4000.pth      # or from a given one
    python tools/train.py CONFIG --amp --cfg-options train_dataloader.batch_size=4
    bash tools/dist_train.sh CONFIG 8 [options]                              # 8 processes (torchrun)

Works like mmdet's and mmseg's own tools/train.py (one tool for both), and in addition, with
--launcher pytorch on a machine without a GPU, training runs in several CPU processes (gloo).
Checkpoints written by mmengine are read without running code from them, as with mmdet's and mmseg's
own tools: importing swin_backbones makes mmengine read local checkpoints safely.
"""
import argparse
import logging
import os

import torch
from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from swin_backbones.runner import SCOPES, default_work_dir, finish_distributed, load_config, prepare_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from the given checkpoint, or without a path from the latest checkpoint '
                             'in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision training (needs a GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help="scale the learning rate by the actual batch size over auto_scale_lr.base_batch_size")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs (e.g. train_cfg.max_iters=100)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = default_work_dir(cfg, args.config, args.work_dir)

    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a GPU: mmengine\'s AmpOptimWrapper does not run on CPUs')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print_log('AMP training is already enabled in the config', logger='current', level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise SystemExit('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    prepare_distributed(cfg, args.launcher)
    print_log(f'training a {SCOPES[cfg.default_scope]} model from {args.config}; work dir {cfg.work_dir}',
              logger='current')
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
