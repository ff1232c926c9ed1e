"""The OpenMMLab model index of the package's configs: ``model-index.yml`` importing one ``metafile.yml`` per config
folder, in the format of mmdet's and mmseg's own (what ``mim search swin_backbones`` reads; a wheel carries them
under ``swin_backbones/.mim/`` with the configs).

The metafiles are the one record of what was published for each config: results, parameters, FLOPs, schedule,
the authors' weights, with their sources. Two fields of each model's ``Metadata`` are this package's own numbers,
``Parameters`` and ``FLOPs``, :func:`swin_backbones.count_flops` of the config at ``Input Size (HxW)``:
:func:`update_counts` rewrites them in place, and :func:`zoo_table` writes the README's model zoo table from the
metafiles (``python tools/model_index.py --update`` / ``--table``).
"""
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Tuple

import yaml

from .flops import Complexity, count_flops
from .paths import _resource_dir

__all__ = ['model_index_path', 'load_model_index', 'input_size', 'count_model', 'update_counts', 'zoo_table']

COUNTED_FIELDS = ('Parameters', 'FLOPs')


def model_index_path() -> str:
    """``model-index.yml`` of the installed package (``.mim/``) or of the source checkout, next to ``configs/``."""
    return osp.join(osp.dirname(_resource_dir('configs')), 'model-index.yml')


def load_model_index(path: Optional[str] = None) -> Dict[str, list]:
    """``{'Collections': [...], 'Models': [...]}`` of every metafile the index imports, in their order; each
    model dict gets ``_metafile``, the absolute path of its metafile."""
    path = path or model_index_path()
    root = osp.dirname(path)
    with open(path) as f:
        index = yaml.safe_load(f)
    merged = {'Collections': [], 'Models': []}
    for relative in index['Import']:
        metafile = osp.join(root, relative)
        with open(metafile) as f:
            content = yaml.safe_load(f)
        merged['Collections'].extend(content.get('Collections', []))
        merged['Models'].extend(dict(model, _metafile=metafile) for model in content.get('Models', []))
    return merged


def input_size(model: dict) -> Tuple[int, int]:
    """(height, width) of a model entry's ``Input Size (HxW)``, written e.g. ``1280x800``."""
    height, width = str(model['Metadata']['Input Size (HxW)']).split('x')
    return int(height), int(width)


def count_model(model: dict, root: Optional[str] = None, cfg_options: Optional[dict] = None) -> Complexity:
    """:func:`count_flops` of a model entry's config (under ``root``, the index's folder) at its input size."""
    root = root or osp.dirname(model_index_path())
    return count_flops(osp.join(root, model['Config']), shape=input_size(model), cfg_options=cfg_options)


def update_counts(path: Optional[str] = None, names: Optional[List[str]] = None,
                  log: Callable[[str], None] = print) -> Dict[str, Complexity]:
    """Counts every model (or those named) and rewrites its ``Parameters`` and ``FLOPs`` lines in its metafile,
    leaving every other line as it is."""
    path = path or model_index_path()
    models = load_model_index(path)['Models']
    unknown = set(names or ()) - {model['Name'] for model in models}
    if unknown:
        raise ValueError(f'no model named {", ".join(sorted(unknown))} in {path}')
    counts = {}
    for model in models:
        if names and model['Name'] not in names:
            continue
        counts[model['Name']] = count_model(model, osp.dirname(path))
        log(f"{model['Name']}: {counts[model['Name']].summary()}")
    for metafile in sorted({model['_metafile'] for model in models}):
        with open(metafile) as f:
            text = f.read()
        updated = _rewrite_counts(text, counts, metafile)
        if updated != text:
            with open(metafile, 'w') as f:
                f.write(updated)
    return counts


def _rewrite_counts(text: str, counts: Dict[str, Complexity], metafile: str) -> str:
    lines = text.splitlines(keepends=True)
    current, seen = None, {}
    for i, line in enumerate(lines):
        name = re.match(r'\s*- Name: (\S+)\s*$', line)
        if name:
            current = name.group(1) if name.group(1) in counts else None
            continue
        field = re.match(r'(\s+)(Parameters|FLOPs): \S+(\s*)$', line)
        if current and field:
            indent, key, end = field.groups()
            value = counts[current].params if key == 'Parameters' else counts[current].flops
            lines[i] = f'{indent}{key}: {value}{end}'
            seen.setdefault(current, set()).add(key)
    for name in _names_in(text) & set(counts):
        missing = set(COUNTED_FIELDS) - seen.get(name, set())
        if missing:
            raise ValueError(f'{metafile}: model {name} has no {" or ".join(sorted(missing))} line in its Metadata '
                             '(write them with any value; the update fills them in)')
    return ''.join(lines)


def _names_in(text: str) -> set:
    return set(re.findall(r'^\s*- Name: (\S+)\s*$', text, flags=re.MULTILINE))


# --------------------------------------------------------------------------------------- README table
_METRIC_TEXT = {'box AP': 'box', 'mask AP': 'mask', 'mIoU': 'mIoU', 'mIoU(ms+flip)': 'mIoU ms+flip'}


def _results_text(model: dict) -> str:
    metrics = {key: value for result in model.get('Results') or () for key, value in result['Metrics'].items()}
    if not metrics:
        return 'none published'
    text = ' / '.join(f'{value} {_METRIC_TEXT.get(key, key)}' for key, value in metrics.items())
    source = model.get('README')
    return f'{text} ([source]({source}))' if source else text


def _published_and_counted(published, counted: float, digits: int) -> str:
    counted_text = f'{counted:.{digits}f}'
    return f'{published} / {counted_text}' if published is not None else f'— / {counted_text}'


def zoo_table(path: Optional[str] = None) -> str:
    """The README's model zoo table (markdown) from the metafiles: every model with its published results and
    their source, parameters (M) and FLOPs (G) as published and as counted, and the authors' weights."""
    models = load_model_index(path)['Models']
    rows = ["| config (`configs/`) | published results | params (M): published / built | "
            "FLOPs (G): published / counted | authors' weights |",
            '|---|---|---|---|---|']
    for model in models:
        metadata = model['Metadata']
        weights = f"[download]({model['Weights']})" if model.get('Weights') else '—'
        config = osp.relpath(model['Config'], 'configs')
        params = _published_and_counted(metadata.get('Published Parameters (M)'), metadata['Parameters'] / 1e6, 3)
        flops = _published_and_counted(metadata.get('Published FLOPs (G)'), metadata['FLOPs'] / 1e9, 1)
        rows.append(f'| `{config}` | {_results_text(model)} | {params} | {flops} | {weights} |')
    return '\n'.join(rows) + '\n'
