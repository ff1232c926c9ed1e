"""pytest hooks and fixtures; the helpers the tests share are in tests/helpers.py."""
import os

import pytest
import torch

# The suite's timings assume CI's two cores; OMP_NUM_THREADS, when set, chooses (checks run with 1 and 2).
if 'OMP_NUM_THREADS' not in os.environ:
    torch.set_num_threads(2)


def pytest_addoption(parser):
    parser.addoption('--device', default='cpu',
                     help='device of the device-parametrised checks (tests/test_device.py): cpu (default), cuda or '
                          'cuda:N; tools/gpu_check.py runs them with cuda')


def selected_device(config) -> torch.device:
    """The ``--device`` option as a torch.device; a device that is malformed or absent stops the run (a check
    asked for on a GPU must not quietly run on the CPU)."""
    name = config.getoption('device')
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f'--device {name!r}: {error}') from None
    if device.type not in ('cpu', 'cuda'):
        raise pytest.UsageError(f'--device takes cpu, cuda or cuda:N, got {name!r}')
    if device.type == 'cuda' and (not torch.cuda.is_available()
                                  or (device.index or 0) >= torch.cuda.device_count()):
        raise pytest.UsageError(f'--device {name}: torch {torch.__version__} sees {torch.cuda.device_count()} CUDA '
                                'device(s)')
    return device


def pytest_configure(config):
    selected_device(config)


@pytest.fixture(scope='session')
def device(pytestconfig) -> torch.device:
    return selected_device(pytestconfig)


@pytest.fixture(autouse=True)
def no_default_scope_left_behind():
    """A default scope left set would send other tests' registry look-ups to mmdet's or mmseg's registry."""
    from mmengine.registry import DefaultScope

    def scope():
        instance = DefaultScope.get_current_instance()
        return instance and instance.scope_name
    before = scope()
    yield
    assert scope() == before
