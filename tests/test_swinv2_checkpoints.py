"""Loading Swin V2 checkpoints of every published layout, telling them from Swin V1 checkpoints, and saying
which windows normalise the position bias."""
import os
import subprocess
import sys

import pytest
import torch

from swin_backbones import CheckpointMismatchError, SwinTransformer, SwinTransformerV2
from swin_backbones.convert import identify_backbone
from swin_backbones.models import swinv2
from swin_backbones.models.grouping import relative_position_index

from .helpers import (SMALL, assert_close, load_mmpretrain_swinv2, max_abs_diff, randomize_, randomize_swinv2_,
                      to_authors_layout)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def outputs(model, size=(2, 3, 70, 93)):
    with torch.no_grad():
        return model.eval()(torch.randn(*size, generator=torch.Generator().manual_seed(0)))


@pytest.fixture
def source():
    """A random Swin V2 (window 8) whose output norms are at their initial values, as after loading a classifier."""
    model = randomize_swinv2_(SwinTransformerV2(**SMALL, window_size=8), seed=21)
    for i in model.out_indices:
        torch.nn.init.ones_(getattr(model, f'norm{i}').weight)
        torch.nn.init.zeros_(getattr(model, f'norm{i}').bias)
    return model


def coords_table(window, normaliser):
    """The authors' relative_coords_table buffer: (1, 2w-1, 2w-1, 2)."""
    return swinv2.log_spaced_offsets(window, normaliser).view(1, 2 * window - 1, 2 * window - 1, 2)


def authors_release(model, normalisers=None):
    """The authors' classification checkpoint of ``model``: no output norms; their buffers, head and final norm."""
    state = {key: value for key, value in to_authors_layout(model.state_dict()).items() if not key.startswith('norm')}
    for i, (depth, window) in enumerate(zip(model.depths, model.window_sizes)):
        normaliser = (normalisers or model.position_bias_normalisers)[i]
        for j in range(depth):
            prefix = f'layers.{i}.blocks.{j}'
            state[f'{prefix}.attn.relative_coords_table'] = coords_table(window, normaliser)
            state[f'{prefix}.attn.relative_position_index'] = relative_position_index(window, window)
            if j % 2:
                state[f'{prefix}.attn_mask'] = torch.zeros(4, window ** 2, window ** 2)
    state['norm.weight'] = torch.ones(model.num_features[-1])
    state['norm.bias'] = torch.zeros(model.num_features[-1])
    state['head.weight'] = torch.randn(1000, model.num_features[-1])
    state['head.bias'] = torch.randn(1000)
    return {'model': state}


def to_mmpretrain(state):
    """The authors' keys -> mmpretrain's, written out independently of the converter: stages,
    w_msa, ffn, merging at the start of the next stage with its input features in nn.Unfold order."""
    converted = {}
    for key, value in state.items():
        key = key.replace('patch_embed.proj.', 'patch_embed.projection.').replace('.attn.', '.attn.w_msa.')
        key = key.replace('.mlp.fc1.', '.ffn.layers.0.0.').replace('.mlp.fc2.', '.ffn.layers.1.')
        if key.startswith('layers.'):
            _, stage, rest = key.split('.', 2)
            if rest.startswith('downsample.'):
                stage = int(stage) + 1
                if rest == 'downsample.reduction.weight':
                    out_dim, in_dim = value.shape
                    channels = in_dim // 4
                    unfolded = torch.empty_like(value)
                    for neighbour, tap in enumerate([0, 2, 1, 3]):  # (0,0), (1,0), (0,1), (1,1) -> row-major tap
                        unfolded[:, tap::4] = value[:, neighbour * channels:(neighbour + 1) * channels]
                    value = unfolded
            key = f'stages.{stage}.{rest}'
        converted[key] = value
    return converted


