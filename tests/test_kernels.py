"""The per-device kernel choice (swin_backbones.models.kernels): overrides, measuring once per device key, the
margin that keeps the default, and what is offered where. Whether each kernel computes the right numbers
is tests/test_fast_paths.py's business."""
import pytest
import torch

from swin_backbones import SwinTransformer
from swin_backbones.models import kernels

CPU = torch.device('cpu')


@pytest.fixture
def fresh(monkeypatch):
    """An empty cache of measured choices, no environment override, and a count of measurements."""
    monkeypatch.setattr(kernels, '_measured', {})
    monkeypatch.setattr(kernels, '_timings', {})
    monkeypatch.delenv(kernels.ENV_VARIABLE, raising=False)
    measured = []

    def measure(key, decision, device, dtype, length_class):  # the default, without timing anything
        measured.append(key)
        kernels._measured[key], kernels._timings[key] = kernels.DECISIONS[decision].candidates[0], {}
        return kernels._measured[key]
    monkeypatch.setattr(kernels, '_measure', measure)
    return measured


def test_argument_overrides_environment_overrides_measurement(fresh, monkeypatch):
    assert kernels.choose('linear', CPU, torch.float32, dict(linear='onednn')) == 'onednn'
    monkeypatch.setenv(kernels.ENV_VARIABLE, ' weight_grad = grad_t_input , linear=onednn')
    assert kernels.choose('weight_grad', CPU, torch.float32) == 'grad_t_input'
    assert kernels.choose('weight_grad', CPU, torch.float32, dict(weight_grad='input_t_grad')) == 'input_t_grad'
    assert kernels.choose('attention', CPU, torch.float32, dict(linear='aten'), shape=49) == 'sdpa'  # measured
    assert len(fresh) == 1


@pytest.mark.parametrize('value, message', [
    ('linear', 'must look like'),
    ('linear=mkl', r"linear must be one of \('aten', 'onednn'\), got 'mkl'"),
    ('gemm=aten', "unknown kernel decision 'gemm'"),
])
def test_bad_environment_value_is_named(fresh, monkeypatch, value, message):
    monkeypatch.setenv(kernels.ENV_VARIABLE, value)
    with pytest.raises(ValueError, match=f'{kernels.ENV_VARIABLE}.*{message}'):
        kernels.choose('linear', CPU, torch.float32)


def test_measured_once_per_device_key(fresh):
    threads = torch.get_num_threads()
    try:
        for _ in range(2):
            kernels.choose('linear', CPU, torch.float32)
            kernels.choose('attention', CPU, torch.float32, shape=49)
            kernels.choose('attention', CPU, torch.float32, shape=64)  # same length class
        assert len(fresh) == 2
        kernels.choose('attention', CPU, torch.float32, shape=1000)  # long groups are decided apart
        kernels.choose('attention', CPU, torch.bfloat16, shape=49)  # dtypes are decided apart
        torch.set_num_threads(1 if threads > 1 else 2)
        kernels.choose('linear', CPU, torch.float32)
    finally:
        torch.set_num_threads(threads)
    assert len(fresh) == 5
    assert all(torch.backends.cpu.get_cpu_capability() in key for key in fresh)


def test_deterministic_algorithms_take_the_first_candidate_unmeasured(fresh, monkeypatch):
    """A measurement may choose differently in another run (and so round differently): deterministic mode,
    which must repeat to the bit, does not measure. Explicit overrides still apply."""
    monkeypatch.setattr(torch, 'are_deterministic_algorithms_enabled', lambda: True)
    assert kernels.choose('linear', CPU, torch.float32) == 'aten'
    assert kernels.choose('attention', CPU, torch.float32, shape=49) == 'sdpa'
    assert kernels.choose('attention_backward', CPU, torch.float32, shape=1000) == 'store'
    assert kernels.choose('weight_grad', CPU, torch.float32) == 'grad_t_input'
    assert kernels.choose('weight_grad', CPU, torch.float32, dict(weight_grad='input_t_grad')) == 'input_t_grad'
    assert fresh == []


