"""The fast path computes what the plain path computes: outputs and gradients, op by op (swin_backbones.models.ops)
and for whole backbones (``impl='fast'`` against ``impl='plain'`` with the same weights, every registered backbone
and some variants), for every kernel the rules (swin_backbones.models.ops.rules) can select on a CPU: the tests force
each one explicitly, so they do not depend on which the rules pick on the machine that runs them. And the one
decision between the two paths, :func:`ops.fast_kernels_apply`."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.benchmark import peak_memory
from swin_backbones.models import ops
from swin_backbones.models.grouping import GroupMask, pair_bias
from swin_backbones.models.layers import DropPath, Mlp
from swin_backbones.models.ops import FastPath, attention_kernels, rules
from swin_backbones.models.ops.conv_kernels import space_to_depth_applies
from swin_backbones.models.ops.linear_kernels import fused_linear

from .helpers import BACKBONES, SMALL, assert_close, randomize_, randomize_backbone_

onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='torch built without oneDNN')
LINEAR_KERNELS = [pytest.param('aten'), pytest.param('onednn', marks=onednn)]
# Each kernel set selects one kernel of every decision; together they cover every kernel a CPU runs.
KERNEL_SETS = {
    'first': dict(linear='aten', attention_backward='store', strided_conv='direct', tiles='whole'),
    'second': dict(linear='onednn', attention_backward='recompute', strided_conv='space_to_depth', tiles='tiled'),
}
KERNEL_SET_PARAMS = [pytest.param('first'), pytest.param('second', marks=onednn)]

# fp32, relative to each tensor's magnitude: the kernels round differently from the plain operations.
REL = 1e-5


def test_kernel_sets_cover_every_kernel_a_cpu_runs():
    for name in rules.DECISIONS:
        assert {kernel_set[name] for kernel_set in KERNEL_SETS.values()} == set(
            rules.available(name, torch.device('cpu'), torch.float32))


def fast_path(**overrides) -> FastPath:
    return FastPath.from_arguments(kernels=overrides)


def gradients(fn, inputs, seed=1):
    """fn(*inputs) and the gradients of a random projection of it with respect to each input."""
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = fn(*inputs)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * weight).sum().backward()
    return out, [t.grad for t in inputs if t.requires_grad]


def plain_attention(qkv, bias, mask, scale):
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return attention_kernels.plain_attention_probs(q, k, bias, mask, scale) @ v


def attention_inputs(batch, groups, length, heads=3, dim=8, mask_kind=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch * groups, length, 3, heads, dim, generator=generator)
    bias = torch.randn(heads, length, length, generator=generator)
    mask = None
    if mask_kind == 'regions':  # Swin's shift mask: -100 between regions, for some of the groups (two here)
        labels = torch.randint(0, 3, (2, length), generator=generator)
        additive = (labels[:, :, None] != labels[:, None, :]).float() * -100.0
        mask = GroupMask(additive, torch.tensor([groups - 1, groups // 2]), groups)
    elif mask_kind == 'keys':  # CrossFormer's padded keys: (nG, 1, N) for every group, each keeps a real key
        additive = torch.zeros(groups, 1, length)
        additive[groups // 2:, :, length // 2:] = -1e6
        mask = GroupMask(additive, None, groups)
    return qkv, bias, mask


@pytest.mark.parametrize('mask_kind', [None, 'regions', 'keys'])
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('kernel', ['store', 'recompute'])
def test_training_attention_kernels_match_plain(kernel, mask_kind, batch):
    qkv, bias, mask = attention_inputs(batch, groups=12, length=7 * 7, mask_kind=mask_kind)
    scale = 8 ** -0.5
    out, grads = gradients(lambda qkv, bias: attention_kernels.attention_training(qkv, bias, mask, scale, kernel),
                           [qkv, bias])
    out_plain, grads_plain = gradients(lambda qkv, bias: plain_attention(qkv, bias, mask, scale), [qkv, bias])
    assert_close(out, out_plain, rel=REL)
    assert_close(grads, grads_plain, rel=REL)


@pytest.mark.parametrize('mask_kind', [None, 'regions', 'keys'])
@pytest.mark.parametrize('chunk_elements', [3 * 49 * 49 * 5, 2 * 49 * 49, 49 * 49 - 1])
def test_recomputing_backward_in_chunks_matches_plain(mask_kind, chunk_elements, monkeypatch):
    """Chunks of 5 groups (which do not divide the 12 groups of an image), of 2 heads of a group (which do
    not divide its 3 heads), and of a single head."""
    monkeypatch.setattr(attention_kernels, '_BACKWARD_CHUNK_ELEMENTS', chunk_elements)
    qkv, bias, mask = attention_inputs(2, groups=12, length=7 * 7, mask_kind=mask_kind)
    scale = 8 ** -0.5
    out, grads = gradients(
        lambda qkv, bias: attention_kernels.attention_training(qkv, bias, mask, scale, 'recompute'), [qkv, bias])
    out_plain, grads_plain = gradients(lambda qkv, bias: plain_attention(qkv, bias, mask, scale), [qkv, bias])
    assert_close(out, out_plain, rel=REL)
    assert_close(grads, grads_plain, rel=REL)


@pytest.mark.parametrize('mask_kind', [None, 'regions'])
@pytest.mark.parametrize('kernel', ['store', 'recompute', 'inference'])
def test_cosine_attention_kernels_match_plain(kernel, mask_kind):
    """Swin V2's scaled cosine attention: outputs and the gradients of qkv, bias and the per-head scale."""
    qkv, bias, mask = attention_inputs(2, groups=12, length=8 * 8, mask_kind=mask_kind)
    scale = torch.tensor([4.0, 30.0, 100.0]).view(3, 1, 1)
    overrides = fast_path(**(dict(attention_backward=kernel) if kernel != 'inference' else {}))

    def plain(qkv, bias, scale):
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return attention_kernels.plain_attention_probs(q, k, bias, mask, scale, cosine=True) @ v

    def fast(qkv, bias, scale):
        return ops.attention(qkv, bias, mask, scale, overrides, cosine=True)
    if kernel in ('store', 'recompute'):
        out, grads = gradients(fast, [qkv, bias, scale])
        out_plain, grads_plain = gradients(plain, [qkv, bias, scale])
        assert_close(grads, grads_plain, rel=REL)
    else:
        with torch.no_grad():
            out, out_plain = fast(qkv, bias, scale), plain(qkv, bias, scale)
    assert_close(out, out_plain, rel=REL)


