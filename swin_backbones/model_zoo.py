"""The model zoo tables of the documentation, generated from their one source: the backbone table of ``README.md``
and ``docs/model_zoo/`` from the registered backbones (built on PyTorch's meta device to count their parameters),
the config tables from the model index (``configs/*/metafile.yml``, :mod:`swin_backbones.model_index`).

:func:`write_tables` rewrites them in a source checkout (``python tools/model_index.py --write-tables``);
:func:`generated_files` gives what they must hold, which ``tests/test_docs.py`` compares with the files. The README
keeps its own text around the generated block, between the markers of :data:`README_BLOCK`; the pages of
``docs/model_zoo/`` are generated whole.

Per model entry, the tables show what the metafile records: ``Metadata`` ``Backbone`` (a :func:`list_backbones` name),
``Training Data``, ``Architecture`` (family, method, neck), ``Epochs`` or ``Iterations``, ``Published Parameters
(M)`` and ``Published FLOPs (G)`` next to this package's ``Parameters`` and ``FLOPs``, ``Published FLOPs Counted
With``; the ``Results``' metrics, ``README`` (where the published numbers are printed), ``Code`` (the authors'
config file whose recipe the config follows), ``Weights``, and ``Notes`` (free text about the entry).
"""
import functools
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple
from urllib.parse import urlparse

import torch

from .model_index import input_size, load_model_index
from .registry import registered_backbones

__all__ = ['README_BLOCK', 'backbone_table', 'zoo_pages', 'generated_files', 'stale_files', 'write_tables']

WRITE_COMMAND = 'python tools/model_index.py --write-tables'
# The README's generated block: everything between these two lines (the lines themselves stay).
README_BLOCK = (f'<!-- generated from the registered backbones by `{WRITE_COMMAND}`: do not edit by hand -->',
                '<!-- end of generated block -->')
ZOO_DIR = osp.join('docs', 'model_zoo')
FLOPS_GUIDE = '../user_guides/flops.md'
CONFIGS_GUIDE = '../user_guides/configs.md'


# ------------------------------------------------------------------------------------------- backbones
def backbone_table() -> str:
    """The table of every :func:`create_backbone` name: its class and arch, structure, parameters and outputs."""
    return _backbone_table(tuple(registered_backbones()))


@functools.lru_cache(maxsize=None)
def _backbone_table(backbone_types: Tuple[type, ...]) -> str:
    lines = ['| name (`create_backbone`) | config `type` | `arch` | `embed_dims` | `depths` | `num_heads` | '
             'parameters (M) | output channels |',
             '|---|---|---|---:|---|---|---:|---|']
    for backbone_type in backbone_types:
        for name, arch in backbone_type.presets.items():
            with torch.device('meta'):  # every parameter as built, without memory or initialisation
                backbone = backbone_type(arch=arch)
            channels = ', '.join(str(backbone.embed_dims * 2 ** index) for index in backbone.out_indices)
            params = sum(p.numel() for p in backbone.parameters())
            lines.append(f'| `{name}` | `swin_backbones.{backbone_type.__name__}` | `{arch}` | {backbone.embed_dims} | '
                         f'{_numbers(backbone.depths)} | {_numbers(backbone.num_heads)} | {params / 1e6:.3f} | '
                         f'{channels} |')
    return '\n'.join(lines) + '\n'


def _numbers(values) -> str:
    return ', '.join(str(value) for value in values)


# ------------------------------------------------------------------------------------------- configs
def _schedule(metadata: dict) -> str:
    if 'Epochs' in metadata:
        epochs = metadata['Epochs']
        return f'{epochs // 12}x ({epochs} epochs)' if epochs % 12 == 0 else f'{epochs} epochs'
    iterations = metadata['Iterations']
    return f'{iterations // 1000}k iterations' if iterations % 1000 == 0 else f'{iterations} iterations'


def _task_title(metadata: dict) -> str:
    """'COCO, Mask R-CNN + FPN' from the training data and the architecture after the backbone family."""
    method, *rest = metadata['Architecture'][1:]
    return f"{metadata['Training Data']}, {method}" + ''.join(f' + {part}' for part in rest)