def test_authors_release_loads(source, tmp_path):
    torch.save(authors_release(source), tmp_path / 'swinv2.pth')
    model = SwinTransformerV2(**SMALL, window_size=8)
    assert model.load_pretrained(str(tmp_path / 'swinv2.pth')) == 'original'
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_timm_layout_loads(source, tmp_path):
    state = {}
    for key, value in authors_release(source)['model'].items():
        if 'relative_' in key or 'attn_mask' in key:
            continue  # timm keeps its buffers out of the state dict
        if '.downsample.' in key:  # timm merges at the start of the next stage
            stage = int(key.split('.')[1])
            key = key.replace(f'layers.{stage}.', f'layers.{stage + 1}.', 1)
        state[key.replace('head.', 'head.fc.')] = value
    torch.save(state, tmp_path / 'timm.pth')
    model = SwinTransformerV2(**SMALL, window_size=8)
    assert model.load_pretrained(str(tmp_path / 'timm.pth')) == 'timm'
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_mmpretrain_whole_classifier_loads(source, tmp_path):
    """mmpretrain's ImageClassifier state dict: backbone. keys (with its buffers and output norm norm3),
    head.fc and the data preprocessor's statistics, in a runner checkpoint."""
    state = {f'backbone.{key}': value for key, value in to_mmpretrain(to_authors_layout(source.state_dict())).items()
             if not key.startswith(('norm0', 'norm1', 'norm2'))}
    state['backbone.stages.0.blocks.0.attn.w_msa.relative_coords_table'] = coords_table(8, 8)
    state.update({'head.fc.weight': torch.randn(1000, 256), 'head.fc.bias': torch.randn(1000),
                  'data_preprocessor.mean': torch.zeros(3, 1, 1), 'data_preprocessor.std': torch.ones(3, 1, 1)})
    torch.save({'state_dict': state, 'meta': {'epoch': 300}}, tmp_path / 'mmpretrain.pth')
    model = SwinTransformerV2(**SMALL, window_size=8)
    assert model.load_pretrained(str(tmp_path / 'mmpretrain.pth')) == 'mmpretrain'
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_mmpretrain_backbone_of_its_own_loads(tmp_path):
    """A state dict written by mmpretrain 1.2.0's SwinTransformerV2 itself, inside a classifier's."""
    theirs = load_mmpretrain_swinv2()(arch=dict(SMALL, extra_norm_every_n_blocks=0), window_size=8,
                                      out_indices=(0, 1, 2, 3), pad_small_map=True, drop_path_rate=0.0)
    theirs.eval()  # not chained: mmpretrain's train() returns None
    randomize_swinv2_(theirs, seed=6)
    state = {f'backbone.{key}': value for key, value in theirs.state_dict().items()}
    state.update({'head.fc.weight': torch.randn(1000, 256), 'head.fc.bias': torch.randn(1000)})
    torch.save({'state_dict': state}, tmp_path / 'mmpretrain.pth')
    model = SwinTransformerV2(**SMALL, window_size=8, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path /
                                                                                                     'mmpretrain.pth')))
    model.init_weights()
    with torch.no_grad():
        x = torch.randn(2, 3, 75, 101)
        assert_close(model.eval()(x), theirs(x))


def test_whole_detector_checkpoint_loads(source, tmp_path):
    state = {f'backbone.{key}': value for key, value in source.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(8, 32, 1, 1)
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, tmp_path / 'detector.pth')
    model = SwinTransformerV2(**SMALL, window_size=8)
    assert model.load_pretrained(str(tmp_path / 'detector.pth')) == 'swin_backbones'
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_loading_is_strict(source, tmp_path):
    state = authors_release(source)['model']
    del state['layers.1.blocks.1.attn.logit_scale']
    state['layers.1.blocks.1.attn.k_proj.weight'] = torch.zeros(4)
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        SwinTransformerV2(**SMALL, window_size=8).load_pretrained(str(tmp_path / 'partial.pth'))
    assert 'missing keys (1): stages.1.blocks.1.attn.logit_scale' in str(error.value)
    assert 'unexpected keys (1): stages.1.blocks.1.attn.k_proj.weight' in str(error.value)
    torch.save(authors_release(source), tmp_path / 'heads.pth')
    with pytest.raises(CheckpointMismatchError, match='shape mismatches .*logit_scale: checkpoint .1, 1, 1. vs model '
                                                      r'.2, 1, 1.'):
        SwinTransformerV2(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 8)).load_pretrained(
            str(tmp_path / 'heads.pth'))