@pytest.mark.parametrize('mask_kind', [None, 'regions', 'keys'])
@pytest.mark.parametrize('batch', [1, 2])
def test_inference_attention_matches_plain(mask_kind, batch):
    qkv, bias, mask = attention_inputs(batch, groups=12, length=7 * 7, mask_kind=mask_kind)
    with torch.no_grad():
        assert_close(ops.attention(qkv, bias, mask, 0.3, FastPath()),
                     plain_attention(qkv, bias, mask, 0.3), rel=REL)


@pytest.mark.parametrize('kernel_set', KERNEL_SET_PARAMS)
def test_group_attention_follows_the_overrides(kernel_set, monkeypatch):
    """ops.attention runs the training kernel it is told to, whatever the rules say."""
    ran = []
    monkeypatch.setattr(attention_kernels, 'attention_training', lambda *args: ran.append(args[-1]) or args[0])
    qkv, bias, _ = attention_inputs(1, groups=2, length=4)
    overrides = KERNEL_SETS[kernel_set]
    ops.attention(qkv.requires_grad_(True), bias, None, 0.3, fast_path(**overrides))
    assert ran == [overrides['attention_backward']]


@pytest.mark.parametrize('length, expected', [(49, 'store'), (64, 'store'), (65, 'recompute'), (1050, 'recompute')])
def test_training_attention_follows_the_rules_and_save_memory(length, expected, monkeypatch):
    ran = []
    monkeypatch.setattr(attention_kernels, 'attention_training', lambda *args: ran.append(args[-1]) or args[0])
    qkv, bias, _ = attention_inputs(1, groups=1, length=length, dim=2)
    ops.attention(qkv.requires_grad_(True), bias, None, 0.3, FastPath())
    ops.attention(qkv, bias, None, 0.3, FastPath(save_memory=True))
    assert ran == [expected, 'recompute']


def saved_tensor_sizes(fn):
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        fn()
    return sizes


