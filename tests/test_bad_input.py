"""Bad inputs fail at the backbone's entry with a message that names the problem and the expected form, and bad
constructor arguments with a ConfigError (a ValueError and an AssertionError) that names the argument: every
registered backbone, then each backbone's own arguments."""
import pytest
import torch

from swin_backbones import ConfigError

from .helpers import BACKBONES as CLASSES
from .helpers import SMALL

BACKBONES = {name: (lambda cls: lambda **overrides: cls(**{**SMALL, **overrides}))(cls) for name, cls in CLASSES.items()}


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('x, error, message', [
    ([[1.0]], TypeError, 'expects a torch.Tensor of shape \\(N, 3, H, W\\), got list'),
    (torch.zeros(3, 32, 32), ValueError, '4-d tensor'),
    (torch.zeros(1, 1, 3, 32, 32), ValueError, '4-d tensor'),
    (torch.zeros(1, 4, 32, 32), ValueError, 'expects 3 input channels'),
    (torch.zeros(1, 32, 32, 3), ValueError, 'x.permute\\(0, 3, 1, 2\\)'),
    (torch.zeros(0, 3, 32, 32), ValueError, 'empty input'),
    (torch.zeros(1, 3, 0, 32), ValueError, 'empty input'),
    (torch.zeros(1, 3, 32, 0), ValueError, 'empty input'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), TypeError, 'floating point input, got torch.uint8'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int64), TypeError, 'floating point input, got torch.int64'),
    (torch.zeros(1, 3, 32, 32, dtype=torch.bool), TypeError, 'floating point input, got torch.bool'),
])
def test_bad_inputs_are_named(backbone, x, error, message):
    with pytest.raises(error, match=message):
        BACKBONES[backbone]()(x)


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('input_dtype, model_dtype', [(torch.float64, torch.float32), (torch.bfloat16, torch.float32),
                                                      (torch.float32, torch.bfloat16)])
def test_input_dtype_other_than_the_parameters_is_named(backbone, input_dtype, model_dtype):
    model = BACKBONES[backbone]().to(model_dtype).eval()
    x = torch.zeros(1, 3, 32, 32, dtype=input_dtype)
    message = (f'{type(model).__name__} got a {input_dtype} input but its parameters are {model_dtype}; '
               f'cast the input \\(x.to\\({model_dtype}\\)\\) or the model \\(model.to\\({input_dtype}\\)\\), '
               'or run it under torch.autocast')
    with pytest.raises(TypeError, match=message):
        model(x)
    with torch.no_grad():
        assert model(x.to(model_dtype))[0].dtype == model_dtype  # either fix works
        assert model.to(input_dtype)(x)[0].dtype == input_dtype


@pytest.mark.parametrize('backbone', BACKBONES)
def test_autocast_accepts_half_inputs_but_names_float64(backbone):
    model = BACKBONES[backbone]().eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert model(torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16))[0].dtype == torch.bfloat16
        with pytest.raises(TypeError, match='torch.float64 input .* autocast does not cast float64 inputs'):
            model(torch.zeros(1, 3, 32, 32, dtype=torch.float64))


@pytest.mark.parametrize('backbone', BACKBONES)
def test_input_on_another_device_is_named(backbone):
    with pytest.raises(ValueError, match="got an input on meta but its parameters are on cpu; move one of them"):
        BACKBONES[backbone]()(torch.zeros(1, 3, 32, 32, device='meta'))


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('bad_value', [float('nan'), float('inf'), -float('inf')])
def test_non_finite_inputs_are_rejected_only_when_asked(backbone, bad_value):
    x = torch.zeros(3, 3, 40, 40)
    x[1, 2, 5, 7] = bad_value
    with pytest.raises(ValueError, match=r'NaN or inf input values \(in batch items \[1\]\)'):
        BACKBONES[backbone](check_finite=True).eval()(x)
    with torch.no_grad():
        BACKBONES[backbone]().eval()(x)  # without the flag, no scan: the values flow through


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('kwargs, message', [
    (dict(arch='enormous', embed_dims=None, depths=None, num_heads=None), 'unknown .* arch'),
    (dict(out_indices=(0, 4)), 'out_indices'),
    (dict(out_indices=()), 'out_indices'),
    (dict(frozen_stages=-2), 'frozen_stages'),
    (dict(frozen_stages=5), 'frozen_stages'),
    (dict(in_channels=0), 'in_channels'),
    (dict(num_heads=(1, 2, 4)), 'one entry per stage'),
    (dict(num_heads=(3, 2, 4, 8)), 'divisible'),
    (dict(act_cfg=dict(type='Mystery')), 'act_cfg'),
    (dict(norm_cfg=dict(type='BN')), 'norm_cfg'),
])
def test_bad_construction_arguments_are_named(backbone, kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        BACKBONES[backbone](**kwargs)
    assert isinstance(error.value, ValueError) and isinstance(error.value, AssertionError)


@pytest.mark.parametrize('backbone', BACKBONES)
def test_unknown_arguments_are_named_with_the_ones_taken(backbone):
    with pytest.raises(ConfigError, match=r"does not take the argument\(s\) \['windw_size'\]; it takes .*out_indices"):
        BACKBONES[backbone](windw_size=7)


@pytest.mark.parametrize('kwargs, message', [
    (dict(group_size=(7, 7, 7)), 'group_size must be a positive int or one positive int per stage'),
    (dict(group_size=0), 'group_size'),
    (dict(crs_interval=(8, 4, 2)), 'crs_interval'),
    (dict(crs_interval=(8, 4, 0, 1)), 'crs_interval'),
    (dict(lda_type='diagonal'), 'lda_type'),
    (dict(adaptive_interval=True, lda_type='paper'), 'adaptive_interval'),
])
def test_bad_crossformer_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BACKBONES['CrossFormer'](**kwargs)


@pytest.mark.parametrize('kwargs, message', [
    (dict(window_size=0), 'window_size must be a positive int'),
    (dict(window_size=-3), 'window_size must be a positive int'),
    (dict(strides=(2, 2, 2, 2)), 'strides'),
    (dict(pretrain_img_size=(224, 224, 224)), 'pretrain_img_size must be a positive int or a pair'),
    (dict(pretrain_img_size=(224, 224, 224), use_abs_pos_embed=True), 'pretrain_img_size'),
    (dict(pretrain_img_size=0), 'pretrain_img_size'),
    (dict(pretrain_img_size=(224.0, 224)), 'pretrain_img_size'),
])
def test_bad_swin_arguments_are_named(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BACKBONES['SwinTransformer'](**kwargs)


@pytest.mark.parametrize('size, grid', [(224, (56, 56)), ((224,), (56, 56)), ((96, 160), (24, 40)),
                                        ([96, 160], (24, 40))])
def test_pretrain_img_size_forms(size, grid):
    assert BACKBONES['SwinTransformer'](pretrain_img_size=size, use_abs_pos_embed=True).pos_embed_grid == grid
