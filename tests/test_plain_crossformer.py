"""benchmarks.plain_crossformer (the authors'-style benchmark reference) computes what swin_backbones.CrossFormer
computes: same outputs and input gradients, for both LDA types, ACL, padding, LDA padding, the small-map
fallback and the adaptive interval."""
import pytest
import torch

from benchmarks.plain_crossformer import PlainCrossFormer
from swin_backbones import CrossFormer

from .helpers import max_abs_diff, randomize_, to_authors_layout

# fp32; relative to the largest output (or input-gradient) value, as the package's fused attention core
# rounds differently from the plain matmul-softmax-matmul (about 1e-6 relative per forward).
TOLERANCE = 1e-5

PAPER = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
# ACL sits in blocks j with (j + 1) % 3 == 0 and j < depth - 1: stage 3 (depth 4) has one.
PP = dict(embed_dims=48, depths=(2, 2, 4, 2), num_heads=(2, 3, 6, 12), lda_type='pp', use_acl=True)

# id: (model kwargs, (H, W), batch). Stage maps are ceil(H/4) ... ceil(H/32).
CASES = {
    # 16x24 (LDA groups 2x3, no padding), 8x12 (SDA padded to 14x14), 4x6 and 2x3 fall back (G' = min).
    'paper-64x96': (PAPER, (64, 96), 2),
    # 13x18: SDA and LDA (I=8 -> 16x24) padded; 7x9: fallback with G' = 7, padded to 7x14; 4x5, 2x3.
    'paper-odd-50x70': (PAPER, (50, 70), 2),
    # per-stage G and I; 24x41: SDA padded to 25x45, LDA (I=3) padded to 24x42.
    'paper-group5-interval3-96x161': (dict(PAPER, group_size=(5, 4, 3, 2), crs_interval=(3, 2, 2, 1)), (96, 161), 1),
    # every stage falls back to SDA (stage 1 is 5x7).
    'paper-fallback-20x28': (PAPER, (20, 28), 2),
    # 16x24 in one 56x56 region (most groups all padding), ACL, fallback as one H x W group.
    'pp-64x96': (PP, (64, 96), 2),
    'pp-odd-50x70': (PP, (50, 70), 2),
    # several (G*I)-regions per map, some padded.
    'pp-group4-interval2-72x136': (dict(PP, group_size=4, crs_interval=(2, 2, 2, 1)), (72, 136), 1),
    # I = ceil(max(H, W) / G) per forward.
    'pp-adaptive-96x64': (dict(PP, adaptive_interval=True), (96, 64), 1),
    'pp-adaptive-odd-83x45': (dict(PP, adaptive_interval=True, group_size=(7, 5, 3, 2)), (83, 45), 1),
    'pp-fallback-20x28': (PP, (20, 28), 2),
}


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_pair(seed=0, **kwargs):
    kwargs.setdefault('drop_path_rate', 0.0)
    model = randomize_(CrossFormer(**kwargs), seed).eval()
    return model, PlainCrossFormer.from_model(model).eval()


def image(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def outputs_and_input_grad(model, x, weights=None):
    x = x.clone().requires_grad_(True)
    outs = model(x)
    if weights is None:
        weights = [image(*out.shape, seed=10 + i) for i, out in enumerate(outs)]
    sum((out * w).sum() for out, w in zip(outs, weights)).backward()
    return [out.detach() for out in outs], x.grad, weights


def check_close(expected, actual):
    scale = max(1.0, max(t.abs().max().item() for t in expected))
    assert max_abs_diff(expected, actual) <= TOLERANCE * scale


def check_same_function(model, plain, x):
    outs, grad, weights = outputs_and_input_grad(model, x)
    plain_outs, plain_grad, _ = outputs_and_input_grad(plain, x, weights)
    check_close(outs, plain_outs)
    check_close([grad], [plain_grad])


@pytest.mark.parametrize('case', sorted(CASES))
def test_same_outputs_and_input_gradients(case):
    kwargs, size, batch = CASES[case]
    model, plain = build_pair(**kwargs)
    check_same_function(model, plain, image(batch, 3, *size))


def test_authors_parameter_names_and_fallback_is_not_stored():
    model, plain = build_pair(**PAPER)
    assert sorted(plain.state_dict()) == sorted(to_authors_layout(model.state_dict()))
    with torch.no_grad():
        before = plain(image(1, 3, 64, 96))
        plain(image(1, 3, 20, 28, seed=2))  # every stage falls back
        after = plain(image(1, 3, 64, 96))
    assert max_abs_diff(before, after) == 0


def test_out_indices():
    model, plain = build_pair(**PAPER, out_indices=(1, 3))
    x = image(1, 3, 64, 96)
    with torch.no_grad():
        check_close(model(x), plain(x))


def test_small_arch_at_224():
    model, plain = build_pair(arch='small')
    x = image(1, 3, 224, 224)
    with torch.no_grad():
        check_close(model(x), plain(x))
