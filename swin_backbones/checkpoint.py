"""Reading checkpoint files safely, finding a backbone's weights in them, and mmengine's safe local loader.

Checkpoints are untrusted input: they are read with ``torch.load(weights_only=True)``, which builds
tensors and plain containers but runs no code. Checkpoints written by mmengine's runner fail that
reader only because of its training-loop state: MessageHub history buffers (whose statistics methods
pickle through ``builtins.getattr``) and numpy arrays. Those files are read by
:class:`_AllowlistUnpickler`, which resolves nothing but torch's own weights-only allowlist, numpy's
array reconstructors, mmengine's ``HistoryBuffer`` and ``getattr`` limited to that class's statistics
methods, so resuming a run restores its history too. Anything else is refused unless the caller
passes ``weights_only=False`` for a file they trust.

:func:`read_backbone_weights` (a file) and :func:`backbone_weights` (a state dict) find a backbone's tensors:
:func:`unwrap_state_dict` takes the state dict out of a ``state_dict`` / ``model`` wrapper without DDP's ``module.``
prefix, and a whole detector's, segmentor's or mmpretrain classifier's state dict is reduced to its ``backbone.``
keys (:func:`extract_state_dict`). Converting their layout and loading them into a backbone, strictly on every
loading path, is :mod:`swin_backbones.loading`'s work; :class:`CheckpointError` and
:class:`CheckpointMismatchError`, the errors of both, are defined here. :func:`publish_checkpoint` keeps the
weights and ``meta`` of a training checkpoint, for release.

mmengine 0.10 reads local checkpoints with ``torch.load``'s default, which since torch 2.6 is
``weights_only=True`` and refuses the checkpoints mmengine's runner itself writes, so resuming and
testing a trained model fail. Importing ``swin_backbones`` (which the configs do through
``custom_imports``) makes :func:`load_from_local_safely` mmengine's loader for local files, unless the
environment variable ``SWIN_BACKBONES_SAFE_LOADING`` is ``0``; :func:`use_safe_checkpoint_loading`
turns it on or off in a running process.
"""
import importlib
import logging
import os
import pickle
from collections.abc import Mapping
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.logging.history_buffer import HistoryBuffer

from .files import atomic_output, check_output_path

__all__ = ['CheckpointError', 'CheckpointMismatchError', 'read_checkpoint', 'read_backbone_weights', 'backbone_weights',
           'extract_state_dict', 'unwrap_state_dict', 'whole_model_prefix', 'listed_keys',
           'SAFE_LOADING_ENV', 'safe_loading_requested', 'use_safe_checkpoint_loading',
           'safe_checkpoint_loading_enabled', 'load_from_local_safely', 'publish_checkpoint']

# numpy's reconstructors of arrays, scalars and dtypes: they build data and call nothing else.
_NUMPY_DATA_GLOBALS = {
    f'numpy.{core}.multiarray.{name}' for core in ('core', '_core') for name in ('_reconstruct', 'scalar')
} | {'numpy.ndarray', 'numpy.dtype'}
_NUMPY_DTYPE_PREFIX = 'numpy.dtypes.'
# mmengine's training-loop state: the MessageHub's history buffers and their statistics methods.
_HISTORY_BUFFER = 'mmengine.logging.history_buffer.HistoryBuffer'
_HISTORY_BUFFER_METHODS = {'min', 'max', 'current', 'mean'}
_RUNNER_STATE_GLOBALS = {_HISTORY_BUFFER, 'builtins.getattr'}
_PYTHON2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}

_MAX_LISTED_KEYS = 20


class CheckpointError(RuntimeError):
    """A checkpoint file could not be read or does not hold a usable state dict."""


class CheckpointMismatchError(CheckpointError):
    """The keys or shapes of a checkpoint do not fit the model."""


def _history_buffer_method(obj, name: str):
    """Stands in for ``builtins.getattr`` while unpickling: only HistoryBuffer's statistics methods."""
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def _global_name(module: str, name: str) -> str:
    return f'{_PYTHON2_MODULES.get(module, module)}.{name}'


def _is_numpy_data(name: str) -> bool:
    return name in _NUMPY_DATA_GLOBALS or name.startswith(_NUMPY_DTYPE_PREFIX)


