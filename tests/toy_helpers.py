"""Shared by the end-to-end tests: toy data, running the tools in subprocesses, reading checkpoints."""
import os
import os.path as osp
import re
import signal
import subprocess
import time

import pytest

from swin_backbones.checkpoint import read_checkpoint as read_checkpoint_safely
from swin_backbones.toy_data import make_toy_data

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
# The toy twins of the other heads the published configs use: (scope, config).
TOY_HEAD_CONFIGS = {
    'cascade-mask-rcnn': ('mmdet',
                          osp.join(REPO, 'configs/toy/cascade-mask-rcnn_swin-toy_fpn_4conv1f-giou_toy-coco.py')),
    'retinanet': ('mmdet', osp.join(REPO, 'configs/toy/retinanet_crossformer-toy_fpn_toy-coco.py')),
    'semantic-fpn': ('mmseg', osp.join(REPO, 'configs/toy/fpn_crossformer-toy_toy-ade.py')),
}


def make_small_toy_data(root: str, num_train: int = 16, num_val: int = 8) -> str:
    make_toy_data(root, num_train=num_train, num_val=num_val, size=128, seed=0)
    return root


def short_run_options(iters: int = 2, checkpoint_interval=None, val: bool = True):
    """--cfg-options for a few iterations: logs every iteration, checkpoints at the end (or every N)."""
    interval = checkpoint_interval or iters
    options = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters if val else 10 ** 6}',
               f'default_hooks.checkpoint.interval={interval}', 'default_hooks.checkpoint.max_keep_ckpts=5',
               'default_hooks.logger.interval=1']
    return options


def run(command, data_root: str, timeout: int = 900, env=None):
    """Runs a command with TOY_DATA set; returns the CompletedProcess (stdout and stderr merged).

    A command still running after ``timeout`` seconds fails the test with its output, which then ends
    with the Python traceback of every thread of every process it started (faulthandler, dumped on
    SIGABRT: torchrun's agent and each worker), so a hang shows where it waits.
    """
    full_env = dict(os.environ, TOY_DATA=data_root, OMP_WAIT_POLICY='PASSIVE', PYTHONWARNINGS='ignore',
                    PYTHONFAULTHANDLER='1')
    full_env.update(env or {})
    process = subprocess.Popen([str(c) for c in command], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun starts its workers in sessions of their own: signal the whole tree, found first.
        tree = [process.pid] + descendants(process.pid)
        for pid in tree:
            _abort_and_wait(pid)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _signal_all(tree, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f'still running after {timeout} s: {" ".join(map(str, command))}\n'
                    + '\n'.join(output.splitlines()[-300:]), pytrace=False)
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def descendants(pid: int):
    """Every process below ``pid``, children before grandchildren (from /proc)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{entry}/stat') as stat:
                parent = int(stat.read().rsplit(')', 1)[1].split()[1])  # after "pid (name) state"
        except OSError:  # exited meanwhile
            continue
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _abort_and_wait(pid: int, wait: float = 10.0) -> None:
    """SIGABRT to one process, then wait (up to ``wait`` s) until it has dumped and ended: faulthandler
    writes a traceback in many small writes, and two processes dumping into the same pipe at once
    interleave them mid-line."""
    _signal_all([pid], signal.SIGABRT)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited child that its parent has not reaped yet does not)."""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _signal_all(pids, signum) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


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
    return read_checkpoint_safely(path, map_location='cpu')
