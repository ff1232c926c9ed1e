"""The command lines' contract: expected errors are one ``error:`` line and exit status 2; extract keeps every
input apart and skips unreadable images; convert does not overwrite without --force."""
import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from swin_backbones.cli import ERROR_STATUS, command_line
from swin_backbones.cli import convert as convert_cli
from swin_backbones.cli import extract as extract_cli
from swin_backbones.cli import toy_data as toy_data_cli
from swin_backbones.cli import visualize as visualize_cli

from .helpers import CONSOLE_SCRIPTS


def one_error_line(capsys, *fragments):
    """stderr ends with one ``error:`` line (after a progress bar, maybe) and holds no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and 'Traceback' not in err, err
    assert all(fragment in errors[0] for fragment in fragments), err


def test_every_command_line_of_the_package_shares_the_error_handling():
    commands = {script: target for script, target in CONSOLE_SCRIPTS.items()
                if target.startswith('swin_backbones.cli.')}
    assert len(commands) >= 5
    for target in commands.values():
        module, function = target.split(':')
        main = getattr(importlib.import_module(module), function)
        assert getattr(main, '__wrapped__', None) is not None and main.__name__ == 'main'
        assert main.__code__ is command_line(lambda argv: 0).__code__  # the shared wrapper, not a copy


@pytest.mark.parametrize('main, argv, fragments', [
    (visualize_cli.main, ['nope.jpg'], ['nope.jpg']),
    (convert_cli.main, ['nope.pth', 'out.pth'], ['checkpoint file not found: nope.pth']),
    (extract_cli.main, ['no_such_folder', 'features'], ['no_such_folder is not a folder']),
])
def test_expected_errors_are_one_line_and_status_2(main, argv, fragments, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == ERROR_STATUS
    one_error_line(capsys, *fragments)


def test_toy_data_into_a_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / 'file').write_text('')
    assert toy_data_cli.main(['--out', str(tmp_path / 'file' / 'data'), '--num-train', '1', '--num-val', '1',
                              '--size', '32']) == ERROR_STATUS
    one_error_line(capsys, 'Not a directory')


def write_images(folder):
    rng = np.random.default_rng(0)
    (folder / 'sub').mkdir(parents=True)
    for name, size in [('a.jpg', (40, 50)), ('a.png', (33, 47)), ('sub/a.png', (40, 50))]:
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / name)
    (folder / 'broken.jpg').write_bytes(b'not an image')
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(folder / 'cut.png')
    (folder / 'cut.png').write_bytes((folder / 'cut.png').read_bytes()[:200])
    (folder / 'notes.txt').write_text('not an image')


def test_extract_keeps_inputs_apart_and_skips_unreadable_images(tmp_path, capsys):
    images, out = tmp_path / 'images', tmp_path / 'features'
    write_images(images)
    argv = [str(images), str(out), '--backbone', 'crossformer-t', '--batch-size', '2']
    assert extract_cli.main(argv) == 0
    captured = capsys.readouterr()
    assert '5 images, 0 already done, 5 to extract' in captured.out
    assert 'extracted 3 images, skipped 2 that could not be read' in captured.out
    assert captured.err.count('warning: skipping') == 2 and 'broken.jpg' in captured.err and 'cut.png' in captured.err
    written = sorted(str(path.relative_to(out)) for path in out.rglob('*') if path.is_file())
    assert written == ['a.jpg.npz', 'a.png.npz', 'sub/a.png.npz']
    assert np.load(out / 'a.jpg.npz')['stride4'].shape[1:] == (10, 13)
    assert np.load(out / 'a.png.npz')['stride4'].shape[1:] == (9, 12)
    # A rerun does what is left: the unreadable ones, again.
    assert extract_cli.main(argv) == 0
    assert '5 images, 3 already done, 2 to extract' in capsys.readouterr().out
    assert extract_cli.main(argv + ['--strict']) == ERROR_STATUS
    one_error_line(capsys, 'cannot read', 'broken.jpg')


def test_convert_refuses_to_overwrite_without_force(tmp_path, capsys):
    from swin_backbones import SwinTransformer
    torch.save(SwinTransformer(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)).state_dict(),
               tmp_path / 'in.pth')
    (tmp_path / 'out.pth').write_bytes(b'keep me')
    assert convert_cli.main([str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth')]) == ERROR_STATUS
    one_error_line(capsys, 'out.pth exists; pass --force')
    assert (tmp_path / 'out.pth').read_bytes() == b'keep me'
    assert convert_cli.main([str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth'), '--force']) == 0
    assert 'SwinTransformer' in torch.load(tmp_path / 'out.pth', weights_only=True)['meta']['backbone']


def test_extract_refuses_a_batch_size_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        extract_cli.main([str(tmp_path), str(tmp_path / 'features'), '--batch-size', '0'])
    assert exited.value.code == 2
    assert '--batch-size: must be at least 1, got 0' in capsys.readouterr().err
