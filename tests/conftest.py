import pytest
import torch

torch.set_num_threads(2)


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.2, weight_std: float = 0.05):
    """Fills every parameter with random values so that comparisons can fail.

    Linear/conv weights get ``weight_std`` (about a trained network's scale, so that deep stacks stay
    well conditioned); biases, position bias tables and LayerNorm shifts get ``std``, and LayerNorm
    scales 1 + ``std`` noise: position-bias indexing or masking errors change the outputs visibly.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            for name, param in submodule.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if isinstance(submodule, (torch.nn.Linear, torch.nn.Conv2d)) and name == 'weight':
                    param.copy_(noise * weight_std)
                elif isinstance(submodule, torch.nn.LayerNorm) and name == 'weight':
                    param.copy_(1 + noise * std)
                else:
                    param.copy_(noise * std)
    return module


def max_abs_diff(outs_a, outs_b) -> float:
    assert len(outs_a) == len(outs_b)
    for a, b in zip(outs_a, outs_b):
        assert a.shape == b.shape, (a.shape, b.shape)
    return max((a - b).abs().max().item() for a, b in zip(outs_a, outs_b))


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