def test_v1_and_v2_checkpoints_are_told_apart(source, tmp_path):
    v1 = randomize_(SwinTransformer(**SMALL))
    torch.save({'model': v1.state_dict()}, tmp_path / 'v1.pth')
    torch.save(authors_release(source), tmp_path / 'v2.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        SwinTransformerV2(**SMALL).load_pretrained(str(tmp_path / 'v1.pth'))
    assert 'looks like a SwinTransformer checkpoint, not a SwinTransformerV2 one; build ' \
        'swin_backbones.SwinTransformer for it' in str(error.value)
    assert 'missing keys' in str(error.value) and 'stages.0.blocks.0.attn.cpb_mlp.0.weight' in str(error.value)
    with pytest.raises(CheckpointMismatchError, match='looks like a SwinTransformerV2 checkpoint, not a '
                                                      'SwinTransformer one'):
        SwinTransformer(**SMALL).load_pretrained(str(tmp_path / 'v2.pth'))
    mmpretrain_v2 = to_mmpretrain(to_authors_layout(source.state_dict()))
    assert identify_backbone(mmpretrain_v2) is SwinTransformerV2
    assert identify_backbone(authors_release(source)['model']) is SwinTransformerV2
    assert identify_backbone(v1.state_dict()) is SwinTransformer
    no_qkv_bias = SwinTransformerV2(**SMALL, qkv_bias=False).state_dict()
    assert identify_backbone(no_qkv_bias) is SwinTransformerV2


@pytest.mark.parametrize('layout', ['original', 'mmpretrain'])
def test_convert_tool_converts_swinv2(source, tmp_path, layout):
    if layout == 'original':
        torch.save(authors_release(source), tmp_path / 'in.pth')
    else:
        mmpretrain = to_mmpretrain(to_authors_layout(source.state_dict()))
        torch.save({'state_dict': {f'backbone.{k}': v for k, v in mmpretrain.items()}}, tmp_path / 'in.pth')
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'convert_checkpoint.py'),
                             str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True, check=True)
    assert f'SwinTransformerV2 in the {layout} layout' in result.stdout
    converted = torch.load(tmp_path / 'out.pth', weights_only=True)
    assert converted['meta']['backbone'] == 'SwinTransformerV2'
    model = SwinTransformerV2(**SMALL, window_size=8)
    model.load_state_dict(converted['state_dict'], strict=layout == 'mmpretrain')  # the release has no norm{i}
    assert max_abs_diff(outputs(model), outputs(source)) == 0


@pytest.fixture
def logged(monkeypatch):
    messages = []
    monkeypatch.setattr(swinv2, 'print_log', lambda message, **kwargs: messages.append((kwargs['level'], message)))
    return messages


def test_other_window_loads_without_resizing_and_says_which_normaliser(source, tmp_path, logged):
    """A window-8 checkpoint at window 16: the same tensors, the coordinates normalised by the pretrained windows."""
    torch.save(authors_release(source), tmp_path / 'w8.pth')
    model = SwinTransformerV2(**SMALL, window_size=16, pretrained_window_sizes=8)
    model.load_pretrained(str(tmp_path / 'w8.pth'))
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert [level for level, _ in logged] == [20]  # INFO only
    assert 'normalised by the pretrained windows (8, 8, 8, 8) for windows (16, 16, 16, 16); nothing in the ' \
        'checkpoint is resized' in logged[0][1]
    table = model.stages[0].blocks[0].attn.relative_coords_table
    assert table.shape == (31 * 31, 2) and torch.equal(table, swinv2.log_spaced_offsets(16, 8))


def test_normaliser_other_than_the_checkpoints_is_warned_about(source, tmp_path, logged):
    """The authors' w12to16 fine-tuning keeps pretrained windows (12, 12, 12, 6): their stored tables show it."""
    torch.save(authors_release(source, normalisers=(12, 12, 12, 6)), tmp_path / 'finetuned.pth')
    SwinTransformerV2(**SMALL, window_size=8).load_pretrained(str(tmp_path / 'finetuned.pth'))
    warnings = [message for level, message in logged if level == 30]
    assert len(warnings) == 1
    assert 'normalised by the windows (12, 12, 12, 6) (per stage), this model normalises them by (8, 8, 8, 8): ' \
        'to use the bias as trained, set pretrained_window_sizes=(12, 12, 12, 6)' in warnings[0]
    logged.clear()
    SwinTransformerV2(**SMALL, window_size=8, pretrained_window_sizes=(12, 12, 12, 6)).load_pretrained(
        str(tmp_path / 'finetuned.pth'))
    assert [level for level, _ in logged] == [20]


@pytest.mark.parametrize('window, normaliser', [(8, 8), (16, 8), (12, 12), (24, 12), (8, 6), (2, 2), (6, 12)])
def test_checkpoint_normalisers_are_read_from_stored_tables(window, normaliser):
    state = {f'layers.{i}.blocks.0.attn.relative_coords_table': coords_table(window, normaliser) for i in (0, 2)}
    state['stages.1.blocks.1.attn.w_msa.relative_coords_table'] = coords_table(window, normaliser)
    assert swinv2.checkpoint_normalisers(state) == {0: normaliser, 1: normaliser, 2: normaliser}
