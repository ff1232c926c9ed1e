"""Every loader (mmengine's load_checkpoint, hence load_from, resume, test.py and the inferencers; torch's
load_state_dict; init_cfg=Pretrained) takes every supported layout under any prefix, gives the same
weights, and refuses to leave a backbone weight unloaded unless allow_partial_loading is set."""
import copy
import pickle

import pytest
import torch
import torch.nn as nn
from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin
from mmengine.runner import load_checkpoint

from swin_backbones import (CheckpointError, CheckpointMismatchError, CrossFormer, SwinTransformer, SwinTransformerV2,
                            list_backbones)
from swin_backbones.convert import identify_backbone
from swin_backbones.registry import MODELS, registered_backbones

from .helpers import (NECK, SMALL, WholeModel, assert_close, load_mmpretrain_swinv2, randomize_, randomize_swinv2_,
                      whole_model_checkpoint)

def image(seed=1):
    return torch.randn(1, 3, 65, 97, generator=torch.Generator().manual_seed(seed))


def mmdet_swin():
    reference = randomize_(MMDetSwin(**SMALL, drop_path_rate=0.0), seed=3)
    reference.eval()  # not chained: mmdet's train() returns None
    return reference, SwinTransformer, dict(SMALL)


def mmpretrain_swinv2():
    reference = load_mmpretrain_swinv2()(arch=dict(SMALL, extra_norm_every_n_blocks=0), window_size=8,
                                         out_indices=(0, 1, 2, 3), pad_small_map=True, drop_path_rate=0.0)
    reference.eval()
    return randomize_swinv2_(reference, seed=4), SwinTransformerV2, dict(SMALL, window_size=8)


def authors_crossformer():
    reference = randomize_(CrossFormer(**SMALL, drop_path_rate=0.0), seed=5).eval()
    return reference, CrossFormer, dict(SMALL)


# Each backbone with a checkpoint in another library's layout (the package's own for CrossFormer, whose
# only published layout is the authors'), and that library's model as the reference.
REFERENCES = {'swin-mmdet': mmdet_swin, 'swinv2-mmpretrain': mmpretrain_swinv2, 'crossformer': authors_crossformer}