def test_recomputing_attention_keeps_only_qkv_for_backward():
    qkv, bias, mask = attention_inputs(2, groups=4, length=64, mask_kind='keys')
    probabilities = 8 * 3 * 64 * 64
    stored = saved_tensor_sizes(lambda: attention_kernels.attention_training(
        qkv.requires_grad_(True), bias.requires_grad_(True), mask, 0.3, 'store'))
    assert probabilities in stored
    recomputed = saved_tensor_sizes(lambda: attention_kernels.attention_training(qkv, bias, mask, 0.3, 'recompute'))
    assert recomputed and all(size < probabilities for size in recomputed)


@pytest.mark.parametrize('kernel', LINEAR_KERNELS)
@pytest.mark.parametrize('activation', ['none', 'gelu', 'relu'])
def test_linear_kernels_in_inference_match_plain(kernel, activation):
    linear = randomize_(nn.Linear(24, 40))
    x = torch.randn(2, 9, 24)
    expected = {'none': lambda y: y, 'gelu': F.gelu, 'relu': F.relu}[activation](linear(x))
    options = fast_path(linear=kernel)
    with torch.no_grad():
        assert ops.fast_kernels_apply(options, x, linear.weight)
        assert_close(fused_linear(x, linear.weight, linear.bias, options, activation), expected, rel=REL)
        residual = torch.randn(2, 9, 40)
        if activation == 'none':
            assert_close(ops.linear(x, linear, options, residual=residual), linear(x) + residual, rel=REL)


@pytest.mark.parametrize('kernel', LINEAR_KERNELS)
def test_linear_kernels_in_training_match_plain(kernel):
    linear = randomize_(nn.Linear(24, 40))
    x, residual = torch.randn(2, 9, 24), torch.randn(2, 9, 40)
    options = fast_path(linear=kernel)

    def run(fn):
        linear.zero_grad()
        out, grads = gradients(fn, [x, residual])
        return out, grads + [linear.weight.grad.clone(), linear.bias.grad.clone()]
    fast = run(lambda x, residual: ops.linear(x, linear, options, residual=residual))
    plain = run(lambda x, residual: linear(x) + residual)
    assert_close(fast[0], plain[0], rel=REL)
    assert_close(fast[1], plain[1], rel=REL)
    with pytest.raises(RuntimeError, match='no backward'):
        fused_linear(x.requires_grad_(True), linear.weight, linear.bias, options, 'gelu')


@pytest.mark.parametrize('kernel', LINEAR_KERNELS)
def test_linear_with_a_bias_tensor_of_its_own_matches_plain(kernel):
    """Swin V2's qkv projection: its bias is built from the q and v biases, so its gradient reaches them."""
    linear = randomize_(nn.Linear(24, 72, bias=False))
    q_bias, v_bias = torch.randn(24, requires_grad=True), torch.randn(24, requires_grad=True)
    x = torch.randn(2, 9, 24)

    def run(fn):
        q_bias.grad = v_bias.grad = None
        out, (grad_x,) = gradients(lambda x: fn(x, torch.cat((q_bias, torch.zeros(24), v_bias))), [x])
        return out, [grad_x, q_bias.grad, v_bias.grad]
    fast = run(lambda x, bias: ops.linear(x, linear, fast_path(linear=kernel), bias=bias))
    plain = run(lambda x, bias: F.linear(x, linear.weight, bias))
    assert_close(fast[0], plain[0], rel=REL)
    assert_close(fast[1], plain[1], rel=REL)


@pytest.mark.parametrize('kernel_set', KERNEL_SET_PARAMS)
@pytest.mark.parametrize('save_memory', [False, True])
@pytest.mark.parametrize('act', ['GELU', 'ReLU', 'SiLU'])
@pytest.mark.parametrize('frozen', [False, True])
def test_mlp_fast_matches_plain_in_training_and_inference(kernel_set, save_memory, act, frozen):
    """Stored or recomputed activation in training (also with frozen weights), fused epilogues in inference."""
    fast = randomize_(Mlp(16, 64, act_cfg=dict(type=act), fast_path=FastPath.from_arguments(
        save_memory=save_memory, kernels=KERNEL_SETS[kernel_set])))
    plain = Mlp(16, 64, act_cfg=dict(type=act), fast_path=FastPath.from_arguments('plain'))
    plain.load_state_dict(fast.state_dict())
    for module in (fast, plain):
        module.requires_grad_(not frozen)
    x, residual = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    results = []
    for module in (fast, plain):
        module.zero_grad()
        out, grads = gradients(lambda x, residual: module(x, residual=residual), [x, residual])
        results.append((out, grads, [p.grad for p in module.parameters()]))
    (out, grads, param_grads), (out_plain, grads_plain, param_grads_plain) = results
    assert_close(out, out_plain, rel=REL)
    assert_close(grads, grads_plain, rel=REL)
    if frozen:
        assert all(g is None for g in param_grads)
    else:
        assert_close(param_grads, param_grads_plain, rel=REL)
    with torch.no_grad():
        assert_close(fast(x, residual=residual), plain(x, residual=residual), rel=REL)
        assert_close(fast(x), plain(x), rel=REL)