def _source(url: str, text: Optional[str] = None) -> str:
    """A link named after the repository (and folder) of a GitHub URL: 'CrossFormer detection', ..."""
    if text is None:
        parts = urlparse(url).path.strip('/').split('/')  # owner, repository, 'blob', branch, path...
        folder = '/'.join(parts[4:-1]) if len(parts) > 5 and parts[2] == 'blob' else ''
        text = f'{parts[1]} {folder}'.strip() if len(parts) > 1 else url
    return f'[{text}]({url})'


def _number(value) -> str:
    return '—' if value is None else str(value)


def _table(models: List[dict], notes: List[str]) -> List[str]:
    metrics = []
    for model in models:
        for result in model.get('Results', []):
            metrics += [metric for metric in result['Metrics'] if metric not in metrics]
    header = (['backbone', 'schedule', 'config'] + [f'published {metric}' for metric in metrics] +
              ['params (M) published / counted', 'FLOPs (G) published / counted', 'published in', 'recipe',
               "authors' weights"])
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * 3 + '---:|' * (len(metrics) + 2) + '---|' * 3]
    for model in models:
        metadata = model['Metadata']
        values = {metric: value for result in model.get('Results', []) for metric, value in result['Metrics'].items()}
        marks = []
        for note in _notes_of(model):
            notes.append(f"`{model['Name']}`: {note}")
            marks.append(f'[{len(notes)}]')
        code = model.get('Code', {}).get('URL')
        cells = [' '.join([f"`{metadata['Backbone']}`"] + marks), _schedule(metadata),
                 f"`{osp.basename(model['Config'])}`",
                 *(_number(values.get(metric)) for metric in metrics),
                 f"{_number(metadata.get('Published Parameters (M)'))} / {metadata['Parameters'] / 1e6:.3f}",
                 f"{_number(metadata.get('Published FLOPs (G)'))} / {metadata['FLOPs'] / 1e9:.1f}",
                 _source(model['README']) if model.get('README') else '—',
                 _source(code, 'recipe') if code else '—',
                 _source(model['Weights'], 'download') if model.get('Weights') else '—']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def _notes_of(model: dict) -> List[str]:
    notes = []
    counted_with = model['Metadata'].get('Published FLOPs Counted With')
    if counted_with:
        notes.append(f'The published FLOPs count another attention grouping than the config\'s: '
                     f'`--cfg-options {counted_with}` gives them (see [FLOPs and parameters]({FLOPS_GUIDE})).')
    if model.get('Notes'):
        notes.append(' '.join(model['Notes'].split()))
    return notes


def _collection_lines(collection: dict) -> List[str]:
    paper = collection.get('Paper', {})
    code = collection.get('Code', {}).get('URL')
    line = f"* {collection['Name']}: [{paper.get('Title', 'paper')}]({paper['URL']})" if paper.get('URL') else \
        f"* {collection['Name']}"
    return [line + (f', code: <{code}>' if code else '')]


def _family_page(metafile: str, collections: List[dict], models: List[dict]) -> str:
    title = ' and '.join(collection['Name'] for collection in collections)
    folder = osp.basename(osp.dirname(metafile))
    lines = [f'<!-- generated from configs/{folder}/metafile.yml by `{WRITE_COMMAND}`: do not edit by hand -->',
             f'# {title}', '']
    for collection in collections:
        lines += _collection_lines(collection)
    lines += ['', f'The configs under `configs/{folder}/`, as the model index records them. "Published" numbers are '
              'the ones printed in the source each row links to; "counted" parameters are those of the whole model '
              'the config builds, counted FLOPs are multiply-accumulates at the input size given with each table, '
              f'counted as the papers did (see [FLOPs and parameters]({FLOPS_GUIDE})). "recipe" links the authors\' '
              'config file whose training recipe the config reproduces; how the configs are built and what they '
              f'keep of the recipes: [Configs]({CONFIGS_GUIDE}).']
    groups: Dict[str, List[dict]] = {}
    for model in models:
        groups.setdefault(_task_title(model['Metadata']), []).append(model)
    for title, group in groups.items():
        height, width = input_size(group[0])
        sizes = {input_size(model) for model in group}
        size = f'{height}x{width} (height x width)' if len(sizes) == 1 else 'the input size of each metafile entry'
        notes: List[str] = []
        lines += ['', f'## {title}', '', f'Batch size 16; FLOPs at {size}.', ''] + _table(group, notes)
        if notes:
            lines += ['', 'Notes:', ''] + [f'{number}. {note}' for number, note in enumerate(notes, 1)]
    return '\n'.join(lines) + '\n'


