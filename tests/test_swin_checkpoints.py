"""Loading Swin checkpoints of every published layout, and refusing what does not fit or is unsafe."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin
from mmengine.config import ConfigDict

from swin_backbones import CheckpointError, CheckpointMismatchError, SwinTransformer
from swin_backbones.models.grouping import relative_position_index

from .helpers import SMALL, assert_close, max_abs_diff, randomize_, to_authors_layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loaded(path, **kwargs):
    model = SwinTransformer(**SMALL, **kwargs, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    return model.eval()


def outputs(model, seed=0, size=(70, 93)):
    model.eval()  # not chained: mmdet's train() returns None
    with torch.no_grad():
        return model(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed)))


def authors_release(model):
    """The authors' classification release of ``model``: no output norms; head, final norm, index buffers."""
    state = {key: value for key, value in to_authors_layout(model.state_dict()).items() if not key.startswith('norm')}
    index = relative_position_index(model.window_size, model.window_size)
    for i, depth in enumerate(model.depths):
        for j in range(depth):
            state[f'layers.{i}.blocks.{j}.attn.relative_position_index'] = index
    state['norm.weight'] = torch.ones(model.num_features[-1])
    state['norm.bias'] = torch.zeros(model.num_features[-1])
    state['head.weight'] = torch.randn(1000, model.num_features[-1])
    state['head.bias'] = torch.randn(1000)
    return {'model': state}


@pytest.fixture
def source():
    """A random Swin whose output norms are at their initial values, as after loading a classifier."""
    model = randomize_(SwinTransformer(**SMALL), seed=21)
    for i in model.out_indices:
        torch.nn.init.ones_(getattr(model, f'norm{i}').weight)
        torch.nn.init.zeros_(getattr(model, f'norm{i}').bias)
    return model


def test_authors_release_loads(source, tmp_path):
    torch.save(authors_release(source), tmp_path / 'swin.pth')
    model = SwinTransformer(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'swin.pth')))
    assert model.load_pretrained(str(tmp_path / 'swin.pth')) == 'original'
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_mmdet_backbone_checkpoint_loads_and_matches_mmdet(tmp_path):
    reference = randomize_(MMDetSwin(**SMALL, drop_path_rate=0.0), seed=22)
    torch.save(reference.state_dict(), tmp_path / 'mmdet_swin.pth')
    assert_close(outputs(loaded(tmp_path / 'mmdet_swin.pth')), outputs(reference))


@pytest.fixture
def load_messages(monkeypatch):
    """What the backbones log while loading checkpoints (mmengine's logger keeps the stream it first saw,
    so pytest's capture fixtures miss it)."""
    messages = []
    monkeypatch.setattr('swin_backbones.loading.print_log', lambda message, **kwargs: messages.append(message))
    return messages


def test_mmpretrain_classifier_checkpoint_loads_and_says_so(tmp_path, load_messages):
    """mmpretrain's ImageClassifier with its SwinTransformer: the mmdet key layout under ``backbone.``, the
    output norm of the last stage only (its classification norm), a linear head and data preprocessor buffers."""
    reference = randomize_(MMDetSwin(**SMALL, out_indices=(3,), drop_path_rate=0.0), seed=23)
    state = {f'backbone.{key}': value for key, value in reference.state_dict().items()}
    state.update({'head.fc.weight': torch.randn(1000, 256), 'head.fc.bias': torch.randn(1000),
                  'data_preprocessor.mean': torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1),
                  'data_preprocessor.std': torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1)})
    torch.save({'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': state}, tmp_path / 'mmpretrain_swin.pth')
    model = SwinTransformer(**SMALL, out_indices=(3,))
    assert model.load_pretrained(str(tmp_path / 'mmpretrain_swin.pth')) == 'mmdet'
    assert 'the backbone of an mmpretrain classifier checkpoint, mmdet layout' in load_messages.pop()
    assert_close(outputs(model), outputs(reference))
    # All four output norms: the three the classifier does not have keep their initial values, and say so.
    everything = SwinTransformer(**SMALL)
    everything.load_pretrained(str(tmp_path / 'mmpretrain_swin.pth'))
    assert 'left at their current values: norm0.weight, norm0.bias, norm1.weight' in load_messages.pop()
    assert_close(outputs(everything)[3], outputs(reference)[0])