def test_only_available_kernels_are_offered(fresh):
    meta = torch.device('meta')
    assert kernels.DECISIONS['linear'].available(meta, torch.float32) == ('aten',)
    assert kernels.DECISIONS['linear'].available(CPU, torch.float16) == ('aten',)
    # One candidate: nothing to measure; an override that is not available here is not taken.
    assert kernels.choose('linear', meta, torch.float32, dict(linear='onednn')) == 'aten'
    assert not fresh


@pytest.mark.parametrize('seconds, expected', [
    (dict(store=1.0, recompute=0.99), 'store'),  # within the margin: the default stays
    (dict(store=1.0, recompute=0.9), 'recompute'),
    (dict(store=0.5, recompute=1.0), 'store'),
])
def test_the_default_stays_unless_another_is_clearly_faster(monkeypatch, seconds, expected):
    monkeypatch.setattr(kernels, '_measured', {})
    monkeypatch.setattr(kernels, '_timings', {})
    monkeypatch.setattr(kernels, '_time', lambda run, device: run())
    decision = kernels.DECISIONS['attention_backward']
    monkeypatch.setitem(kernels.DECISIONS, 'attention_backward', decision._replace(
        workloads=lambda *args: {name: (lambda s=s: s) for name, s in seconds.items()}))
    assert kernels.choose('attention_backward', CPU, torch.float32, shape=49) == expected
    (choice, timings), = kernels.measured_choices().values()
    assert choice == expected and timings == seconds


def test_each_length_class_is_timed_on_groups_of_its_own_length():
    """A class timed on another class's groups would decide for the wrong regime (a single long group's
    probabilities fit in cache, a real layer's do not)."""
    assert [kernels.length_class(n) for n in (1, 49, 64, 65, 256, 320, 321, 1050)] == [
        'short', 'short', 'short', 'medium', 'medium', 'medium', 'long', 'long']
    for _, name in kernels.LENGTH_CLASSES:
        shapes = kernels._ATTENTION_SHAPES[name]
        assert shapes and all(kernels.length_class(length) == name for _, _, length, _ in shapes)


def test_real_measurement_times_every_candidate(monkeypatch):
    monkeypatch.setattr(kernels, '_measured', {})
    monkeypatch.setattr(kernels, '_timings', {})
    monkeypatch.delenv(kernels.ENV_VARIABLE, raising=False)
    for decision, length in (('linear', None), ('weight_grad', None), ('attention', 49), ('attention_backward', 49),
                             ('attention_backward', 256), ('attention_backward', 1050)):
        choice = kernels.choose(decision, CPU, torch.float32, shape=length)
        key = (decision, kernels.length_class(length) if length else None) + kernels.device_key(CPU, torch.float32)
        measured_choice, timings = kernels.measured_choices()[key]
        assert choice == measured_choice
        assert set(timings) == set(kernels.DECISIONS[decision].available(CPU, torch.float32))
        assert all(0 < seconds < 10 for seconds in timings.values())


@pytest.mark.timeout(900)
def test_first_measurement_under_activation_checkpointing(monkeypatch):
    """Choices first made inside a checkpointed block (whose saved-tensor hooks would recompute the block
    in the measurement's own backward, and so wait for the choice being made) are measured apart."""
    monkeypatch.setattr(kernels, '_measured', {})
    monkeypatch.setattr(kernels, '_timings', {})
    monkeypatch.delenv(kernels.ENV_VARIABLE, raising=False)
    model = SwinTransformer(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), with_cp=True,
                            drop_path_rate=0.0).train()
    sum(out.sum() for out in model(torch.randn(1, 3, 64, 64))).backward()
    assert ('attention_backward', 'short') + kernels.device_key(CPU, torch.float32) in kernels.measured_choices()
