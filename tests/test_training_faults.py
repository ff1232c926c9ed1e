"""A training run killed mid-way resumes from its last checkpoint, losing at most one checkpoint interval."""
import os
import subprocess
import sys
import time

import pytest

from .helpers import (REPO, TOOLS, TOY_CONFIGS, check, make_small_toy_data, read_checkpoint, run,
                          short_run_options, train_iterations)

pytestmark = pytest.mark.slow

ITERATIONS = 12
CHECKPOINT_INTERVAL = 2


def test_killed_run_resumes_from_its_last_checkpoint(tmp_path):
    data = make_small_toy_data(str(tmp_path / 'toy_data'))
    work_dir = tmp_path / 'run'
    command = [sys.executable, os.path.join(TOOLS, 'train.py'), TOY_CONFIGS['seg', 'swin'], '--work-dir', work_dir,
               '--cfg-options', *short_run_options(ITERATIONS, CHECKPOINT_INTERVAL, val=False)]
    env = dict(os.environ, TOY_DATA=data, OMP_WAIT_POLICY='PASSIVE', PYTHONWARNINGS='ignore')
    first_log = tmp_path / 'first.log'
    with open(first_log, 'w') as log_file:
        process = subprocess.Popen([str(c) for c in command], cwd=REPO, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not (work_dir / 'iter_4.pth').exists():
            assert process.poll() is None, 'training ended before it could be killed:\n' + first_log.read_text()
            assert time.monotonic() < deadline, 'no checkpoint within 5 minutes'
            time.sleep(0.1)
        time.sleep(1.0)  # let it run on past the checkpoint, as a crash would
        process.kill()  # SIGKILL: no handler runs, like a lost machine
        process.wait()

    last_logged = max(train_iterations(first_log.read_text()))
    last_saved = int((work_dir / 'last_checkpoint').read_text().strip().rsplit('iter_', 1)[1].split('.')[0])
    assert last_saved < ITERATIONS, 'the run finished before the kill'
    assert last_logged - last_saved <= CHECKPOINT_INTERVAL

    log = check(run(command + ['--resume'], data))
    assert f'resumed epoch: 0, iter: {last_saved}' in log
    resumed = train_iterations(log)
    assert resumed[0] == last_saved + 1 and resumed[-1] == ITERATIONS
    final = read_checkpoint(str(work_dir / f'iter_{ITERATIONS}.pth'))
    assert final['meta']['iter'] == ITERATIONS
    assert {int(state['step']) for state in final['optimizer']['state'].values()} == {ITERATIONS}
