"""Each fast path computes what the plain path computes: outputs and gradients, piece by piece and for
whole backbones (``impl='fast'`` against ``impl='plain'`` with the same weights)."""
import importlib
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from swin_backbones import CrossFormer, SwinTransformer, SwinTransformerV2
from swin_backbones.models import attention
from swin_backbones.models.layers import Mlp, fused_linear, onednn_applies, pair_bias

from .conftest import randomize_, randomize_swinv2_
from .toy_helpers import TOOLS

# tools/benchmark.py imports tools/plain_crossformer.py by its bare name, so tools/ goes on sys.path.
sys.path.insert(0, TOOLS)
benchmark = importlib.import_module('benchmark')

onednn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason='torch built without oneDNN')


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> bool:
    """Equal up to fp32 rounding: relative to the larger of 1 and the tensor's scale."""
    return (a - b).abs().max().item() <= rel * max(1.0, b.abs().max().item())


def gradients(fn, inputs, seed=1):
    """fn(*inputs) and the gradients of a random projection of it with respect to each input."""
    inputs = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    out = fn(*inputs)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed))
    (out * weight).sum().backward()
    return out, [t.grad for t in inputs if t.requires_grad]


def plain_attention(qkv, bias, mask, scale):
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    return attention.plain_attention_probs(q, k, bias, mask, scale) @ v


