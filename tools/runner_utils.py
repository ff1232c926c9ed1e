"""What tools/train.py, tools/test.py and tools/demo.py share on top of mmengine's Runner.

* :func:`load_config`: reads a config, applies ``--cfg-options`` and checks that its default scope is
  ``mmdet`` (a detector) or ``mmseg`` (a segmentor).
* :func:`use_safe_checkpoint_loading`: mmengine 0.10 reads local checkpoints with ``torch.load``'s
  default, which since torch 2.6 is ``weights_only=True`` and refuses the checkpoints mmengine itself
  writes (they pickle the MessageHub's history buffers). This replaces mmengine's local loader with
  :func:`swin_backbones.checkpoint.read_checkpoint`, which reads them without running code from the
  file and refuses anything else with an error naming it. Resuming and testing then work unchanged.
* :func:`prepare_distributed`: multi-process training on machines without a GPU. mmengine 0.10 calls
  ``torch.cuda.set_device`` when it starts the processes and passes ``device_ids`` to DDP, both of
  which fail on CPUs; here the process group is started with gloo directly and the model is wrapped by
  :class:`CPUDistributedDataParallel`. With a GPU nothing changes.
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
from mmengine.runner import CheckpointLoader

from swin_backbones.checkpoint import read_checkpoint

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


# ------------------------------------------------------------------------------- safe checkpoints
def read_runner_checkpoint(filename: str, map_location=None):
    """Reads a checkpoint written by mmengine's runner (or any weights-only file) without running code."""
    return read_checkpoint(osp.expanduser(filename), map_location=map_location)


def use_safe_checkpoint_loading() -> None:
    """Makes mmengine read local checkpoints with :func:`read_runner_checkpoint` (for this process)."""
    CheckpointLoader.register_scheme(prefixes='', force=True)(read_runner_checkpoint)


# ----------------------------------------------------------------------------- distributed on CPU
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


__all__ = ['SCOPES', 'load_config', 'default_work_dir', 'read_runner_checkpoint', 'use_safe_checkpoint_loading',
           'CPUDistributedDataParallel', 'prepare_distributed', 'finish_distributed']
