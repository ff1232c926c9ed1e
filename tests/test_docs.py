"""The documentation: the README is a front page that renders on PyPI and links into docs/, every generated table
is what its source gives (python tools/model_index.py --write-tables), and the site builds in strict mode."""
import glob
import importlib.util
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from swin_backbones.model_zoo import README_BLOCK, generated_files, stale_files, write_tables

from .helpers import REPO

README = osp.join(REPO, 'README.md')


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_generated_tables_are_up_to_date():
    assert stale_files(REPO) == [], 'a generated table differs from its source: python tools/model_index.py ' \
                                    '--write-tables (never edit a generated table by hand)'


def _copy_sources(root: str) -> None:
    """What the generator reads and writes, in a folder of its own."""
    for relative in ['README.md', 'model-index.yml'] + [osp.relpath(p, REPO) for p in glob.glob(
            osp.join(REPO, 'configs', '*', 'metafile.yml'))] + [osp.relpath(p, REPO) for p in glob.glob(
            osp.join(REPO, 'docs', 'model_zoo', '*.md'))]:
        os.makedirs(osp.join(root, osp.dirname(relative)), exist_ok=True)
        shutil.copy(osp.join(REPO, relative), osp.join(root, relative))


def test_a_hand_edit_or_a_metafile_change_makes_the_tables_stale(tmp_path):
    root = str(tmp_path)
    _copy_sources(root)
    assert stale_files(root) == []
    page = osp.join(root, 'docs', 'model_zoo', 'swin.md')
    with open(page, 'a') as f:
        f.write('| a row written by hand |\n')
    metafile = osp.join(root, 'configs', 'crossformer', 'metafile.yml')
    text = _read(metafile)
    with open(metafile, 'w') as f:
        f.write(text.replace('box AP: 45.4', 'box AP: 45.5', 1))
    orphan = osp.join(root, 'docs', 'model_zoo', 'retired.md')
    with open(orphan, 'w') as f:
        f.write('# a page nothing generates\n')
    zoo = osp.join(root, 'docs', 'model_zoo')
    assert sorted(stale_files(root)) == sorted([page, osp.join(zoo, 'crossformer.md'), orphan])
    assert '| 45.5 |' in generated_files(root)[osp.join(zoo, 'crossformer.md')]
    assert sorted(write_tables(root)) == sorted([page, osp.join(zoo, 'crossformer.md'), orphan])
    assert stale_files(root) == [] and not osp.exists(orphan)


def test_the_readme_block_is_required(tmp_path):
    root = str(tmp_path)
    _copy_sources(root)
    readme = osp.join(root, 'README.md')
    with open(readme, 'w') as f:
        f.write(_read(README).replace(README_BLOCK[1], ''))
    with pytest.raises(ValueError, match='exactly one generated block'):
        generated_files(root)


def test_the_readme_is_a_front_page():
    text = _read(README)
    assert len(text.splitlines()) <= 250
    for command in ('bash tools/run.sh test ', 'bash tools/run.sh test-all ', 'bash tools/run.sh demo '):
        assert command in text
    begin, end = README_BLOCK
    assert '| `swin-t` | `swin_backbones.SwinTransformer` |' in text.split(begin)[1].split(end)[0]


def test_the_readme_renders_on_pypi():
    """What PyPI (and ``twine check``) does with a text/markdown long description."""
    from readme_renderer.markdown import render
    rendered = render(_read(README), variant='GFM')
    assert rendered is not None and '<table>' in rendered and 'create_backbone' in rendered


def _github_slug(heading: str) -> str:
    text = re.sub(r'[`*]', '', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', text).replace(' ', '-')


def _anchors(path: str) -> set:
    text = re.sub(r'^```.*?^```', '', _read(path), flags=re.MULTILINE | re.DOTALL)
    return {_github_slug(line.lstrip('#')) for line in text.splitlines() if re.match(r'#{1,6} ', line)}


def test_the_readme_links_resolve():
    """Relative links (docs/...md, with or without #heading) as GitHub resolves them."""
    links = re.findall(r'\]\(([^)\s]+)\)', _read(README))
    relative = [link for link in links if not re.match(r'[a-z]+:', link)]
    assert any(link.startswith('docs/') for link in relative)
    for link in relative:
        path, _, anchor = link.partition('#')
        target = osp.join(REPO, path) if path else README
        assert osp.isfile(target), link
        assert not anchor or anchor in _anchors(target), link


@pytest.mark.skipif(importlib.util.find_spec('sphinx') is None and not os.environ.get('CI'),
                    reason='the docs extra is not installed: bash tools/run.sh docs (CI installs it)')
def test_the_site_builds_in_strict_mode(tmp_path):
    """``bash tools/run.sh docs``: any warning (a broken link or reference, a docstring Sphinx cannot read) fails."""
    result = subprocess.run([sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-n', '-q', '-b', 'html',
                             osp.join(REPO, 'docs'), str(tmp_path / 'html')], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:]
    assert 'WARNING' not in result.stdout and 'ERROR' not in result.stdout, result.stdout[-5000:]
    for page in ['index', 'get_started', 'api', 'model_zoo/index', 'model_zoo/swin', 'measurements/index']:
        assert osp.isfile(tmp_path / 'html' / f'{page}.html'), page
    api = _read(str(tmp_path / 'html' / 'api.html'))
    import swin_backbones
    assert all(f'swin_backbones.{name}' in api for name in swin_backbones.__all__)
