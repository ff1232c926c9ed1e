"""Loading weights into a backbone the same way on every path, in every supported layout, never partially.

Each backbone registers :func:`convert_on_load` as a ``load_state_dict`` pre-hook. torch's
``Module.load_state_dict`` and mmengine's ``load_state_dict`` (behind ``load_checkpoint``, hence the runner's
``load_from`` and ``resume``, mmdet's and mmseg's ``test.py``, ``DetInferencer``, ``MMSegInferencer``,
``init_detector`` and ``init_model``) both hand each module the keys under its prefix through
``_load_from_state_dict`` before its children take theirs from the same dict, and the hook runs first in
there. It reads the keys under the backbone's prefix (``backbone.``, ``model.backbone.``, ...) in whichever
layout they are (this package's, the authors', mmdet/mmseg/mmpretrain's, timm's), converts and adapts them
(window size, position embedding) and puts this package's keys in their place, for the children to load.
``init_cfg=dict(type='Pretrained', ...)`` takes the same path: :meth:`PyramidBackbone.load_pretrained` reads
the file and calls ``load_state_dict``. So every loader gives the same weights.

A load that would leave any of the backbone's weights unloaded raises :class:`CheckpointMismatchError`
naming the layout it saw and the missing, unexpected and mis-shaped keys, whatever ``strict`` the caller
passed (mmengine's loaders are not strict and would only log them); so does a state dict with no key at all
under the backbone's prefix (a backbone-only checkpoint given to ``load_from`` instead of
``init_cfg=Pretrained``, or a model that keeps its backbone under another name). The one exception is the
output norms ``norm{i}``: classification checkpoints do not have them, so they keep their current values,
and the log says so.

Deliberate partial loads (say, heads from a detector with another backbone) set the backbone's
``allow_partial_loading=True`` (a constructor argument, so ``model.backbone.allow_partial_loading=True`` in a
config, or the attribute of the same name in Python). The hook then still converts the layout it
recognises, logs a warning saying what does not fit, and leaves the rest to the loader, as for any module:
torch's ``strict`` decides, mmengine logs.
"""
import contextlib
import contextvars
import logging
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.logging import print_log

from .checkpoint import CheckpointError, CheckpointMismatchError, backbone_weights, listed_keys
from .registry import registered_backbones

__all__ = ['convert_on_load', 'fit_state_dict', 'describing_load']


class _LoadRecord:
    """What :meth:`PyramidBackbone.load_pretrained` tells the hook about the file, and the layout the hook saw."""

    def __init__(self, source: str, origin: str):
        self.source = source
        self.origin = origin
        self.layout: Optional[str] = None


_current_load: contextvars.ContextVar = contextvars.ContextVar('swin_backbones_current_load', default=None)


@contextlib.contextmanager
def describing_load(source: str, origin: str) -> Iterator[_LoadRecord]:
    """Within the block, the hook names the weights it loads ``source`` (``origin``), e.g. 'checkpoint x.pth'
    ('the backbone of a detector checkpoint'), and records the layout it found in the yielded record."""
    record = _LoadRecord(source, origin)
    token = _current_load.set(record)
    try:
        yield record
    finally:
        _current_load.reset(token)


def convert_on_load(backbone, state_dict, prefix: str, local_metadata, strict, missing_keys, unexpected_keys,
                    error_msgs) -> None:
    """``load_state_dict`` pre-hook of every backbone: replaces the keys under ``prefix`` in ``state_dict``
    (in place: the backbone's children read theirs from this dict afterwards) by this package's keys; see the
    module docstring."""
    record = _current_load.get()
    if record is not None:
        source, origin = record.source, record.origin
    else:
        source, origin = f'the state dict under {prefix!r}' if prefix else 'the state dict', None
    keys = [key for key in state_dict if key.startswith(prefix)]
    weights = {key[len(prefix):]: state_dict[key] for key in keys}
    if record is None and not prefix:  # the backbone's own load_state_dict, given a whole model's weights too
        weights, origin = backbone_weights(weights)
    fitted, layout = fit_state_dict(backbone, weights, source, origin, prefix)
    for key in keys:
        del state_dict[key]
    state_dict.update((prefix + key, value) for key, value in fitted.items())
    if record is not None:
        record.layout = layout