@pytest.mark.parametrize('act', ['GELU', 'ReLU', 'SiLU'])
@pytest.mark.parametrize('frozen', [False, True])
def test_tiled_mlp_matches_whole_in_training_and_inference(act, frozen, monkeypatch):
    """Tiles of 64 tokens over 2 x 75 tokens (the last tile partial): outputs, input, residual and weight gradients."""
    monkeypatch.setattr(ops, 'TILE_TOKENS', 64)
    tiled = randomize_(Mlp(16, 64, act_cfg=dict(type=act), fast_path=fast_path(tiles='tiled')))
    whole = Mlp(16, 64, act_cfg=dict(type=act), fast_path=FastPath.from_arguments('plain'))
    whole.load_state_dict(tiled.state_dict())
    x, residual = torch.randn(2, 75, 16), torch.randn(2, 75, 16)
    results = []
    for module in (tiled, whole):
        module.requires_grad_(not frozen).zero_grad()
        out, grads = gradients(lambda x, residual: module(x, residual=residual), [x, residual])
        results.append((out, grads, [p.grad for p in module.parameters()]))
        with torch.no_grad():
            results[-1] += (module(x, residual=residual), module(x))
    (out, grads, param_grads, inferred, alone), (out_w, grads_w, param_grads_w, inferred_w, alone_w) = results
    assert_close([out, inferred, alone], [out_w, inferred_w, alone_w], rel=REL)
    assert_close(grads, grads_w, rel=REL)
    if frozen:
        assert all(g is None for g in param_grads)
    else:
        assert_close(param_grads, param_grads_w, rel=REL)


@pytest.mark.parametrize('mask_kind', [None, 'regions', 'keys'])
def test_tiled_projected_attention_matches_whole(mask_kind, monkeypatch):
    """Tiles of 3 groups over 2 images of 12 groups: tiles that end inside an image and masks that cross tiles."""
    monkeypatch.setattr(ops, 'TILE_TOKENS', 3 * 16)
    _, bias, mask = attention_inputs(2, groups=12, length=16, mask_kind=mask_kind)
    qkv = randomize_(nn.Linear(24, 72))
    x = torch.randn(24, 16, 24)
    with torch.no_grad():
        tiled = ops.projected_attention(x, qkv, 3, bias, mask, 0.3, fast_path(tiles='tiled'))
        whole = ops.projected_attention(x, qkv, 3, bias, mask, 0.3, fast_path(tiles='whole'))
    assert_close(tiled, whole, rel=REL)


@pytest.mark.parametrize('save_memory, tiles, copies', [(True, 'whole', 1), (False, 'whole', 2), (False, 'tiled', 1)])
def test_mlp_keeps_the_hidden_activation_once_when_saving_memory_or_tiled(save_memory, tiles, copies):
    """save_memory, and the tiled MLP, keep fc1's output for backward, not also the activated copy of it."""
    mlp = Mlp(16, 64, fast_path=FastPath.from_arguments(save_memory=save_memory, kernels=dict(tiles=tiles)))
    x = torch.randn(2, 5, 16, requires_grad=True)
    parameters = {p.untyped_storage().data_ptr() for p in mlp.parameters()}
    hidden_sized = []

    def pack(tensor):
        if tensor.shape[-1] == 64 and tensor.untyped_storage().data_ptr() not in parameters:
            hidden_sized.append(tensor.untyped_storage().data_ptr())
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mlp(x)
    assert len(set(hidden_sized)) == copies


# (in, out, kernel, stride, padding, H, W): CrossFormer's embedding and merging convs and Swin's patch
# embedding, at sides where the padded input is not a multiple of the stride (the extra output is cropped).
CONVS = [(3, 5, 32, 4, 14, 37, 50), (3, 6, 8, 4, 2, 33, 31), (3, 7, 4, 4, 0, 12, 16), (4, 3, 4, 2, 1, 9, 10),
         (4, 3, 2, 2, 0, 10, 8)]


