"""Test (evaluate) a trained detector (mmdet) or segmentor (mmseg); the config's default scope picks which.

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --work-dir work_dirs/eval --show-dir vis
    python tools/test.py CONFIG CHECKPOINT --out results.pkl          # mmdet: dump the predictions
    python tools/test.py CONFIG CHECKPOINT --out pred_maps/           # mmseg: save the predicted label maps
    bash tools/dist_test.sh CONFIG CHECKPOINT 8 [options]              # 8 processes (torchrun)

Options as in mmdet's and mmseg's tools/test.py. Checkpoints written by mmengine's runner are read
without running code from them (importing swin_backbones makes mmengine read local checkpoints safely);
on machines without a GPU, --launcher pytorch runs CPU processes (gloo).
"""
import argparse
import os
from copy import deepcopy

from mmengine.config import ConfigDict, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from swin_backbones.runner import default_work_dir, finish_distributed, load_config, prepare_distributed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the file containing evaluation metrics')
    parser.add_argument('--out', help='mmdet: pickle file to dump the predictions to; '
                                      'mmseg: directory to save the predicted label maps in')
    parser.add_argument('--show', action='store_true', help='show prediction results')
    parser.add_argument('--show-dir', help='folder under the work dir to save painted images in')
    parser.add_argument('--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args) -> None:
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        raise SystemExit("--show/--show-dir need a visualization hook in default_hooks "
                         "(DetVisualizationHook / SegVisualizationHook)")
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if cfg.default_scope == 'mmdet':  # mmdet puts it under work_dir/<timestamp>/
            hook['test_out_dir'] = args.show_dir
        else:  # under the work dir too (mmseg's own tool takes it relative to the current directory)
            cfg.visualizer['save_dir'] = os.path.join(cfg.work_dir, args.show_dir)
            hook['interval'] = 1  # every image, as mmdet does (mmseg's default: every 50th batch)


def use_tta(cfg) -> None:
    if cfg.default_scope == 'mmseg':
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise SystemExit('--tta needs tta_model and tta_pipeline in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
        return
    if cfg.model.get('roi_head', {}).get('mask_head') is not None:
        raise SystemExit('--tta: mmdet 3.3 merges boxes only; it has no test-time augmentation for instance masks')
    # mmdet's defaults: horizontal flip, boxes merged by NMS.
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='DetTTAModel', tta_cfg=dict(nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        dataset = cfg.test_dataloader.dataset
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        cfg.tta_pipeline = deepcopy(dataset.pipeline)
        cfg.tta_pipeline[-1] = dict(type='TestTimeAug', transforms=[
            [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
            [dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor',
                                                   'flip', 'flip_direction'))]])
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg.work_dir = default_work_dir(cfg, args.config, args.work_dir)
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint file not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.tta:
        use_tta(cfg)
    if args.out is not None and cfg.default_scope == 'mmseg':
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.out is not None and cfg.default_scope == 'mmdet' and not args.out.endswith(('.pkl', '.pickle')):
        raise SystemExit('--out must name a .pkl file for a detector')

    prepare_distributed(cfg, args.launcher)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    if args.out is not None and cfg.default_scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()
