"""Shared by the end-to-end tests: toy data, running the tools in subprocesses, reading checkpoints."""
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
MIM_TOOLS = {scope: osp.join(osp.dirname(__import__(scope).__file__), '.mim', 'tools') for scope in ('mmdet', 'mmseg')}

TOY_CONFIGS = {
    ('det', 'swin'): osp.join(REPO, 'configs/toy/mask-rcnn_swin-toy_fpn_toy-coco.py'),
    ('det', 'crossformer'): osp.join(REPO, 'configs/toy/mask-rcnn_crossformer-toy_fpn_toy-coco.py'),
    ('seg', 'swin'): osp.join(REPO, 'configs/toy/upernet_swin-toy_toy-ade.py'),
    ('seg', 'crossformer'): osp.join(REPO, 'configs/toy/upernet_crossformer-toy_toy-ade.py'),
    ('det', 'swinv2'): osp.join(REPO, 'configs/toy/mask-rcnn_swinv2-toy_fpn_toy-coco.py'),
    ('seg', 'swinv2'): osp.join(REPO, 'configs/toy/upernet_swinv2-toy_toy-ade.py'),
}


def tools_module(name: str):
    """Imports tools/<name>.py (the tools folder is not a package)."""
    if TOOLS not in sys.path:
        sys.path.insert(0, TOOLS)
    return __import__(name)


def make_small_toy_data(root: str, num_train: int = 16, num_val: int = 8) -> str:
    tools_module('make_toy_data').make_toy_data(root, num_train=num_train, num_val=num_val, size=128, seed=0)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def short_run_options(iters: int = 2, checkpoint_interval=None, val: bool = True):
    """--cfg-options for a few iterations: logs every iteration, checkpoints at the end (or every N)."""
    interval = checkpoint_interval or iters
    options = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters if val else 10 ** 6}',
               f'default_hooks.checkpoint.interval={interval}', 'default_hooks.checkpoint.max_keep_ckpts=5',
               'default_hooks.logger.interval=1']
    return options


def run(command, data_root: str, timeout: int = 600, env=None):
    """Runs a command with TOY_DATA set; returns the CompletedProcess (stdout and stderr merged)."""
    full_env = dict(os.environ, TOY_DATA=data_root, OMP_WAIT_POLICY='PASSIVE', PYTHONWARNINGS='ignore')
    full_env.update(env or {})
    return subprocess.run([str(c) for c in command], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def check(result):
    """The output of a command that must succeed; on failure, the end of its output (where the error is)."""
    if result.returncode != 0:
        lines = [line for line in result.stdout.splitlines() if 'paramwise_options' not in line]
        pytest.fail(f'exit status {result.returncode}:\n' + '\n'.join(lines[-80:]), pytrace=False)
    return result.stdout


def train_iterations(log: str):
    """The training iterations logged as 'Iter(train) [i/n]'."""
    return [int(m.group(1)) for m in re.finditer(r'Iter\(train\) \[\s*(\d+)/\d+\]', log)]


def read_checkpoint(path: str):
    return tools_module('runner_utils').read_runner_checkpoint(path, map_location='cpu')