class _AllowlistUnpickler(pickle.Unpickler):
    """Resolves only allowlisted globals; see the module docstring."""

    def find_class(self, module: str, name: str):
        full_name = _global_name(module, name)
        if full_name == _HISTORY_BUFFER:
            return HistoryBuffer
        if full_name == 'builtins.getattr':
            return _history_buffer_method
        allowed = torch._weights_only_unpickler._get_allowed_globals()
        if full_name in allowed:
            return allowed[full_name]
        if _is_numpy_data(full_name):
            module_name, _, attr = full_name.rpartition('.')
            return getattr(importlib.import_module(module_name), attr)
        raise pickle.UnpicklingError(f'{full_name} is not allowed')


class _AllowlistPickleModule:
    """The ``pickle_module`` interface that ``torch.load`` needs, around :class:`_AllowlistUnpickler`."""
    Unpickler = _AllowlistUnpickler
    UnpicklingError = pickle.UnpicklingError

    @staticmethod
    def load(file, **kwargs):
        return _AllowlistUnpickler(file, **kwargs).load()


def read_checkpoint(path: str, weights_only: bool = True, map_location='cpu'):
    """Reads a checkpoint file without running code from it (unless ``weights_only=False``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path}')
    if not weights_only:
        print_log(f'loading {path} with weights_only=False: the file can run arbitrary code; '
                  'only do this for files you trust', logger='current', level=logging.WARNING)
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        unsafe = _unsafe_globals(path, error)
    except Exception as error:
        raise _unreadable(path, error) from error
    if unsafe and all(name in _RUNNER_STATE_GLOBALS or _is_numpy_data(name) for name in unsafe):
        try:
            # weights_only=False only lets torch use this pickle_module, which resolves nothing beyond the allowlist.
            return torch.load(path, map_location=map_location, weights_only=False,
                              pickle_module=_AllowlistPickleModule)
        except pickle.UnpicklingError as error:
            unsafe = [str(error)]
        except Exception as error:
            raise _unreadable(path, error) from error
    raise CheckpointError(
        f'refusing to load {path}: it needs arbitrary unpickling of {", ".join(unsafe) or "unknown objects"}, '
        'which can run code. If you trust this file, pass weights_only=False (in a config: '
        "init_cfg=dict(type='Pretrained', checkpoint=..., weights_only=False); "
        'with swin-backbones-convert / tools/convert_checkpoint.py: --no-weights-only) and re-save it with '
        'that converter so that it loads safely from then on.')


def _unreadable(path: str, error: Exception) -> CheckpointError:
    return CheckpointError(f'{path} is not a readable PyTorch checkpoint (truncated, corrupt or another '
                           f'format): {type(error).__name__}: {error}')


def _unsafe_globals(path: str, error: Exception) -> List[str]:
    try:
        return [_global_name(*name.rsplit('.', 1))
                for name in torch.serialization.get_unsafe_globals_in_checkpoint(path)]
    except Exception as inspect_error:
        raise _unreadable(path, error) from inspect_error


# What a whole-model state dict holds besides ``backbone.*``, by the top-level prefixes of its other parts.
# Checked in this order: segmentors and detectors may have a neck; mmpretrain's classifiers name theirs 'head'.
_WHOLE_MODEL_KINDS = (
    ('a segmentor', ('decode_head.', 'auxiliary_head.')),
    ('a detector', ('rpn_head.', 'roi_head.', 'bbox_head.', 'mask_head.', 'neck.')),
    ('an mmpretrain classifier', ('head.', 'data_preprocessor.')),
)


def read_backbone_weights(path: str, prefix: Optional[str] = None,
                          weights_only: bool = True) -> Tuple[Dict[str, torch.Tensor], str]:
    """The backbone's tensors in a checkpoint file and where they came from: see :func:`backbone_weights`."""
    return backbone_weights(unwrap_state_dict(read_checkpoint(path, weights_only=weights_only)), prefix)


def backbone_weights(whole: Dict[str, torch.Tensor],
                     prefix: Optional[str] = None) -> Tuple[Dict[str, torch.Tensor], str]:
    """The backbone's tensors in an unwrapped state dict (see :func:`extract_state_dict`) and, for messages,
    where they came from: 'a backbone checkpoint', 'the backbone of a detector checkpoint' (or segmentor, or
    mmpretrain classifier), or 'the keys under PREFIX'."""
    if prefix is not None:
        return extract_state_dict(whole, prefix=prefix), f'the keys under {prefix!r}'
    if not whole_model_prefix(whole):
        return whole, 'a backbone checkpoint'
    others = [key for key in whole if not key.startswith('backbone.')]
    kind = next((name for name, prefixes in _WHOLE_MODEL_KINDS if any(key.startswith(prefixes) for key in others)),
                'a whole model')
    return extract_state_dict(whole), f'the backbone of {kind} checkpoint'


