"""The package as people install it: console scripts, configs found by name, and the built wheel installed
(not editable) into a fresh virtual environment, used from outside the repository."""
import glob
import importlib
import importlib.util
import os
import os.path as osp
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from typing import Dict, List, NamedTuple

import pytest
import yaml

import swin_backbones

from .helpers import CONSOLE_SCRIPTS, MIM_TOOLS, REPO, check, short_run_options, train_iterations


def test_console_scripts_are_named_alike():
    assert set(CONSOLE_SCRIPTS) == {'swin-backbones-convert', 'swin-backbones-extract', 'swin-backbones-visualize',
                                    'swin-backbones-export-onnx', 'swin-backbones-make-toy-data',
                                    'swin-backbones-flops', 'swin-backbones-deploy'}


@pytest.mark.parametrize('script', sorted(CONSOLE_SCRIPTS))
def test_console_scripts_answer_help(script, capsys):
    module, function = CONSOLE_SCRIPTS[script].split(':')
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exit_status:
        main(['--help'])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out.startswith(f'usage: {script} ')


def test_configs_are_found_by_name():
    path = swin_backbones.config_path('mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco')
    assert path == osp.join(REPO, 'configs', 'swin', 'mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py')
    assert swin_backbones.config_path('swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py') == path
    assert swin_backbones.config_path('toy/upernet_swin-toy_toy-ade') == osp.join(REPO, 'configs', 'toy',
                                                                                 'upernet_swin-toy_toy-ade.py')
    assert swin_backbones.config_path('_base_/datasets/toy_ade.py').endswith('configs/_base_/datasets/toy_ade.py')
    configs = swin_backbones.list_configs()
    in_repository = sorted(osp.relpath(path, osp.join(REPO, 'configs'))
                           for path in glob.glob(osp.join(REPO, 'configs', '*', '*.py')) if '_base_' not in path)
    assert sorted(configs) == in_repository and len(configs) == len(set(configs)) > 20
    assert not any(name.startswith('_base_') for name in configs)
    with pytest.raises(FileNotFoundError, match="no config 'mask-rcnn_swin-t'.*close matches: .*mask-rcnn_swin-t-p4"):
        swin_backbones.config_path('mask-rcnn_swin-t')
    with pytest.raises(FileNotFoundError, match='no config'):
        swin_backbones.config_path('swin/upernet_swin-toy_toy-ade')
    assert swin_backbones.tool_path('train.py') == osp.join(REPO, 'tools', 'train.py')
    with pytest.raises(FileNotFoundError, match="no tool 'missing.py'"):
        swin_backbones.tool_path('missing.py')


def _run(command, cwd, env=None, timeout=900):
    """A command with PYTHONPATH cleared (nothing from the repository leaks in); stdout and stderr merged."""
    full_env = {key: value for key, value in os.environ.items() if key != 'PYTHONPATH'}
    full_env.update(OMP_WAIT_POLICY='PASSIVE', PYTHONWARNINGS='ignore', **(env or {}))
    return subprocess.run([str(part) for part in command], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


class InstalledWheel(NamedTuple):
    names: List[str]  # the wheel's files
    venv: Path
    python: Path
    site: str  # the fresh environment's site-packages, where the wheel went
    outer: Dict[str, None]  # this environment's site-packages, seen from the fresh one after its own


@pytest.fixture(scope='module')
def installed_wheel(tmp_path_factory) -> InstalledWheel:
    """The sdist, then the wheel built from it (so the sdist must carry configs/ and tools/), checked with twine
    and installed (not editable) into a fresh virtual environment; no network."""
    tmp_path = tmp_path_factory.mktemp('wheel')
    dist = tmp_path / 'dist'
    check(_run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', dist, REPO], cwd=tmp_path))
    wheel, = dist.glob('swin_backbones-*.whl')
    check(_run([sys.executable, '-m', 'twine', 'check', '--strict', *sorted(dist.iterdir())], cwd=tmp_path))
    names = zipfile.ZipFile(wheel).namelist()

    # A fresh environment that sees this one's packages (torch, mmcv, mmdet, ...) through a path entry after
    # its own: this environment's .pth files, the editable install of swin_backbones among them, are not run.
    venv = tmp_path / 'venv'
    check(_run([sys.executable, '-m', 'venv', '--without-pip', venv], cwd=tmp_path))
    python = venv / 'bin' / 'python'
    site = check(_run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], tmp_path)).strip()
    outer = dict.fromkeys(sysconfig.get_paths()[key] for key in ('purelib', 'platlib'))
    with open(osp.join(site, 'outer_environment.pth'), 'w') as f:
        f.write('\n'.join(outer) + '\n')
    check(_run([sys.executable, '-m', 'pip', '--python', python, 'install', '--no-deps', '--no-index',
                '--ignore-installed', wheel], cwd=tmp_path))
    assert not osp.exists(osp.join(site, 'torch')), 'a second torch'
    return InstalledWheel(names, venv, python, site, outer)