@pytest.mark.parametrize('other_parts, origin', [
    (['decode_head.conv_seg.weight', 'auxiliary_head.conv_seg.weight'], 'the backbone of a segmentor checkpoint'),
    (['neck.lateral_convs.0.conv.weight', 'rpn_head.rpn_conv.weight'], 'the backbone of a detector checkpoint'),
    (['teacher.fc.weight'], 'the backbone of a whole model checkpoint'),
])
def test_whole_model_checkpoints_say_what_they_are(source, tmp_path, load_messages, other_parts, origin):
    state = {f'backbone.{key}': value for key, value in source.state_dict().items()}
    state.update({key: torch.zeros(1) for key in other_parts})
    torch.save({'state_dict': state}, tmp_path / 'whole.pth')
    model = loaded(tmp_path / 'whole.pth')
    assert f'({origin}, swin_backbones layout' in load_messages.pop()
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_whole_detector_runner_checkpoint_loads(source, tmp_path):
    """An mmengine runner checkpoint: backbone. prefix, state_dict wrapper, history buffers and numpy in meta."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('swin_backbones_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('iter', 12)
    state = {f'backbone.{key}': value for key, value in source.state_dict().items()}
    state['neck.lateral_convs.0.conv.weight'] = torch.randn(8, 32, 1, 1)
    checkpoint = dict(meta=dict(epoch=1, seed=np.int64(7), mean=np.array([1.0, 2.0])), state_dict=state,
                      message_hub=hub.state_dict(), optimizer={'state': {}, 'param_groups': []})
    torch.save(checkpoint, tmp_path / 'detector.pth')
    assert max_abs_diff(outputs(loaded(tmp_path / 'detector.pth')), outputs(source)) == 0


def test_timm_layout_loads(source, tmp_path):
    state = {}
    for key, value in authors_release(source)['model'].items():
        if '.downsample.' in key:  # timm merges at the start of the next stage
            stage = int(key.split('.')[1])
            key = key.replace(f'layers.{stage}.', f'layers.{stage + 1}.', 1)
        state[key.replace('head.', 'head.fc.')] = value
    state['layers.0.blocks.1.attn_mask'] = torch.zeros(100, 49, 49)
    torch.save(state, tmp_path / 'timm.pth')
    model = SwinTransformer(**SMALL)
    assert model.load_pretrained(str(tmp_path / 'timm.pth')) == 'timm'
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_window_change_resizes_bias_tables_like_mmdet(source, tmp_path):
    release = authors_release(source)
    torch.save(release, tmp_path / 'w7.pth')
    ours = loaded(tmp_path / 'w7.pth', window_size=12)
    # mmdet cannot load the release's own (7x7) index buffers into a window-12 model: give it a copy without.
    release['model'] = {k: v for k, v in release['model'].items() if not k.endswith('relative_position_index')}
    torch.save(release, tmp_path / 'w7_for_mmdet.pth')
    reference = MMDetSwin(**SMALL, window_size=12, drop_path_rate=0.0, convert_weights=True,
                          init_cfg=ConfigDict(type='Pretrained', checkpoint=str(tmp_path / 'w7_for_mmdet.pth')))
    reference.init_weights()
    table = ours.stages[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (23 * 23, 1)
    assert_close(outputs(ours), outputs(reference))


@pytest.mark.parametrize('stored_as', ['tokens', 'nchw', 'nhwc'])
def test_absolute_position_embedding_is_resized(source, tmp_path, stored_as):
    grid = torch.randn(1, 32, 56, 56)
    stored = {'tokens': grid.flatten(2).transpose(1, 2), 'nchw': grid, 'nhwc': grid.permute(0, 2, 3, 1)}[stored_as]
    release = authors_release(source)
    release['model']['absolute_pos_embed'] = stored
    torch.save(release, tmp_path / 'ape.pth')
    model = loaded(tmp_path / 'ape.pth', use_abs_pos_embed=True, pretrain_img_size=384)
    expected = F.interpolate(grid, size=(96, 96), mode='bicubic', align_corners=False)
    assert_close(model.absolute_pos_embed, expected.flatten(2).transpose(1, 2))


def test_other_architecture_is_refused_with_key_lists(tmp_path):
    """A deeper, wider checkpoint into a smaller model, and the reverse."""
    deeper = dict(embed_dims=64, depths=(2, 2, 4, 2), num_heads=(2, 4, 8, 16))
    torch.save(SwinTransformer(**deeper).state_dict(), tmp_path / 'deeper.pth')
    with pytest.raises(CheckpointMismatchError) as error:
        loaded(tmp_path / 'deeper.pth')
    message = str(error.value)
    assert 'unexpected keys' in message and 'stages.2.blocks.3.norm1.weight' in message
    assert 'shape mismatches' in message and 'patch_embed.proj.weight: checkpoint (64, 3, 4, 4)' in message
    torch.save(SwinTransformer(**SMALL).state_dict(), tmp_path / 'small.pth')
    with pytest.raises(CheckpointMismatchError, match='missing keys .*stages.2.blocks.2.attn.qkv.weight'):
        SwinTransformer(**deeper).load_pretrained(str(tmp_path / 'small.pth'))


def test_extra_absolute_position_embedding_is_refused(source, tmp_path):
    release = authors_release(source)
    release['model']['absolute_pos_embed'] = torch.zeros(1, 3136, 32)
    torch.save(release, tmp_path / 'ape.pth')
    with pytest.raises(CheckpointMismatchError, match='unexpected keys .*absolute_pos_embed'):
        loaded(tmp_path / 'ape.pth')


def test_missing_block_is_refused(source, tmp_path):
    state = authors_release(source)['model']
    del state['layers.1.blocks.1.mlp.fc2.weight']
    torch.save(state, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(1\): stages.1.blocks.1.mlp.fc2.weight'):
        loaded(tmp_path / 'partial.pth')


def test_nan_weights_are_refused(source, tmp_path):
    state = authors_release(source)['model']
    state['layers.0.blocks.0.attn.qkv.weight'][0, 0] = float('nan')
    torch.save(state, tmp_path / 'nan.pth')
    with pytest.raises(CheckpointError, match='non-finite .*stages.0.blocks.0.attn.qkv.weight'):
        loaded(tmp_path / 'nan.pth')


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_code_in_a_pickle_never_runs(source, tmp_path):
    marker = str(tmp_path / 'payload-ran')
    release = authors_release(source)
    release['meta'] = _Payload(marker)
    torch.save(release, tmp_path / 'hostile.pth')
    with pytest.raises(CheckpointError, match='refusing to load .*mkdir.*weights_only=False'):
        loaded(tmp_path / 'hostile.pth')
    assert not os.path.exists(marker)


class _GetattrPayload:
    """Runner checkpoints may use getattr, but only for HistoryBuffer's statistics methods."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer
        return getattr, (HistoryBuffer, '__subclasses__')