def attention_inputs(batch, groups, length, heads=3, dim=8, mask_kind=None, seed=0):
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch * groups, length, 3, heads, dim, generator=generator)
    bias = torch.randn(heads, length, length, generator=generator)
    mask = None
    if mask_kind == 'regions':  # Swin's shift mask: (nG, N, N), -100 between regions
        labels = torch.randint(0, 3, (groups, length), generator=generator)
        mask = (labels[:, :, None] != labels[:, None, :]).float() * -100.0
    elif mask_kind == 'keys':  # CrossFormer's padded keys: (nG, 1, N), every group keeps a real key
        mask = torch.zeros(groups, 1, length)
        mask[groups // 2:, :, length // 2:] = -1e6
    return qkv, bias, mask


@pytest.mark.parametrize('mask_kind', [None, 'regions', 'keys'])
@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('chunk_elements', [attention._BACKWARD_CHUNK_ELEMENTS, 3 * 7 * 7 * 5])
def test_fused_attention_matches_plain(mask_kind, batch, chunk_elements, monkeypatch):
    """Forward, and the recomputing backward (also in chunks that do not divide the groups)."""
    monkeypatch.setattr(attention, '_BACKWARD_CHUNK_ELEMENTS', chunk_elements)
    qkv, bias, mask = attention_inputs(batch, groups=12, length=7 * 7, mask_kind=mask_kind)
    scale = 8 ** -0.5
    out, grads = gradients(lambda qkv, bias: attention.group_attention(qkv, bias, mask, scale), [qkv, bias])
    out_plain, grads_plain = gradients(lambda qkv, bias: plain_attention(qkv, bias, mask, scale), [qkv, bias])
    assert close(out, out_plain)
    for grad, grad_plain in zip(grads, grads_plain):
        assert close(grad, grad_plain)
    with torch.no_grad():
        assert close(attention.group_attention(qkv, bias, mask, scale), out_plain)


@pytest.mark.parametrize('mask_kind', [None, 'regions'])
@pytest.mark.parametrize('chunk_elements', [attention._BACKWARD_CHUNK_ELEMENTS, 3 * 8 * 8 * 5])
def test_fused_cosine_attention_matches_plain(mask_kind, chunk_elements, monkeypatch):
    """Swin V2's scaled cosine attention: outputs and the gradients of qkv, bias and the per-head scale."""
    monkeypatch.setattr(attention, '_BACKWARD_CHUNK_ELEMENTS', chunk_elements)
    qkv, bias, mask = attention_inputs(2, groups=12, length=8 * 8, mask_kind=mask_kind)
    scale = torch.tensor([4.0, 30.0, 100.0]).view(3, 1, 1)

    def plain(qkv, bias, scale):
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return attention.plain_attention_probs(q, k, bias, mask, scale, cosine=True) @ v
    out, grads = gradients(lambda qkv, bias, scale: attention.group_attention(qkv, bias, mask, scale, cosine=True),
                           [qkv, bias, scale])
    out_plain, grads_plain = gradients(plain, [qkv, bias, scale])
    assert close(out, out_plain)
    for grad, grad_plain in zip(grads, grads_plain):
        assert close(grad, grad_plain)
    with torch.no_grad():
        assert close(attention.group_attention(qkv, bias, mask, scale, cosine=True), out_plain)


def test_fused_attention_keeps_only_qkv_for_backward():
    qkv, bias, mask = attention_inputs(2, groups=4, length=64, mask_kind='keys')
    qkv.requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        attention.group_attention(qkv, bias.requires_grad_(True), mask, 0.3)
    attention_matrix = 8 * 3 * 64 * 64
    assert saved and all(t.numel() < attention_matrix for t in saved)


@onednn
@pytest.mark.parametrize('activation', ['none', 'gelu', 'relu'])
def test_fused_linear_inference_matches_plain(activation):
    linear = randomize_(nn.Linear(24, 40))
    x = torch.randn(2, 9, 24)
    expected = {'none': lambda y: y, 'gelu': F.gelu, 'relu': F.relu}[activation](linear(x))
    with torch.no_grad():
        assert onednn_applies(x, linear)
        assert close(fused_linear(x, linear, activation), expected)
        residual = torch.randn(2, 9, 40)
        if activation == 'none':
            assert close(fused_linear(x, linear, residual=residual), linear(x) + residual)


@onednn
def test_fused_linear_gradients_match_plain():
    linear = randomize_(nn.Linear(24, 40))
    x, residual = torch.randn(2, 9, 24), torch.randn(2, 9, 40)
    params = [linear.weight, linear.bias]

    def run(fn):
        linear.zero_grad()
        out, grads = gradients(fn, [x, residual])
        return out, grads + [p.grad.clone() for p in params]
    fast = run(lambda x, residual: fused_linear(x, linear, residual=residual))
    plain = run(lambda x, residual: linear(x) + residual)
    assert close(fast[0], plain[0])
    assert all(close(a, b) for a, b in zip(fast[1], plain[1]))
    with pytest.raises(RuntimeError, match='no backward'):
        fused_linear(x.requires_grad_(True), linear, 'gelu')


@pytest.mark.parametrize('act', ['GELU', 'ReLU', 'SiLU'])
@pytest.mark.parametrize('frozen', [False, True])
def test_mlp_fast_matches_plain_in_training_and_inference(act, frozen):
    """Recomputed activation in training (also with frozen weights), fused epilogues in inference."""
    fast = randomize_(Mlp(16, 64, act_cfg=dict(type=act), fast=True))
    plain = Mlp(16, 64, act_cfg=dict(type=act), fast=False)
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
    assert close(out, out_plain)
    assert all(close(a, b) for a, b in zip(grads, grads_plain))
    if frozen:
        assert all(g is None for g in param_grads)
    else:
        assert all(close(a, b) for a, b in zip(param_grads, param_grads_plain))
    with torch.no_grad():
        assert close(fast(x, residual=residual), plain(x, residual=residual))
        assert close(fast(x), plain(x))


def test_mlp_keeps_the_hidden_activation_once():
    """Training keeps fc1's output for backward, not also the activated copy of it."""
    mlp = Mlp(16, 64)
    x = torch.randn(2, 5, 16, requires_grad=True)
    parameters = {p.untyped_storage().data_ptr() for p in mlp.parameters()}
    hidden_sized = []

    def pack(tensor):
        if tensor.shape[-1] == 64 and tensor.untyped_storage().data_ptr() not in parameters:
            hidden_sized.append(tensor.untyped_storage().data_ptr())
        return tensor
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mlp(x)
    assert len(set(hidden_sized)) == 1


def test_pair_bias_matches_gather_then_permute():
    table, index = torch.randn(13 * 13, 4), torch.randint(0, 13 * 13, (49 * 49,))
    expected = table[index].view(49, 49, 4).permute(2, 0, 1)
    bias = pair_bias(table, index, 49)
    assert bias.is_contiguous() and torch.equal(bias, expected)


BACKBONES = {
    'swin': (SwinTransformer, dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))),
    'swin-window5-no-qkv-bias-relu': (SwinTransformer, dict(embed_dims=16, depths=(2, 3, 2, 1), num_heads=(1, 2, 2, 4),
                                                            window_size=5, qkv_bias=False, act_cfg=dict(type='ReLU'))),
    'swinv2': (SwinTransformerV2, dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4),
                                       window_size=(8, 8, 4, 4), pretrained_window_sizes=(0, 12, 8, 0))),
    'swinv2-no-qkv-bias': (SwinTransformerV2, dict(embed_dims=16, depths=(2, 3, 2, 1), num_heads=(1, 2, 2, 4),
                                                   window_size=5, qkv_bias=False)),
    'crossformer': (CrossFormer, dict(embed_dims=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))),
    'crossformer-pp': (CrossFormer, dict(embed_dims=16, depths=(2, 2, 3, 2), num_heads=(1, 2, 2, 4), lda_type='pp',
                                         use_acl=True)),
}