def load_with(loader, backbone_type, kwargs, path, state):
    if loader == 'init_cfg':
        backbone = backbone_type(**kwargs, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
        backbone.init_weights()
        return backbone.eval()
    model = WholeModel(backbone_type(**kwargs))
    if loader == 'load_checkpoint':
        load_checkpoint(model, str(path))
    else:
        assert not model.load_state_dict(state, strict=True).missing_keys
        assert torch.equal(model.neck.weight, NECK['neck.weight'])
    return model.backbone.eval()


@pytest.mark.parametrize('name', sorted(REFERENCES))
def test_every_loader_gives_the_reference_weights(name, tmp_path):
    reference, backbone_type, kwargs = REFERENCES[name]()
    path = tmp_path / 'whole.pth'
    state = whole_model_checkpoint(path, reference)
    backbones = {loader: load_with(loader, backbone_type, kwargs, path, state)
                 for loader in ('load_checkpoint', 'load_state_dict', 'init_cfg')}
    weights = {loader: backbone.state_dict() for loader, backbone in backbones.items()}
    for key, value in weights['init_cfg'].items():
        assert torch.equal(weights['load_checkpoint'][key], value)
        assert torch.equal(weights['load_state_dict'][key], value)
    with torch.no_grad():
        assert_close(backbones['load_checkpoint'](image()), reference(image()))


def test_any_prefix_and_a_model_wrapper(tmp_path):
    """A model that keeps its detector under ``model.`` (distillers, semi-supervised learners), and DDP's
    ``module.`` which mmengine strips."""
    reference, backbone_type, kwargs = mmdet_swin()
    state = whole_model_checkpoint(tmp_path / 'nested.pth', reference, prefix='model.backbone.')
    nested = nn.Module()
    nested.model = WholeModel(backbone_type(**kwargs))
    nested.load_state_dict(state, strict=True)
    torch.save({'state_dict': {'module.' + key: value for key, value in state.items()}}, tmp_path / 'ddp.pth')
    wrapped = nn.Module()
    wrapped.model = WholeModel(backbone_type(**kwargs))
    load_checkpoint(wrapped, str(tmp_path / 'ddp.pth'))
    with torch.no_grad():
        assert_close(nested.model.backbone.eval()(image()), reference(image()))
        assert_close(wrapped.model.backbone.eval()(image()), reference(image()))


def test_copies_keep_converting(tmp_path):
    """deepcopy (mmengine's EMA models) and pickling keep the hook, bound to the copy."""
    reference, backbone_type, kwargs = mmdet_swin()
    whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    original = WholeModel(backbone_type(**kwargs))
    for copied in (copy.deepcopy(original), pickle.loads(pickle.dumps(original))):
        load_checkpoint(copied, str(tmp_path / 'whole.pth'))
        with torch.no_grad():
            assert_close(copied.backbone.eval()(image()), reference(image()))
    assert not torch.equal(original.backbone.patch_embed.proj.weight, copied.backbone.patch_embed.proj.weight)


def test_a_missing_weight_is_an_error_even_for_mmengines_non_strict_loader(tmp_path):
    reference, backbone_type, kwargs = mmdet_swin()
    state = whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    del state['backbone.stages.1.blocks.0.ffn.layers.1.weight']
    torch.save({'state_dict': state}, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointMismatchError, match=r"under 'backbone\.' \(mmdet layout\) does not fit "
                                                      r"SwinTransformer at 'backbone':\n  missing keys \(1\): "
                                                      r'stages\.1\.blocks\.0\.mlp\.fc2\.weight'):
        load_checkpoint(WholeModel(backbone_type(**kwargs)), str(tmp_path / 'partial.pth'))


def test_a_wrong_shape_is_an_error_even_for_mmengines_non_strict_loader(tmp_path):
    """mmengine's non-strict loader skips a tensor of the wrong shape with a log line."""
    reference, backbone_type, kwargs = mmdet_swin()
    whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    model = WholeModel(backbone_type(**dict(kwargs, embed_dims=64)))
    with pytest.raises(CheckpointMismatchError, match=r'shape mismatches .*patch_embed\.proj\.weight: '
                                                      r'checkpoint \(32, 3, 4, 4\) vs model \(64, 3, 4, 4\)'):
        load_checkpoint(model, str(tmp_path / 'whole.pth'))


def test_another_backbones_weights_are_named(tmp_path):
    reference, _, kwargs = mmdet_swin()
    whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    with pytest.raises(CheckpointMismatchError, match='looks like a SwinTransformer checkpoint, not a CrossFormer '
                                                      'one; build swin_backbones.SwinTransformer'):
        load_checkpoint(WholeModel(CrossFormer(**kwargs)), str(tmp_path / 'whole.pth'))


def test_non_finite_weights_are_an_error(tmp_path):
    reference, backbone_type, kwargs = mmdet_swin()
    state = whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    state['backbone.stages.0.blocks.1.attn.w_msa.qkv.weight'][0, 0] = float('inf')
    with pytest.raises(CheckpointError, match=r'non-finite values .*stages\.0\.blocks\.1\.attn\.qkv\.weight'):
        WholeModel(backbone_type(**kwargs)).load_state_dict(state, strict=False)


def test_no_backbone_weights_at_all_is_an_error(tmp_path):
    """A backbone-only checkpoint given to load_from: nothing under backbone., all of it unexpected to mmengine."""
    reference, backbone_type, kwargs = mmdet_swin()
    torch.save({'state_dict': reference.state_dict()}, tmp_path / 'backbone_only.pth')
    with pytest.raises(CheckpointMismatchError, match=r"the state dict under 'backbone\.' has no weights for "
                                                      r"SwinTransformer at 'backbone'.*"
                                                      r"init_cfg=dict\(type='Pretrained'"):
        load_checkpoint(WholeModel(backbone_type(**kwargs)), str(tmp_path / 'backbone_only.pth'))


@pytest.fixture
def warnings_logged(monkeypatch):
    """The warnings the loading hook logs (mmengine's logger keeps the stream it first saw, so pytest's
    capture fixtures miss it)."""
    import logging
    messages = []
    monkeypatch.setattr('swin_backbones.loading.print_log', lambda message, level=logging.INFO, **kwargs:
                        messages.append(message) if level >= logging.WARNING else None)
    return messages


def test_partial_loads_need_the_opt_out_and_say_what_they_leave(tmp_path, warnings_logged):
    reference, backbone_type, kwargs = mmdet_swin()
    state = whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    del state['backbone.stages.1.blocks.0.ffn.layers.1.weight']
    backbone = MODELS.build(dict(type='SwinTransformer', **kwargs, allow_partial_loading=True))  # as from a config
    model = WholeModel(backbone)
    before = backbone.stages[1].blocks[0].mlp.fc2.weight.clone()
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ['backbone.stages.1.blocks.0.mlp.fc2.weight']
    assert 'missing keys (1): stages.1.blocks.0.mlp.fc2.weight' in warnings_logged.pop()
    assert torch.equal(backbone.stages[1].blocks[0].mlp.fc2.weight, before)
    assert torch.equal(backbone.stages[1].blocks[0].mlp.fc1.weight,
                       state['backbone.stages.1.blocks.0.ffn.layers.0.0.weight'])
    # Only the other parts: the backbone keeps its weights, and the log says so.
    model.backbone.allow_partial_loading = True
    model.load_state_dict(NECK, strict=False)
    assert 'has no weights for SwinTransformer' in warnings_logged.pop()
    assert torch.equal(backbone.stages[1].blocks[0].mlp.fc2.weight, before)


def test_partial_loads_drop_mis_shaped_tensors_and_load_the_rest(tmp_path, warnings_logged):
    """With the opt-out, a tensor of the wrong shape is reported and left out, not handed to torch (whose
    size-mismatch RuntimeError would end the load after the log said what fits is loaded)."""
    reference, backbone_type, kwargs = mmdet_swin()
    state = whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    state['backbone.stages.1.blocks.0.ffn.layers.1.weight'] = torch.zeros(3, 3)
    model = WholeModel(backbone_type(**kwargs, allow_partial_loading=True))
    before = model.backbone.stages[1].blocks[0].mlp.fc2.weight.clone()
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == ['backbone.stages.1.blocks.0.mlp.fc2.weight']
    assert 'shape mismatches (1): stages.1.blocks.0.mlp.fc2.weight: checkpoint (3, 3)' in warnings_logged.pop()
    assert torch.equal(model.backbone.stages[1].blocks[0].mlp.fc2.weight, before)
    assert torch.equal(model.backbone.stages[1].blocks[0].mlp.fc1.weight,
                       state['backbone.stages.1.blocks.0.ffn.layers.0.0.weight'])


def test_a_backbones_own_load_state_dict_takes_a_whole_models_weights(tmp_path, monkeypatch):
    """As init_cfg=Pretrained does: the keys under ``backbone.`` of a detector's state dict; the log counts
    the tensors loaded, not the detector's."""
    reference, backbone_type, kwargs = mmdet_swin()
    state = whole_model_checkpoint(tmp_path / 'whole.pth', reference)
    logged = []
    monkeypatch.setattr('swin_backbones.loading.print_log', lambda message, **kwargs: logged.append(message))
    backbone = backbone_type(**kwargs)
    backbone.load_state_dict(state, strict=True)
    assert 'the backbone of a detector checkpoint, mmdet layout' in logged[-1]
    assert f'{len(backbone.state_dict())} tensors' in logged[-1], logged[-1]  # not mmdet's index buffers
    with torch.no_grad():
        assert_close(backbone.eval()(image()), reference(image()))


def test_other_classes_in_the_registry_are_not_backbones():
    """A user's own module registered in the package's registry does not break the backbone lists."""
    @MODELS.register_module()
    class UsersNeck(nn.Module):
        pass
    try:
        assert UsersNeck not in registered_backbones()
        assert 'swin-t' in list_backbones()
        assert identify_backbone(SwinTransformer(**SMALL).state_dict()) is SwinTransformer
    finally:
        MODELS.module_dict.pop('UsersNeck')