def test_getattr_is_limited_to_history_buffer_statistics(source, tmp_path):
    release = authors_release(source)
    release['message_hub'] = _GetattrPayload()
    torch.save(release, tmp_path / 'getattr.pth')
    with pytest.raises(CheckpointError, match="refusing to load .*__subclasses__.* is not allowed"):
        loaded(tmp_path / 'getattr.pth')


def test_the_allowlist_unpickler_refuses_on_its_own(source, tmp_path, monkeypatch):
    """Files whose unsafe globals torch's scan reports as runner state only go to the allowlist unpickler; it
    must refuse the rest itself. Here the scan misses the payload's os.mkdir (as a scan of another torch
    version might): the file is still refused by the unpickler, and the payload never runs."""
    marker = str(tmp_path / 'payload-ran')
    release = authors_release(source)
    release['meta'] = _Payload(marker)
    torch.save(release, tmp_path / 'hostile.pth')
    monkeypatch.setattr(torch.serialization, 'get_unsafe_globals_in_checkpoint',
                        lambda path: ['mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr'])
    with pytest.raises(CheckpointError, match=r'refusing to load .*(posix|os)\.mkdir is not allowed'):
        loaded(tmp_path / 'hostile.pth')
    assert not os.path.exists(marker)


def test_trusted_legacy_file_loads_with_explicit_opt_in(source, tmp_path):
    import argparse
    release = authors_release(source)
    release['args'] = argparse.Namespace(lr=0.1)  # arbitrary object: needs full unpickling
    torch.save(release, tmp_path / 'legacy.pth')
    with pytest.raises(CheckpointError, match='argparse.Namespace'):
        loaded(tmp_path / 'legacy.pth')
    model = SwinTransformer(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'legacy.pth'),
                                                   weights_only=False))
    model.init_weights()
    assert max_abs_diff(outputs(model), outputs(source)) == 0