def fast_and_plain(name, **options):
    cls, kwargs = BACKBONES[name]
    fast = cls(drop_path_rate=0.0, **kwargs, **options)
    (randomize_swinv2_ if cls is SwinTransformerV2 else randomize_)(fast)
    plain = cls(drop_path_rate=0.0, impl='plain', **kwargs, **options)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


@pytest.mark.parametrize('name', sorted(BACKBONES))
@pytest.mark.parametrize('size', [(2, 97, 131), (1, 64, 96), (1, 3, 5)])
def test_backbone_fast_matches_plain(name, size):
    """Inference outputs, then training-step outputs, input gradients and every parameter gradient."""
    fast, plain = fast_and_plain(name)
    batch, height, width = size
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(height))
    with torch.inference_mode():
        fast.eval(), plain.eval()
        assert all(close(a, b) for a, b in zip(fast(x), plain(x)))
    results = []
    for model in (fast.train(), plain.train()):
        outs, (grad_x,) = gradients(lambda x: torch.cat([o.flatten(1) for o in model(x)], 1), [x])
        results.append((outs, grad_x, {n: p.grad for n, p in model.named_parameters()}))
    (outs, grad_x, grads), (outs_plain, grad_x_plain, grads_plain) = results
    assert close(outs, outs_plain)
    assert close(grad_x, grad_x_plain)
    # Parameter gradients: to 1e-5 of the largest gradient of the model (some, like the last bias of the
    # position-bias MLP, are sums of softmax gradients and so are zero up to rounding noise).
    scale = max(g.abs().max().item() for g in grads_plain.values())
    assert all((grads[n] - grads_plain[n]).abs().max().item() <= 1e-5 * scale for n in grads_plain)


@pytest.mark.parametrize('name', ['swin', 'swinv2', 'crossformer'])
def test_with_cp_fast_matches_plain(name):
    fast, plain = fast_and_plain(name, with_cp=True)
    x = torch.randn(1, 3, 70, 90)
    outs = [gradients(lambda x: torch.cat([o.flatten(1) for o in m.train()(x)], 1), [x]) for m in (fast, plain)]
    assert close(outs[0][0], outs[1][0]) and close(outs[0][1][0], outs[1][1][0])


@pytest.mark.parametrize('name', ['swin', 'crossformer'])
def test_fast_training_keeps_less_for_backward(name):
    """The memory claim as behaviour: the activations a training step keeps (distinct storages, measured as
    tools/benchmark.py measures them)."""
    def saved_bytes(model):
        return benchmark.peak_memory(model.train(), torch.randn(1, 3, 224, 224), 'train', torch.device('cpu'),
                                     torch.float32)
    fast, plain = fast_and_plain(name)
    assert saved_bytes(fast) < 0.8 * saved_bytes(plain)


def test_impl_is_checked():
    with pytest.raises(ValueError, match="impl must be one of"):
        SwinTransformer(impl='fused')
    with pytest.raises(ValueError, match="impl must be one of"):
        CrossFormer(impl=None)
    with pytest.raises(ValueError, match="impl must be one of"):
        SwinTransformerV2(impl='fused')