def fit_state_dict(backbone, weights: Dict[str, torch.Tensor], source: str, origin: Optional[str] = None,
                   prefix: str = '') -> Tuple[Dict[str, torch.Tensor], Optional[str]]:
    """``weights`` (the keys under the backbone's prefix, stripped) in this package's layout, fitted to
    ``backbone`` (window size, position embedding), and the name of the layout they were in.

    Raises :class:`CheckpointMismatchError` unless they cover every parameter and buffer with the right
    shapes (output norms excepted, which get the backbone's current values), or :class:`CheckpointError` for
    non-finite values. With ``backbone.allow_partial_loading``, what does not fit is logged and passed on.
    """
    target = type(backbone).__name__ + (f' at {prefix[:-1]!r}' if prefix else '')
    partial = backbone.allow_partial_loading
    if not weights:
        message = (f'{source} has no weights for {target}, so none of them would be loaded. A checkpoint of the '
                   "backbone alone (an ImageNet release, say) goes in model.backbone.init_cfg=dict(type='Pretrained', "
                   'checkpoint=...), not in load_from; to load only the other parts of a model on purpose, set the '
                   "backbone's allow_partial_loading=True")
        if not partial:
            raise CheckpointMismatchError(message)
        print_log(message, logger='current', level=logging.WARNING)
        return {}, None
    backbone.check_checkpoint(weights, source)
    converted, layout = backbone.convert_state_dict(weights)
    converted = backbone.adapt_state_dict(converted)
    found = f'{origin + ", " if origin else ""}{layout} layout'
    described = f'{source} ({found})'
    own = backbone.state_dict()
    may_be_missing = set(backbone.keys_not_in_pretraining())
    report = _mismatch_report(own, converted, may_be_missing)
    if report:
        if not partial:
            raise CheckpointMismatchError(_other_architecture(backbone, weights, source)
                                          + f'{described} does not fit {target}:\n' + report)
        print_log(f'{described} does not fit {target} (allow_partial_loading=True: what fits is loaded, the rest '
                  f'is left to the loader; mis-shaped tensors are dropped):\n{report}', logger='current',
                  level=logging.WARNING)
        converted = {key: value for key, value in converted.items()
                     if key not in own or value.shape == own[key].shape}
    non_finite = [key for key, value in converted.items()
                  if value.is_floating_point() and not torch.isfinite(value).all()]
    if non_finite:
        raise CheckpointError(f'{described} has non-finite values (NaN or inf) in {listed_keys(non_finite)}')
    loaded = sum(key in own for key in converted)
    left_as_they_are = [key for key in own if key in may_be_missing and key not in converted]
    converted.update((key, own[key]) for key in left_as_they_are)
    message = f'{target}: loaded {source} ({found}, {loaded} tensors)'
    if left_as_they_are:
        message += f'; not in the checkpoint, left at their current values: {", ".join(left_as_they_are)}'
    print_log(message, logger='current', level=logging.INFO)
    return converted, layout


def _mismatch_report(own: Dict[str, torch.Tensor], converted: Dict[str, torch.Tensor], may_be_missing) -> str:
    missing = [key for key in own if key not in converted and key not in may_be_missing]
    unexpected = [key for key in converted if key not in own]
    mismatched = [f'{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}'
                  for key, value in converted.items() if key in own and value.shape != own[key].shape]
    lines = []
    if missing:
        lines.append(f'  missing keys ({len(missing)}): {listed_keys(missing)}')
    if unexpected:
        lines.append(f'  unexpected keys ({len(unexpected)}): {listed_keys(unexpected)}')
    if mismatched:
        lines.append(f'  shape mismatches ({len(mismatched)}): {listed_keys(mismatched)}')
    return '\n'.join(lines)


def _other_architecture(backbone, weights: Dict[str, torch.Tensor], source: str) -> str:
    """For weights that do not fit: the line naming another of the package's backbones that recognises them
    (a Swin V1 checkpoint given to Swin V2, say), or ''."""
    if type(backbone).recognizes(weights):
        return ''
    others: List[str] = [other.__name__ for other in registered_backbones() if other.recognizes(weights)]
    if not others:
        return ''
    return (f'{source} looks like a {" or ".join(others)} checkpoint, not a {type(backbone).__name__} one; '
            f'build swin_backbones.{others[0]} for it.\n')