def extract_state_dict(checkpoint, prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The backbone's tensors from a checkpoint object.

    Unwraps ``state_dict`` / ``model`` containers and DDP's ``module.`` prefix. With ``prefix``, keeps
    only keys under it (stripped); without it, a whole detector or segmentor checkpoint is recognised by
    its ``backbone.`` keys and reduced to them.
    """
    state = unwrap_state_dict(checkpoint)
    prefix = prefix if prefix is not None else whole_model_prefix(state)
    if prefix:
        state = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        if not state:
            raise CheckpointError(f'the checkpoint has no keys under the prefix {prefix!r}')
    return state


def unwrap_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The state dict inside a ``state_dict`` / ``model`` wrapper, without DDP's ``module.`` prefix."""
    state = checkpoint
    for wrapper in ('state_dict', 'model'):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError('the checkpoint holds no state dict (expected a mapping of parameter '
                              f'names to tensors, possibly under "state_dict" or "model"), got {type(state).__name__}')
    non_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if non_tensors:
        raise CheckpointError(f'the checkpoint state dict has non-tensor entries: {listed_keys(non_tensors)}')
    return {_strip(key, 'module.'): value for key, value in state.items()}


def whole_model_prefix(state_dict: Mapping) -> str:
    """'backbone.' for a whole detector/segmentor state dict, '' for a backbone's own."""
    return 'backbone.' if any(key.startswith('backbone.') for key in state_dict) else ''


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def listed_keys(keys: Iterable[str]) -> str:
    """The first keys of a list, and how many more, for messages."""
    keys = list(keys)
    shown = ', '.join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f' ... and {more} more' if more > 0 else '')


# ------------------------------------------------------------------------ mmengine's local loader
SAFE_LOADING_ENV = 'SWIN_BACKBONES_SAFE_LOADING'
_OFF = ('0', 'false', 'no', 'off')
_replaced_local_loader = None  # what use_safe_checkpoint_loading(False) puts back


def load_from_local_safely(filename: str, map_location=None):
    """mmengine's loader for local checkpoint files, reading them with :func:`read_checkpoint`.

    mmengine names a loader in its log by the function name after ``load_from_``: runs that use this
    one log 'Loads checkpoint by local_safely backend from path: ...'.
    """
    return read_checkpoint(os.path.expanduser(filename), map_location=map_location)


def safe_loading_requested() -> bool:
    """False when the environment variable ``SWIN_BACKBONES_SAFE_LOADING`` is 0 / false / no / off."""
    return os.environ.get(SAFE_LOADING_ENV, '1').strip().lower() not in _OFF


def _local_loader():
    from mmengine.runner.checkpoint import CheckpointLoader
    return CheckpointLoader._schemes.get('')


def safe_checkpoint_loading_enabled() -> bool:
    """Whether mmengine reads local checkpoints with :func:`load_from_local_safely`."""
    return _local_loader() is load_from_local_safely


def use_safe_checkpoint_loading(enabled: bool = True) -> None:
    """Makes mmengine read local checkpoints with :func:`load_from_local_safely` (``enabled=True``), or
    puts back the loader that was there before (mmengine's own ``load_from_local``); for this process.

    Importing the package calls ``use_safe_checkpoint_loading()`` unless ``SWIN_BACKBONES_SAFE_LOADING=0``.
    """
    global _replaced_local_loader
    from mmengine.runner.checkpoint import CheckpointLoader, load_from_local
    current = _local_loader()
    if enabled and current is not load_from_local_safely:
        _replaced_local_loader = current
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safely, force=True)
    elif not enabled and current is load_from_local_safely:
        CheckpointLoader.register_scheme(prefixes='', loader=_replaced_local_loader or load_from_local, force=True)


def publish_checkpoint(source: str, destination: str) -> dict:
    """Writes the weights and ``meta`` of a training checkpoint (no optimizer, schedulers or MessageHub)
    to ``destination``, a file that ``torch.load(weights_only=True)`` reads anywhere; returns what it wrote.

    The source is read without running code from it; the destination is written atomically.
    """
    checkpoint = read_checkpoint(source)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get('state_dict'), Mapping):
        raise CheckpointError(f'{source} has no state_dict: not a checkpoint written by mmengine')
    check_output_path(destination, force=True, source=source)
    published = {'meta': checkpoint.get('meta', {}), 'state_dict': checkpoint['state_dict']}
    with atomic_output(destination, suffix='.pth') as temporary:
        torch.save(published, temporary)
        torch.load(temporary, map_location='cpu', weights_only=True)  # what every loader can read
    return published