@pytest.mark.parametrize('content', [b'', b'not a checkpoint at all', 'truncated'])
def test_unreadable_files_are_named(source, tmp_path, content):
    path = tmp_path / 'bad.pth'
    if content == 'truncated':
        torch.save(authors_release(source), path)
        path.write_bytes(path.read_bytes()[:5000])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
        loaded(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        loaded(tmp_path / 'nowhere.pth')


def test_pretrained_argument_is_the_deprecated_spelling_of_init_cfg(source, tmp_path):
    torch.save(authors_release(source), tmp_path / 'swin.pth')
    with pytest.warns(DeprecationWarning):
        model = SwinTransformer(**SMALL, pretrained=str(tmp_path / 'swin.pth'))
    model.init_weights()
    assert max_abs_diff(outputs(model), outputs(source)) == 0


def test_prefix_and_unknown_init_cfg_keys(source, tmp_path):
    torch.save({'state_dict': {f'teacher.backbone.{k}': v for k, v in source.state_dict().items()}},
               tmp_path / 'distill.pth')
    model = SwinTransformer(**SMALL, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'distill.pth'),
                                                   prefix='teacher.backbone.'))
    model.init_weights()
    assert max_abs_diff(outputs(model), outputs(source)) == 0
    model = SwinTransformer(**SMALL, init_cfg=dict(type='Pretrained', checkpoint='x.pth', strict=False))
    with pytest.raises(ValueError, match="unknown keys .*'strict'"):
        model.init_weights()


def test_convert_tool_converts_a_whole_detector_checkpoint(tmp_path):
    reference = randomize_(MMDetSwin(**SMALL, drop_path_rate=0.0), seed=23)
    state = {f'backbone.{key}': value for key, value in reference.state_dict().items()}
    state['rpn_head.rpn_conv.weight'] = torch.randn(4, 4, 3, 3)
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, tmp_path / 'mask_rcnn.pth')
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'convert_checkpoint.py'),
                             str(tmp_path / 'mask_rcnn.pth'), str(tmp_path / 'out' / 'swin.pth')],
                            capture_output=True, text=True, check=True)
    assert 'the backbone of a detector checkpoint, SwinTransformer in the mmdet layout' in result.stdout
    converted = torch.load(tmp_path / 'out' / 'swin.pth', weights_only=True)
    assert converted['meta']['source_layout'] == 'mmdet'
    model = SwinTransformer(**SMALL)
    model.load_state_dict(converted['state_dict'])  # strict: the package's own layout, nothing to map
    assert_close(outputs(model), outputs(reference))
    assert sorted(os.listdir(tmp_path / 'out')) == ['swin.pth']  # no temporary file left behind