def _index_page(pages: Dict[str, Tuple[List[dict], List[dict]]]) -> str:
    lines = [f'<!-- generated from the registered backbones and model-index.yml by `{WRITE_COMMAND}`: '
             'do not edit by hand -->', '# Model zoo', '', '```{toctree}', ':hidden:', '']
    lines += [osp.splitext(page)[0] for page in pages] + ['```', '', '## Backbones', '',
              'Every name `swin_backbones.create_backbone` takes, with the class and `arch` a config names. Parameters '
              'are those of the backbone as built (Swin and SwinV2 with their four output norms; CrossFormer has '
              'none).', '', backbone_table().rstrip('\n'), '', '## Configs', '',
              'Detectors and segmentors under `configs/`, one page per folder:', '',
              '| page | configs | tasks |', '|---|---:|---|']
    for page, (collections, models) in pages.items():
        title = ' and '.join(collection['Name'] for collection in collections)
        tasks = list(dict.fromkeys(_task_title(model['Metadata']) for model in models))
        lines.append(f'| [{title}]({page}) | {len(models)} | {"; ".join(tasks)} |')
    return '\n'.join(lines) + '\n'


def zoo_pages(index_path: Optional[str] = None) -> Dict[str, str]:
    """``{file name: content}`` of ``docs/model_zoo/``: ``index.md`` and one page per metafile of the index."""
    index = load_model_index(index_path)
    pages: Dict[str, Tuple[List[dict], List[dict]]] = {}
    for model in index['Models']:
        page = f"{osp.basename(osp.dirname(model['_metafile']))}.md"
        pages.setdefault(page, ([], []))[1].append(model)
    for page, (collections, models) in pages.items():
        names = {model['In Collection'] for model in models}
        collections += [collection for collection in index['Collections'] if collection['Name'] in names]
    files = {'index.md': _index_page(pages)}
    for page, (collections, models) in pages.items():
        files[page] = _family_page(models[0]['_metafile'], collections, models)
    return files


def _replace_block(text: str, block: str, path: str) -> str:
    begin, end = README_BLOCK
    pattern = re.compile(rf'^{re.escape(begin)}\n.*?^{re.escape(end)}$', flags=re.MULTILINE | re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f'{path} must hold exactly one generated block: a line {begin!r}, the block, then a line '
                         f'{end!r}')
    return pattern.sub(lambda _: f'{begin}\n{block}{end}', text)


def generated_files(root: str) -> Dict[str, str]:
    """``{path: content}`` that every generated file of the source checkout at ``root`` must have: README.md (its
    text around the generated block as it is) and every page of ``docs/model_zoo/``."""
    readme = osp.join(root, 'README.md')
    with open(readme) as f:
        files = {readme: _replace_block(f.read(), backbone_table(), readme)}
    for name, content in zoo_pages(osp.join(root, 'model-index.yml')).items():
        files[osp.join(root, ZOO_DIR, name)] = content
    return files


def _current(path: str) -> Optional[str]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read()


def stale_files(root: str) -> List[str]:
    """The generated files of ``root`` whose content is not what :func:`generated_files` gives, and the pages
    of ``docs/model_zoo/`` that nothing generates."""
    expected = generated_files(root)
    stale = [path for path, content in expected.items() if _current(path) != content]
    zoo = osp.join(root, ZOO_DIR)
    extra = [osp.join(zoo, name) for name in sorted(os.listdir(zoo)) if osp.join(zoo, name) not in expected] \
        if osp.isdir(zoo) else []
    return stale + extra


def write_tables(root: str) -> List[str]:
    """Rewrites the generated files of the source checkout at ``root`` (and removes pages of ``docs/model_zoo/``
    that nothing generates any more); returns the paths it changed."""
    expected = generated_files(root)
    changed = stale_files(root)
    for path in changed:
        if path in expected:
            os.makedirs(osp.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(expected[path])
        else:
            os.remove(path)
    return changed