@pytest.mark.parametrize('in_channels, out_channels, kernel, stride, padding, height, width', CONVS)
@pytest.mark.parametrize('strided_conv', ['direct', 'space_to_depth'])
def test_strided_conv_kernels_match_plain(strided_conv, in_channels, out_channels, kernel, stride, padding, height,
                                          width):
    conv = randomize_(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding))
    assert space_to_depth_applies(conv)
    x = torch.randn(2, in_channels, height, width, generator=torch.Generator().manual_seed(0))

    def run(fn):
        conv.zero_grad()
        out, grads = gradients(fn, [x])
        return out, grads + [conv.weight.grad.clone(), conv.bias.grad.clone()]
    fast = run(lambda x: ops.conv2d(x, conv, fast_path(strided_conv=strided_conv)))
    plain = run(conv)
    assert_close(fast[0], plain[0], rel=REL)
    assert_close(fast[1], plain[1], rel=REL)


@pytest.mark.parametrize('stride, height, width', [(2, 9, 12), (2, 8, 7), (1, 5, 6), (3, 10, 7)])
@pytest.mark.parametrize('with_norm', [True, False])
@pytest.mark.parametrize('linear_kernel', LINEAR_KERNELS)
def test_patch_merging_gathered_tap_major_matches_plain(linear_kernel, with_norm, stride, height, width):
    """The fast merging gathers the neighbourhoods tap-major and reorders its parameters to match: the plain
    merging's outputs and gradients (input, LayerNorm and reduction parameters), odd sides and every stride."""
    channels = 6
    norm = randomize_(nn.LayerNorm(4 * channels)) if with_norm else None
    reduction = randomize_(nn.Linear(4 * channels, 2 * channels, bias=False))
    x = torch.randn(2, height, width, channels, generator=torch.Generator().manual_seed(0))

    def run(path):
        parameters = [*(norm.parameters() if norm is not None else ()), reduction.weight]
        for parameter in parameters:
            parameter.grad = None
        out, grads = gradients(lambda x: ops.patch_merging(x, norm, reduction, stride, path), [x])
        return out, grads + [parameter.grad.clone() for parameter in parameters]
    fast = run(fast_path(linear=linear_kernel))
    plain = run(FastPath.from_arguments('plain'))
    assert fast[0].shape == (2, -(-height // stride), -(-width // stride), 2 * channels)
    assert_close(fast[0], plain[0], rel=REL)
    assert_close(fast[1], plain[1], rel=REL)


def test_space_to_depth_only_where_it_applies():
    assert not space_to_depth_applies(nn.Conv2d(3, 4, 3, stride=2, padding=1))  # kernel not a multiple
    assert not space_to_depth_applies(nn.Conv2d(4, 4, 4, stride=2, groups=2))
    assert not space_to_depth_applies(nn.Conv2d(3, 4, 4, stride=2, padding=(1, 0)))
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    x = torch.randn(1, 3, 9, 9)
    assert torch.equal(ops.conv2d(x, conv, fast_path(strided_conv='space_to_depth')), conv(x))


@pytest.mark.parametrize('impl', ['fast', 'plain'])
def test_gather_rows_gradient_matches_index_select(impl):
    """The gather with a known inverse (and zeroed padding rows) has autograd's gradient of index_select."""
    path = FastPath.from_arguments(impl)
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(6, 4, generator=generator)
    index = torch.tensor([4, 0, 0, 5, 1, 3, 0, 2])  # rows 2 and 6 of the output are padding
    zero_rows = torch.tensor([False, False, True, False, False, False, True, False])
    inverse = torch.tensor([1, 4, 7, 5, 0, 3])
    out, (grad,) = gradients(lambda s: ops.gather_rows(s, index, path, inverse=inverse, zero_rows=zero_rows),
                             [source])
    expected, (expected_grad,) = gradients(lambda s: s.index_select(0, index).masked_fill(zero_rows[:, None], 0),
                                           [source])
    assert torch.equal(out, expected) and torch.equal(grad, expected_grad)
    back, (grad_back,) = gradients(
        lambda o: ops.gather_rows(o, inverse, path, inverse=index, inverse_zero_rows=zero_rows), [out])
    expected_back, (expected_grad_back,) = gradients(lambda o: o.index_select(0, inverse), [out])
    assert torch.equal(back, source) and torch.equal(back, expected_back)
    assert torch.equal(grad_back, expected_grad_back)


def test_pair_bias_matches_gather_then_permute():
    table, index = torch.randn(13 * 13, 4), torch.randint(0, 13 * 13, (49 * 49,))
    expected = table[index].view(49, 49, 4).permute(2, 0, 1)
    bias = pair_bias(table, index, 49)
    assert bias.is_contiguous() and torch.equal(bias, expected)


# Every registered backbone with the SMALL structure, and variants that take other paths through the layers.
VARIANTS = {
    **{name: (name, {}) for name in BACKBONES},
    'SwinTransformer-window5-no-qkv-bias-relu': ('SwinTransformer', dict(depths=(2, 3, 2, 1), window_size=5,
                                                                          qkv_bias=False, act_cfg=dict(type='ReLU'))),
    'SwinTransformerV2-pretrained-windows': ('SwinTransformerV2', dict(window_size=(8, 8, 4, 4),
                                                                        pretrained_window_sizes=(0, 12, 8, 0))),
    'SwinTransformerV2-window5-no-qkv-bias': ('SwinTransformerV2', dict(depths=(2, 3, 2, 1), window_size=5,
                                                                         qkv_bias=False)),
    'CrossFormer-pp': ('CrossFormer', dict(depths=(2, 2, 3, 2), lda_type='pp', use_acl=True)),
}


def fast_and_plain(name, **options):
    backbone, kwargs = VARIANTS[name]
    structure = {**SMALL, 'embed_dims': 16, 'num_heads': (1, 2, 2, 4), 'drop_path_rate': 0.0, **kwargs}
    fast = randomize_backbone_(BACKBONES[backbone](**structure, **options))
    plain = BACKBONES[backbone](**structure, impl='plain')
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def training_outputs_and_gradients(model, x):
    outs, (grad_x,) = gradients(lambda x: torch.cat([o.flatten(1) for o in model(x)], 1), [x])
    return outs, grad_x, {n: p.grad for n, p in model.named_parameters()}


# Swin V2's input gradient passes back through cosine attention with logit scales up to 100: against a
# float64 run, the plain path's own is off by 9e-6 of its magnitude (97 x 131, no qkv bias; the fast
# path with space-to-depth embedding by 4e-6), so the two fp32 paths are compared to 3e-5.
INPUT_GRAD_REL = {name: 3e-5 for name, (backbone, _) in VARIANTS.items() if backbone == 'SwinTransformerV2'}

# (batch, H, W): 112 x 140 gives Swin (window 7) a first stage of whole windows (stored in window order,
# shifted windows gathered) and padded later stages (stored unpadded, every window gathered).
SIZES = [(2, 97, 131), (1, 64, 96), (1, 112, 140), (1, 3, 5)]


@pytest.mark.parametrize('kernel_set', KERNEL_SET_PARAMS)
@pytest.mark.parametrize('name', list(VARIANTS))
@pytest.mark.parametrize('size', SIZES)
def test_backbone_fast_matches_plain(name, size, kernel_set, monkeypatch):
    """Inference outputs, then training-step outputs, input gradients and every parameter gradient. Tiles of 128
    tokens, so that the tiled kernels run over several tiles at these small sizes."""
    monkeypatch.setattr(ops, 'TILE_TOKENS', 128)
    fast, plain = fast_and_plain(name, kernels=KERNEL_SETS[kernel_set], save_memory=kernel_set == 'second')
    batch, height, width = size
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
    with torch.inference_mode():
        fast.eval(), plain.eval()
        assert_close(fast(x), plain(x), rel=REL)
    (outs, grad_x, grads), (outs_plain, grad_x_plain, grads_plain) = [
        training_outputs_and_gradients(model.train(), x) for model in (fast, plain)]
    assert_close(outs, outs_plain, rel=REL)
    assert_close(grad_x, grad_x_plain, rel=INPUT_GRAD_REL.get(name, REL))
    # Parameter gradients: to 1e-5 of the largest gradient of the model (some, like the last bias of the
    # position-bias MLP, are sums of softmax gradients and so are zero up to rounding noise).
    scale = max(g.abs().max().item() for g in grads_plain.values())
    assert all((grads[n] - grads_plain[n]).abs().max().item() <= REL * scale for n in grads_plain)


@pytest.mark.parametrize('name', list(BACKBONES))
@pytest.mark.parametrize('save_memory', [False, True])
def test_with_cp_fast_matches_plain(name, save_memory):
    fast, plain = fast_and_plain(name, with_cp=True, save_memory=save_memory)
    x = torch.randn(1, 3, 70, 90)
    (outs, grad_x, _), (outs_plain, grad_x_plain, _) = [
        training_outputs_and_gradients(model.train(), x) for model in (fast, plain)]
    assert_close(outs, outs_plain, rel=REL)
    assert_close(grad_x, grad_x_plain, rel=REL)


@pytest.mark.parametrize('name', ['SwinTransformer', 'CrossFormer'])
def test_save_memory_keeps_less_for_backward(name):
    """The memory claim as behaviour: the activations a training step keeps (distinct storages, measured as
    benchmarks.benchmark measures them), with save_memory against the plain path and the default; and the tiled
    MLP (the default for these narrow tokens) against the whole one, whose activation is kept for backward."""
    def saved_bytes(model):
        return peak_memory(model.train(), torch.randn(1, 3, 224, 224), 'train', torch.device('cpu'), torch.float32)
    fast, plain = fast_and_plain(name, save_memory=True)
    default, _ = fast_and_plain(name)
    whole, _ = fast_and_plain(name, kernels=dict(tiles='whole'))
    assert saved_bytes(fast) < 0.8 * saved_bytes(plain)
    assert saved_bytes(fast) < 0.9 * saved_bytes(default)
    assert saved_bytes(default) < 0.9 * saved_bytes(whole)


# ------------------------------------------------------------------------------ the decision
def test_fast_kernels_apply_only_where_they_compute_the_same():
    fast, plain = FastPath(), FastPath.from_arguments('plain')
    x, weight = torch.randn(2, 8), torch.randn(4, 8)
    assert ops.fast_kernels_apply(fast, x, weight) and ops.fast_kernels_apply(fast, x)
    assert not ops.fast_kernels_apply(plain, x, weight) and not ops.fast_kernels_apply(plain, x)
    assert not ops.fast_kernels_apply(fast, x.double(), weight)  # the kernels take one dtype
    dropout = nn.Dropout(0.1)
    assert not ops.fast_kernels_apply(fast, x, weight, dropout)  # another dropout pattern
    assert ops.fast_kernels_apply(fast, x, weight, dropout.eval()) and ops.fast_kernels_apply(fast, x, weight,
                                                                                              nn.Dropout(0.0))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not ops.fast_kernels_apply(fast, x, weight)  # autocast would not cast for the kernels
        assert ops.fast_kernels_apply(fast, x)  # the attention core computes in its input's dtype


def test_no_fast_kernel_runs_while_a_graph_is_captured(monkeypatch):
    """Under tracing (torch.onnx.export, torch.jit.trace) every op takes the plain path, which exporters know."""
    ran = []

    def recording(name, function):
        def wrapper(*args, **kwargs):
            ran.append(name)
            return function(*args, **kwargs)
        return wrapper
    for name in ('group_attention', 'fused_linear', 'strided_conv2d'):
        monkeypatch.setattr(ops, name, recording(name, getattr(ops, name)))
    monkeypatch.setattr(ops.InvertibleRowGather, 'apply', recording('gather', ops.InvertibleRowGather.apply))
    model, _ = fast_and_plain('SwinTransformer')
    x = torch.randn(1, 3, 45, 61)
    with torch.no_grad():
        model(x)
    assert {'group_attention', 'fused_linear'} <= set(ran)
    ran.clear()
    torch.jit.trace(model, x.requires_grad_(True), check_trace=False)
    assert ran == []


def test_residual_with_active_drop_path_is_added_after_it():
    """residual + drop_path(branch): the epilogue cannot apply the per-sample scale, so the add runs apart."""
    linear = randomize_(nn.Linear(8, 8))
    drop_path = DropPath(0.5).train()
    x, residual = torch.randn(64, 3, 8), torch.randn(64, 3, 8)
    torch.manual_seed(0)
    out = ops.linear(x, linear, FastPath(), residual=residual, drop_path=drop_path)
    torch.manual_seed(0)
    expected = residual + drop_path(linear(x))
    assert_close(out, expected, rel=REL)
    kept = (out - residual).flatten(1).abs().sum(1) > 0
    assert 0 < kept.sum() < 64  # some samples dropped, some kept