def test_convert_tool_refuses_to_overwrite_its_input_and_bad_files(source, tmp_path):
    torch.save(authors_release(source), tmp_path / 'swin.pth')
    before = (tmp_path / 'swin.pth').read_bytes()
    tool = os.path.join(REPO, 'tools', 'convert_checkpoint.py')
    result = subprocess.run([sys.executable, tool, str(tmp_path / 'swin.pth'), str(tmp_path / 'swin.pth')],
                            capture_output=True, text=True)
    assert result.returncode == 2 and 'refusing to overwrite' in result.stderr
    assert (tmp_path / 'swin.pth').read_bytes() == before
    torch.save({'encoder.weight': torch.zeros(2)}, tmp_path / 'other.pth')
    result = subprocess.run([sys.executable, tool, str(tmp_path / 'other.pth'), str(tmp_path / 'out.pth')],
                            capture_output=True, text=True)
    assert result.returncode == 2 and 'cannot tell which backbone' in result.stderr
    assert not (tmp_path / 'out.pth').exists()


def test_convert_to_mmdet_and_back(tmp_path, capsys):
    """A detector trained with this package's Swin -> mmdet's layout, which mmdet's own SwinTransformer loads
    strictly (its relative_position_index buffers included), the other parts and meta unchanged -> back."""
    from mmdet.models.backbones.swin import swin_converter

    from swin_backbones.cli import convert as convert_cli
    ours = randomize_(SwinTransformer(**SMALL, window_size=5, drop_path_rate=0.0), seed=24)
    heads = {'rpn_head.rpn_conv.weight': torch.randn(4, 4, 3, 3), 'neck.fpn_convs.0.conv.bias': torch.randn(4)}
    meta = {'epoch': 12, 'dataset_meta': {'classes': ('circle', 'square')}}
    state = {f'backbone.{key}': value for key, value in ours.state_dict().items()}
    torch.save({'state_dict': {**state, **heads}, 'meta': meta}, tmp_path / 'ours.pth')
    assert convert_cli.main([str(tmp_path / 'ours.pth'), str(tmp_path / 'mmdet.pth'), '--to', 'mmdet']) == 0
    assert 'wrote 133 backbone tensors in the mmdet layout' in capsys.readouterr().out
    written = torch.load(tmp_path / 'mmdet.pth', weights_only=True)
    assert written['meta']['dataset_meta'] == meta['dataset_meta'] and written['meta']['layout'] == 'mmdet'
    assert all(torch.equal(written['state_dict'][key], value) for key, value in heads.items())
    backbone = {key[len('backbone.'):]: value for key, value in written['state_dict'].items()
                if key.startswith('backbone.')}
    # mmdet's own converter (authors' layout -> mmdet's) agrees on every tensor it writes.
    expected = {key[len('backbone.'):]: value
                for key, value in swin_converter(to_authors_layout(ours.state_dict())).items()}
    assert set(backbone) - set(expected) == {key for key in backbone if key.endswith('relative_position_index')}
    assert all(torch.equal(backbone[key], value) for key, value in expected.items())
    reference = MMDetSwin(**SMALL, window_size=5, drop_path_rate=0.0)
    reference.load_state_dict(backbone, strict=True)
    assert_close(outputs(reference), outputs(ours))
    # And back: this package's layout, tensor for tensor.
    assert convert_cli.main([str(tmp_path / 'mmdet.pth'), str(tmp_path / 'back.pth')]) == 0
    back = torch.load(tmp_path / 'back.pth', weights_only=True)['state_dict']
    assert back.keys() == ours.state_dict().keys()
    assert all(torch.equal(back[key], value) for key, value in ours.state_dict().items())


def test_convert_to_mmdet_is_for_swin_v1(tmp_path, capsys):
    from swin_backbones import SwinTransformerV2
    from swin_backbones.cli import convert as convert_cli
    torch.save(SwinTransformerV2(**SMALL).state_dict(), tmp_path / 'v2.pth')
    assert convert_cli.main([str(tmp_path / 'v2.pth'), str(tmp_path / 'out.pth'), '--to', 'mmdet']) == 2
    assert 'mmdet and mmseg have no SwinTransformerV2' in capsys.readouterr().err
    assert not (tmp_path / 'out.pth').exists()
