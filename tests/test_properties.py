"""Properties over random sizes, batches, windows, group sizes and intervals (hypothesis), and mixed precision."""
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swin_backbones import CrossFormer, SwinTransformer, SwinTransformerV2

from .helpers import assert_close, randomize_, randomize_swinv2_

# Derandomized: CI explores the same examples on every run, so a failure is reproducible.
PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.too_slow])
SIDE = st.integers(1, 600)


def check_pyramid_properties(model, plain, batch, height, width):
    """Shapes ceil(side/stride), finite, deterministic in eval mode, no leakage across the batch, and the
    same outputs as the ``impl='plain'`` twin ``plain``."""
    model.eval()
    plain.load_state_dict(model.state_dict())
    plain.eval()
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height * 1000 + width))
    with torch.no_grad():
        outs = model(x)
        again = model(x)
        alone = [model(x[i:i + 1]) for i in range(batch)]
        plain_outs = plain(x)
    assert_close(outs, plain_outs)
    for out, channels, stride in zip(outs, model.num_features, model.out_strides):
        assert out.shape == (batch, channels, math.ceil(height / stride), math.ceil(width / stride))
        assert torch.isfinite(out).all()
    assert all(torch.equal(a, b) for a, b in zip(outs, again))
    for i in range(batch):
        assert_close([level[i:i + 1] for level in outs], alone[i])


@PROPERTY_SETTINGS
@given(height=SIDE, width=SIDE, batch=st.integers(1, 3), window=st.integers(1, 12), seed=st.integers(0, 99))
def test_swin_properties(height, width, batch, window, seed):
    options = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=window, drop_path_rate=0.0)
    check_pyramid_properties(randomize_(SwinTransformer(**options), seed), SwinTransformer(impl='plain', **options),
                             batch, height, width)


@PROPERTY_SETTINGS
@given(height=SIDE, width=SIDE, batch=st.integers(1, 3), seed=st.integers(0, 99),
       window=st.lists(st.integers(1, 12), min_size=4, max_size=4),
       pretrained=st.lists(st.sampled_from([0, 2, 6, 8, 12, 16]), min_size=4, max_size=4))
def test_swinv2_properties(height, width, batch, seed, window, pretrained):
    # A window of 1 has no offsets to normalise by: it needs a pretrained window.
    pretrained = [p or (8 if w == 1 else 0) for w, p in zip(window, pretrained)]
    options = dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=window,
                   pretrained_window_sizes=pretrained, drop_path_rate=0.0)
    check_pyramid_properties(randomize_swinv2_(SwinTransformerV2(**options), seed),
                             SwinTransformerV2(impl='plain', **options), batch, height, width)


@PROPERTY_SETTINGS
@given(height=SIDE, width=SIDE, batch=st.integers(1, 3), seed=st.integers(0, 99),
       group_size=st.lists(st.integers(1, 9), min_size=4, max_size=4),
       interval=st.lists(st.integers(1, 8), min_size=4, max_size=4),
       lda_type=st.sampled_from(['paper', 'pp']), adaptive=st.booleans(), use_acl=st.booleans())
def test_crossformer_properties(height, width, batch, seed, group_size, interval, lda_type, adaptive, use_acl):
    options = dict(embed_dims=16, depths=(2, 2, 3, 1), num_heads=(1, 2, 2, 4), group_size=group_size,
                   crs_interval=interval, lda_type=lda_type, adaptive_interval=adaptive and lda_type == 'pp',
                   use_acl=use_acl, drop_path_rate=0.0)
    check_pyramid_properties(randomize_(CrossFormer(**options), seed), CrossFormer(impl='plain', **options),
                             batch, height, width)


@pytest.mark.slow
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
@pytest.mark.parametrize('backbone', [
    dict(type=SwinTransformer),
    dict(type=SwinTransformerV2, window_size=16, pretrained_window_sizes=8),
    dict(type=CrossFormer, lda_type='paper'),
    dict(type=CrossFormer, lda_type='pp', use_acl=True),
])
def test_autocast_forward_backward_stays_finite(backbone, dtype):
    """At a detection-like size whose maps need padding in every stage (so masks cover padded tokens)."""
    options = dict(backbone)
    model = options.pop('type')(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), **options)
    model.init_weights()
    model.train()
    x = torch.randn(1, 3, 419, 613, requires_grad=True)
    with torch.autocast('cpu', dtype=dtype):
        outs = model(x)
        loss = sum(out.float().square().mean() for out in outs)
    loss.backward()
    assert all(out.dtype == dtype and torch.isfinite(out).all() for out in outs)
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
