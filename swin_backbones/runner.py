"""Running mmengine's Runner with this package's configs: what tools/train.py and tools/test.py add.

* :func:`load_config`: reads a config, applies ``--cfg-options`` and checks that its default scope is
  ``mmdet`` (a detector) or ``mmseg`` (a segmentor).
* :func:`prepare_distributed`: multi-process training on machines without a GPU. mmengine 0.10 calls
  ``torch.cuda.set_device`` when it starts the processes and passes ``device_ids`` to DDP, both of
  which fail on CPUs; here the process group is started with gloo directly and the model is wrapped by
  :class:`CPUDistributedDataParallel`. With a GPU nothing changes.

Reading the runner's own checkpoints on torch >= 2.6 needs nothing here: importing ``swin_backbones``
makes mmengine read local checkpoints safely (:func:`swin_backbones.checkpoint.use_safe_checkpoint_loading`).
"""
import datetime
import logging
import os.path as osp

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS

__all__ = ['SCOPES', 'load_config', 'default_work_dir', 'CPUDistributedDataParallel', 'prepare_distributed',
           'finish_distributed']

SCOPES = {'mmdet': 'detection (mmdet)', 'mmseg': 'segmentation (mmseg)'}


def load_config(path: str, cfg_options=None) -> Config:
    if not osp.isfile(path):
        raise SystemExit(f'config file not found: {path}')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise SystemExit(f"{path}: default_scope is {scope!r}; these tools run mmdet ('mmdet') and mmseg "
                         "('mmseg') configs, which get it from their _base_ runtime config")
    return cfg


def default_work_dir(cfg: Config, config_path: str, work_dir=None) -> str:
    """--work-dir, else the config's work_dir, else work_dirs/<config name> (as mmdet and mmseg do)."""
    if work_dir is not None:
        return work_dir
    if cfg.get('work_dir') is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


@MODEL_WRAPPERS.register_module(force=True)
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """MMDistributedDataParallel for models on the CPU: no ``device_ids``, SyncBN replaced by BN
    (SyncBatchNorm needs a GPU; each process then normalises with its own batch statistics)."""

    def __init__(self, module, device_ids=None, output_device=None, **kwargs):
        if any(p.device.type != 'cpu' for p in module.parameters()):
            super().__init__(module=module, device_ids=device_ids, output_device=output_device, **kwargs)
            return
        if any(isinstance(m, torch.nn.SyncBatchNorm) for m in module.modules()):
            print_log('SyncBN needs a GPU: using BN in each training process', logger='current',
                      level=logging.WARNING)
            module = revert_sync_batchnorm(module)
        super().__init__(module=module, **kwargs)


def prepare_distributed(cfg: Config, launcher: str) -> None:
    """Lets ``--launcher pytorch`` work on machines without a GPU (gloo, CPU DDP); no-op with a GPU."""
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise SystemExit(f'--launcher {launcher} needs GPUs; on CPUs use --launcher pytorch (torchrun)')
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') != 'gloo':
        print_log(f"no GPU: using the gloo backend instead of {dist_cfg.get('backend', 'nccl')!r}",
                  logger='current')
        dist_cfg['backend'] = 'gloo'
    if not dist.is_initialized():
        timeout = dist_cfg.get('timeout')
        dist.init_process_group(
            backend='gloo', **({'timeout': datetime.timedelta(seconds=timeout)} if timeout else {}))
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if wrapper.get('type', 'MMDistributedDataParallel') in ('MMDistributedDataParallel', None):
        wrapper_cfg = dict(broadcast_buffers=False, find_unused_parameters=cfg.get('find_unused_parameters', False))
        wrapper_cfg.update(wrapper)
        wrapper_cfg['type'] = 'CPUDistributedDataParallel'
        cfg.model_wrapper_cfg = wrapper_cfg


def finish_distributed() -> None:
    """Waits for every process and closes the process group (a clean exit for torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