@pytest.mark.slow
def test_installed_wheel_works_outside_the_repository(installed_wheel, tmp_path):
    names, venv, python, site, outer = installed_wheel
    repo_configs = [osp.relpath(osp.join(folder, name), REPO) for folder, _, files in os.walk(osp.join(REPO, 'configs'))
                    for name in files if name.endswith('.py') or name == 'metafile.yml']
    assert sorted(n.split('.mim/')[1] for n in names if '/.mim/configs/' in n) == sorted(repo_configs)
    assert 'swin_backbones/.mim/model-index.yml' in names
    tools = {n.rsplit('/', 1)[1] for n in names if '/.mim/tools/' in n}
    assert {'train.py', 'test.py', 'dist_train.sh', 'dist_test.sh', 'export_onnx.py', 'demo.py'} <= tools
    # Tools of a checkout only: setting it up, the GPU check (benchmarks/ and tests/), rewriting its metafiles.
    assert not tools & {'install.sh', 'run.sh', 'gpu_check.sh', 'gpu_check.py', 'model_index.py'}

    outside = tmp_path / 'elsewhere'
    outside.mkdir()
    probe = ('import swin_backbones, torch; print(swin_backbones.__file__); print(torch.__file__); '
             'print(swin_backbones.config_path("toy/mask-rcnn_swin-toy_fpn_toy-coco"))')
    package, torch_file, config = check(_run([python, '-c', probe], cwd=outside)).strip().splitlines()[-3:]
    assert package == osp.join(site, 'swin_backbones', '__init__.py')
    assert torch_file.startswith(tuple(outer))
    assert config == osp.join(site, 'swin_backbones', '.mim', 'configs', 'toy', 'mask-rcnn_swin-toy_fpn_toy-coco.py')

    for script in CONSOLE_SCRIPTS:
        assert (venv / 'bin' / script).is_file(), script
    log = check(_run([venv / 'bin' / 'swin-backbones-make-toy-data', '--out', 'toy', '--num-train', '4',
                      '--num-val', '2'], cwd=outside))
    assert 'COCO-format instance set: toy/coco (train 4 images' in log
    assert 'usage: swin-backbones-convert' in check(_run([venv / 'bin' / 'swin-backbones-convert', '--help'], outside))

    log = check(_run([python, osp.join(MIM_TOOLS['mmdet'], 'train.py'), config, '--work-dir', 'work',
                      '--cfg-options', *short_run_options(iters=2, val=False)], cwd=outside,
                     env=dict(TOY_DATA=str(outside / 'toy'))))
    assert train_iterations(log) == [1, 2]
    assert (outside / 'work' / 'iter_2.pth').is_file()


@pytest.mark.slow
def test_mim_searches_and_trains_the_installed_package(installed_wheel, tmp_path):
    """openmim (from the package index: the test extra installs it) lists every model of the wheel's model index
    and trains a toy config found by its name in the installed package, with the package's own train.py."""
    assert importlib.util.find_spec('mim'), 'openmim is not installed: tools/install.sh installs it (the test extra)'
    python, site = installed_wheel.python, installed_wheel.site
    with open(osp.join(REPO, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    names = []
    for metafile in metafiles:
        with open(osp.join(REPO, metafile)) as f:
            names.extend(model['Name'] for model in yaml.safe_load(f)['Models'])
    listed = check(_run([python, '-m', 'mim', 'search', 'swin_backbones'], cwd=tmp_path))
    assert sorted(re.findall(r'^config id: (\S+)$', listed, flags=re.MULTILINE)) == sorted(names)
    assert 'in_collection' not in listed and 'flops' in listed and 'weight' in listed

    check(_run([python, '-m', 'swin_backbones.cli.toy_data', '--out', 'toy', '--num-train', '4', '--num-val', '2'],
               cwd=tmp_path))
    log = check(_run([python, '-m', 'mim', 'train', 'swin_backbones', 'upernet_swin-toy_toy-ade.py', '--work-dir',
                      'work', '--cfg-options', *short_run_options(iters=2, val=False)], cwd=tmp_path,
                     env=dict(TOY_DATA=str(tmp_path / 'toy'))))
    installed_config = osp.join(site, 'swin_backbones', '.mim', 'configs', 'toy', 'upernet_swin-toy_toy-ade.py')
    assert f'{osp.join(site, "swin_backbones", ".mim", "tools", "train.py")} {installed_config}' in log
    assert train_iterations(log) == [1, 2]
    assert (tmp_path / 'work' / 'iter_2.pth').is_file()
