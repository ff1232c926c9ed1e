"""The OpenMMLab model index of the package's configs: ``model-index.yml`` importing one ``metafile.yml`` per config
folder, in the format of mmdet's and mmseg's own (what ``mim search swin_backbones`` reads; a wheel carries them
under ``swin_backbones/.mim/`` with the configs).

The metafiles are the one record of what was published for each config: results, parameters, FLOPs, schedule,
the authors' weights, with their sources; the model zoo tables of the documentation are generated from them
(:mod:`swin_backbones.model_zoo`). Two fields of each model's ``Metadata`` are this package's own numbers,
``Parameters`` and ``FLOPs``, :func:`swin_backbones.count_flops` of the config at ``Input Size (HxW)``:
:func:`update_counts` rewrites them in place (``python tools/model_index.py``). Where the authors counted
their published FLOPs for another grouping of the attention than their config file's, ``Published FLOPs Counted
With`` holds the ``--cfg-options`` that give it (:func:`published_flops_options`).
"""
import argparse
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Tuple

import yaml
from mmengine.config import DictAction

from .flops import Complexity, count_flops
from .paths import resource_dir

__all__ = ['model_index_path', 'load_model_index', 'input_size', 'published_flops_options', 'count_model',
           'update_counts']

COUNTED_FIELDS = ('Parameters', 'FLOPs')


def model_index_path() -> str:
    """``model-index.yml`` of the installed package (``.mim/``) or of the source checkout, next to ``configs/``."""
    return osp.join(osp.dirname(resource_dir('configs')), 'model-index.yml')


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


def published_flops_options(model: dict) -> dict:
    """The config overrides of ``Published FLOPs Counted With`` (``key=value ...`` as ``--cfg-options`` takes
    them), or an empty dict."""
    text = model['Metadata'].get('Published FLOPs Counted With')
    if not text:
        return {}
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *text.split()]).cfg_options


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
