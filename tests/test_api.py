"""The plain-Python API: backbones by name, feature pyramids of images, the extraction and picture tools."""
import importlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from swin_backbones import CrossFormer, SwinTransformer, SwinTransformerV2
from swin_backbones.api import create_backbone, extract_features, list_backbones, load_image
from swin_backbones.visualization import principal_components_rgb

from .helpers import assert_close, randomize_

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


@pytest.fixture(scope='module')
def backbone():
    return randomize_(create_backbone('swin-t', drop_path_rate=0.0), seed=2)


def direct(backbone, pixels):
    """The pyramid of one (3, H, W) 0-255 image run alone through the backbone."""
    with torch.no_grad():
        levels = backbone(((pixels - MEAN) / STD).unsqueeze(0))
    return dict(zip((4, 8, 16, 32), levels))


def test_names_and_overrides():
    names = list_backbones()
    assert {'swin-t', 'swin-s', 'swin-b', 'swin-l', 'crossformer-t', 'crossformer-s', 'crossformer-b', 'crossformer-l', 'crossformer-pp-s',
            'crossformer-pp-b', 'crossformer-pp-l'} <= set(names)
    model = create_backbone('swin-b', out_indices=(2, 3), window_size=12)
    assert isinstance(model, SwinTransformer) and not model.training
    assert (model.embed_dims, model.out_indices, model.window_size) == (128, (2, 3), 12)
    with pytest.raises(ValueError, match="unknown backbone 'swin-xl'"):
        create_backbone('swin-xl')
    with pytest.raises(ValueError, match='checkpoint=PATH'):
        create_backbone('swin-t', init_cfg=dict(type='Pretrained', checkpoint='x'))


@pytest.mark.parametrize('scope', [None, 'mmdet', 'mmseg'])
def test_this_packages_classes_under_any_default_scope(scope, tmp_path, capsys):
    """mmdet's and mmseg's registries, which a runner, an inferencer or register_all_modules() make the
    default, have a SwinTransformer of their own and none of the others."""
    import contextlib

    from mmengine.registry import DefaultScope

    from swin_backbones.cli import extract as extract_cli
    from swin_backbones.export import build_backbone
    from .helpers import TOY_CONFIGS
    if scope is not None:
        importlib.import_module(f'{scope}.registry')
    with DefaultScope.overwrite_default_scope(scope) if scope else contextlib.nullcontext():
        assert (DefaultScope.get_current_instance() is not None) == (scope is not None)
        with torch.device('meta'):  # the classes are the point: no need for real weights
            for name, backbone_type in (('swin-t', SwinTransformer), ('swinv2-t', SwinTransformerV2),
                                        ('crossformer-t', CrossFormer)):
                assert type(create_backbone(name)) is backbone_type
            assert type(build_backbone(TOY_CONFIGS['det', 'swinv2'])) is SwinTransformerV2
        Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / 'x.png')
        assert extract_cli.main([str(tmp_path), str(tmp_path / 'out'), '--backbone', 'crossformer-t']) == 0
        assert (tmp_path / 'out' / 'x.png.npz').is_file()


def test_swinv2_names_windows_and_features(tmp_path):
    assert {'swinv2-t', 'swinv2-s', 'swinv2-b', 'swinv2-l'} <= set(list_backbones())
    model = randomize_(create_backbone('swinv2-t', drop_path_rate=0.0), seed=3)
    assert isinstance(model, SwinTransformerV2) and not model.training and model.window_sizes == (8,) * 4
    torch.save({'model': model.state_dict()}, tmp_path / 'swinv2.pth')
    other_window = create_backbone('swinv2-t', checkpoint=tmp_path / 'swinv2.pth', window_size=16,
                                   pretrained_window_sizes=8, out_indices=(1, 3))
    assert other_window.window_sizes == (16,) * 4 and other_window.out_indices == (1, 3)
    pixels = torch.randint(0, 256, (3, 97, 131), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    pyramid, = extract_features(model, [pixels])
    expected = direct(model, pixels.float())
    assert pyramid.keys() == expected.keys() and all(torch.equal(pyramid[s], expected[s]) for s in pyramid)


def test_create_backbone_loads_a_checkpoint_in_any_layout(backbone, tmp_path):
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in backbone.state_dict().items()}}, tmp_path / 'det.pth')
    loaded = create_backbone('swin-t', checkpoint=tmp_path / 'det.pth')
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(loaded(x), backbone(x)))


