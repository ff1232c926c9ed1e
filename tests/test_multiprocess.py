"""Training in two CPU processes (torchrun, gloo) with each backbone, frozen stages on and off, and
resuming a two-process run from its checkpoint."""
import sys

import pytest
import torch

from .helpers import (TOY_CONFIGS, check, make_small_toy_data, read_checkpoint, run,
                          short_run_options, train_iterations)

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    return make_small_toy_data(str(tmp_path_factory.mktemp('toy_data')))


def torchrun(config, work_dir, data_root, *options, nproc=2):
    """tools/dist_train.sh: torchrun with NPROC processes of tools/train.py --launcher pytorch."""
    command = ['bash', 'tools/dist_train.sh', config, nproc, '--work-dir', work_dir, *options]
    return run(command, data_root, env={'OMP_NUM_THREADS': '1', 'PYTHON': sys.executable})


@pytest.mark.parametrize('frozen_stages', [-1, 1])
@pytest.mark.parametrize('task, backbone', [('det', 'swin'), ('seg', 'crossformer')])
def test_two_process_training(tmp_path, toy_data, task, backbone, frozen_stages):
    """DDP without find_unused_parameters fails from the second iteration on if any parameter that
    requires a gradient did not get one; with frozen stages their parameters must not require one."""
    work_dir = tmp_path / 'work'
    log = check(torchrun(TOY_CONFIGS[task, backbone], work_dir, toy_data, '--cfg-options',
                         *short_run_options(iters=3), f'model.backbone.frozen_stages={frozen_stages}'))
    assert 'Distributed training: True' in log
    assert "'backend': 'gloo'" in log or 'backend=gloo' in log or "backend='gloo'" in log
    assert 'find_unused_parameters=False' in log or "'find_unused_parameters': False" in log
    assert 'were not used in producing loss' not in log and 'finished reduction' not in log
    assert train_iterations(log) == [1, 2, 3]
    assert ('coco/bbox_mAP_50:' if task == 'det' else 'mIoU:') in log  # evaluation across both processes
    if frozen_stages == -1:  # tools/dist_test.sh on the checkpoint, two processes as well
        log = check(run(['bash', 'tools/dist_test.sh', TOY_CONFIGS[task, backbone], work_dir / 'iter_3.pth', 2,
                         '--work-dir', tmp_path / 'eval'], toy_data,
                        env={'OMP_NUM_THREADS': '1', 'PYTHON': sys.executable}))
        assert 'Distributed training: True' in log  # (mmengine's wording for any multi-process run)
        assert ('coco/bbox_mAP_50:' if task == 'det' else 'mIoU:') in log
    state = read_checkpoint(str(work_dir / 'iter_3.pth'))
    weights = state['state_dict']
    assert not any(key.startswith('module.') for key in weights)
    parameters = [k for k in weights if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))]
    optimized = [i for group in state['optimizer']['param_groups'] for i in group['params']]
    # Every optimized parameter took all three steps; frozen ones (the stem and stage 1) are not optimized.
    assert sorted(state['optimizer']['state']) == sorted(optimized)
    assert {int(s['step']) for s in state['optimizer']['state'].values()} == {3}
    frozen = [k for k in parameters if k.startswith(('backbone.patch_embed.', 'backbone.stages.0.', 'backbone.norm0.'))]
    assert len(frozen) > 10
    assert len(parameters) - len(optimized) == (len(frozen) if frozen_stages == 1 else 0)


def test_a_hanging_run_fails_with_every_process_traceback(tmp_path):
    """What a hang in these tests reports: the command's output ending with where each process waits."""
    script = tmp_path / 'wait_forever.py'
    script.write_text('import time\n\ndef wait_for_a_peer():\n    time.sleep(3600)\n\nwait_for_a_peer()\n')
    with pytest.raises(pytest.fail.Exception) as failure:
        run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', script],
            str(tmp_path), timeout=20)
    report = str(failure.value)
    assert report.startswith('still running after 20 s')
    assert report.count('in wait_for_a_peer') == 2  # both workers


DETERMINISTIC_SEG_CONFIG = '''
_base_ = '{base}'
model = dict(decode_head=dict(dropout_ratio=0.0), auxiliary_head=dict(dropout_ratio=0.0))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]))
'''


def test_two_process_resume_continues_where_it_stopped(tmp_path, toy_data):
    """Run A trains 4 iterations; run B resumes A's iteration-2 checkpoint and trains to 4. B starts at
    iteration 3 with A's optimizer state, and (the data order is seeded, the augmentations and
    dropout are switched off here, deterministic mode is on, and the fast path's kernels are fixed rules,
    the same in both runs) ends where A ended."""
    config = tmp_path / 'deterministic.py'
    config.write_text(DETERMINISTIC_SEG_CONFIG.format(base=TOY_CONFIGS['seg', 'crossformer']))
    deterministic = ['randomness.seed=0', 'randomness.deterministic=True']
    run_a, run_b = tmp_path / 'a', tmp_path / 'b'
    check(torchrun(config, run_a, toy_data, '--cfg-options',
                   *short_run_options(iters=4, checkpoint_interval=2, val=False), *deterministic))
    at_2 = read_checkpoint(str(run_a / 'iter_2.pth'))
    at_4 = read_checkpoint(str(run_a / 'iter_4.pth'))
    run_b.mkdir()
    log = check(torchrun(config, run_b, toy_data, '--resume', run_a / 'iter_2.pth', '--cfg-options',
                         *short_run_options(iters=4, checkpoint_interval=2, val=False), *deterministic))
    assert 'resumed epoch: 0, iter: 2' in log
    assert train_iterations(log) == [3, 4]
    resumed = read_checkpoint(str(run_b / 'iter_4.pth'))

    assert at_2['meta']['iter'] == 2 and at_4['meta']['iter'] == resumed['meta']['iter'] == 4
    assert resumed['message_hub']['runtime_info']['iter'] == 3  # the last iteration run (0-based)
    steps_a = {i: int(s['step']) for i, s in at_4['optimizer']['state'].items()}
    steps_b = {i: int(s['step']) for i, s in resumed['optimizer']['state'].items()}
    assert set(steps_a.values()) == {4} and steps_b == steps_a
    assert resumed['param_schedulers'] == at_4['param_schedulers']
    for i, state_a in at_4['optimizer']['state'].items():
        for key in ('exp_avg', 'exp_avg_sq'):
            torch.testing.assert_close(resumed['optimizer']['state'][i][key], state_a[key], rtol=1e-3, atol=1e-7)
    for key, value in at_4['state_dict'].items():
        torch.testing.assert_close(resumed['state_dict'][key], value, rtol=1e-3, atol=1e-5)
