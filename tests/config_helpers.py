"""Shared by the config tests: loading the configs under configs/ and building their models cheaply."""
import functools
import os.path as osp
from unittest import mock

import mmengine.config.utils
import torch
from mmengine.config import Config
from mmengine.fileio import load as load_file
from mmengine.registry import MODELS, DefaultScope

from .toy_helpers import REPO

CONFIGS = osp.join(REPO, 'configs')


def config_path(name: str) -> str:
    return osp.join(CONFIGS, name)


@functools.lru_cache(maxsize=None)
def _read_metafile(path: str):
    return load_file(path)


def read_config(name: str) -> Config:
    """A config under configs/ as written."""
    # mmengine looks up every 'mmdet::' / 'mmseg::' base in the package's model index, reading its hundred
    # metafiles each time (about 0.4 s a base, most of the time a config takes to load): read them once.
    with mock.patch.object(mmengine.config.utils, 'load', _read_metafile):
        return Config.fromfile(config_path(name))


def load(name: str) -> Config:
    """A config as written, except that the backbone starts from random weights (the authors' checkpoints
    are not part of the repository)."""
    cfg = read_config(name)
    if cfg.model.backbone.get('init_cfg'):
        cfg.model.backbone.init_cfg = None
    return cfg


@functools.lru_cache(maxsize=None)
def load_cached(name: str) -> Config:
    """:func:`load`, read once per test session: callers must not change it."""
    return load(name)


def build(cfg: Config, device: str = 'cpu') -> torch.nn.Module:
    # Only for this build: a default scope left behind would redirect other tests' registry look-ups.
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device(device):
        return MODELS.build(cfg.model)


@functools.lru_cache(maxsize=None)
def build_on_meta(name: str) -> torch.nn.Module:
    """The model of a config with its parameters on the meta device: every module and parameter as built,
    without memory or initialisation work (a whole Swin-B Cascade Mask R-CNN in a fraction of a second).
    For structure, names and counts only; built once per test session: callers must not change it."""
    return build(load_cached(name), device='meta')


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