def test_mixed_inputs_of_different_sizes_equal_running_each_alone(backbone, tmp_path):
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    Image.fromarray(array).save(tmp_path / 'a.png')
    pil = Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    tensor = torch.rand(3, 97, 131)
    gray = rng.integers(0, 256, (33, 45), dtype=np.uint8)
    images = [str(tmp_path / 'a.png'), pil, tensor, array, gray]
    pyramids = extract_features(backbone, images, batch_size=2)

    expected_pixels = [torch.from_numpy(array).permute(2, 0, 1).float(),
                       torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float(),
                       tensor * 255, torch.from_numpy(array).permute(2, 0, 1).float(),
                       torch.from_numpy(np.repeat(gray[:, :, None], 3, 2)).permute(2, 0, 1).float()]
    for pyramid, pixels in zip(pyramids, expected_pixels):
        expected = direct(backbone, pixels)
        assert sorted(pyramid) == [4, 8, 16, 32]
        for stride in expected:
            assert pyramid[stride].shape == expected[stride].shape
            assert_close(pyramid[stride], expected[stride])


def test_options_mean_std_dtype_and_out_indices():
    model = create_backbone('swin-t', out_indices=(1, 3))
    image = torch.rand(3, 40, 60)
    pyramid = extract_features(model, image, mean=(0, 0, 0), std=(255, 255, 255))[0]
    assert sorted(pyramid) == [8, 32]
    with torch.no_grad():
        expected = model(image.unsqueeze(0))
    assert_close(pyramid[8], expected[0])
    low_precision = extract_features(model, image, mean=(0, 0, 0), std=(255, 255, 255), dtype=torch.bfloat16)[0]
    assert low_precision[8].dtype == torch.float32
    assert (low_precision[8] - expected[0]).abs().max() < 0.5  # bf16 keeps about 3 significant digits


@pytest.mark.parametrize('image, error, message', [
    (np.zeros((10, 10, 4), np.uint8), ValueError, r'\(H, W, 3\)'),
    (torch.zeros(10, 10, 3), ValueError, r'\(3, H, W\)'),
    (torch.zeros(3, 10, 10, dtype=torch.int32), TypeError, 'uint8'),
    (torch.zeros(3, 0, 10), ValueError, 'empty'),
    (12, TypeError, 'cannot read an image from int'),
])
def test_bad_images_are_named(image, error, message):
    with pytest.raises(error, match=message):
        load_image(image)


def test_principal_components_picture():
    feature = torch.zeros(1, 8, 6, 5)
    feature[0, 0, :3] = 5.0  # two regions along the first principal axis
    rgb = principal_components_rgb(feature)
    assert rgb.shape == (6, 5, 3) and rgb.dtype == np.uint8
    assert len({tuple(rgb[0, 0]), tuple(rgb[5, 0])}) == 2
    assert (principal_components_rgb(torch.zeros(4, 3, 3)) == 0).all()


def test_extract_features_tool_is_resumable(tmp_path):
    images = tmp_path / 'images'
    (images / 'sub').mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, size in [('a.png', (40, 50)), ('sub/b.jpg', (33, 47)), ('c.png', (40, 50))]:
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(images / name)
    (images / 'notes.txt').write_text('not an image')
    out = tmp_path / 'features'
    command = [sys.executable, os.path.join(REPO, 'tools', 'extract_features.py'), str(images), str(out),
               '--backbone', 'swin-t', '--batch-size', '2']
    first = subprocess.run(command, capture_output=True, text=True, check=True)
    assert '3 images, 0 already done, 3 to extract' in first.stdout
    saved = np.load(out / 'sub' / 'b.jpg.npz')
    assert {k: saved[k].shape for k in saved} == {'stride4': (96, 9, 12), 'stride8': (192, 5, 6),
                                                  'stride16': (384, 3, 3), 'stride32': (768, 2, 2)}
    (out / 'c.png.npz').unlink()
    second = subprocess.run(command + ['--format', 'npz'], capture_output=True, text=True, check=True)
    assert '3 images, 2 already done, 1 to extract' in second.stdout
    assert sorted(p.name for p in out.rglob('*') if p.is_file()) == ['a.png.npz', 'b.jpg.npz', 'c.png.npz']


def test_visualize_tool_writes_a_picture(tmp_path):
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / 'x.png')
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'visualize_features.py'),
                             str(tmp_path / 'x.png'), '--out', str(tmp_path / 'pictures')],
                            capture_output=True, text=True, check=True)
    picture = Image.open(tmp_path / 'pictures' / 'x_pyramid.png')
    assert str(tmp_path / 'pictures' / 'x_pyramid.png') in result.stdout
    assert picture.size[0] > 4 * picture.size[1]  # the input and four levels side by side
