"""What the tests share: random weights that make every term visible, float comparisons relative to magnitude, the
small test configs, mmdet's and mmpretrain's reference backbones, whole-model checkpoints, the configs under
configs/ built cheaply, toy data and the tools run in subprocesses. Test modules import from here (and from the
reference computations ``crossformer_reference`` and ``swinv2_reference``), never from one another."""
import configparser
import functools
import importlib
import importlib.util
import math
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
import types
from unittest import mock

import mmengine.config.utils
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.fileio import load as load_file
from mmengine.registry import MODELS, DefaultScope

from swin_backbones.checkpoint import read_checkpoint as read_checkpoint_safely
from swin_backbones.registry import registered_backbones
from swin_backbones.toy_data import make_toy_data

# ------------------------------------------------------------------------------- small backbones
# The structure of every small test backbone: four stages, all of them padded at odd sizes, fast on 2 cores.
SMALL = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
# Every registered backbone by class name (swin_backbones' and any a test registers), in registration order.
BACKBONES = {backbone.__name__: backbone for backbone in registered_backbones()}


def small_backbone(backbone, seed: int = 0, **overrides) -> nn.Module:
    """A registered backbone class (or its name) with the SMALL structure, no stochastic depth and random
    weights that make every term visible (:func:`randomize_backbone_`), in eval mode."""
    backbone = registered_backbone(backbone)
    model = backbone(**{**SMALL, 'drop_path_rate': 0.0, **overrides})
    return randomize_backbone_(model, seed).eval()


def registered_backbone(backbone):
    """A backbone class from its class or its registered name (a test may have registered more since import)."""
    if isinstance(backbone, type):
        return backbone
    return {cls.__name__: cls for cls in registered_backbones()}[backbone]


def randomize_backbone_(model: nn.Module, seed: int = 0) -> nn.Module:
    """:func:`randomize_swinv2_` for Swin V2 (whose logit scales and position bias MLP need their own scales),
    :func:`randomize_` for every other backbone."""
    if any(name.endswith('logit_scale') for name, _ in model.named_parameters()):
        return randomize_swinv2_(model, seed)
    return randomize_(model, seed)


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.2, weight_std: float = 0.05):
    """Fills every parameter with random values so that comparisons can fail.

    Linear/conv weights get ``weight_std`` (about a trained network's scale, so that deep stacks stay
    well conditioned); biases, position bias tables and LayerNorm shifts get ``std``, and LayerNorm
    scales 1 + ``std`` noise: position-bias indexing or masking errors change the outputs visibly.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            for name, param in submodule.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=generator)
                if isinstance(submodule, (torch.nn.Linear, torch.nn.Conv2d)) and name == 'weight':
                    param.copy_(noise * weight_std)
                elif isinstance(submodule, torch.nn.LayerNorm) and name == 'weight':
                    param.copy_(1 + noise * std)
                else:
                    param.copy_(noise * std)
    return module


def randomize_swinv2_(model: torch.nn.Module, seed: int = 0):
    """:func:`randomize_`, then weights that make every Swin V2 term visible: logit scales around log 10 (the
    first head of the first block above the clamp at log 100), and a position bias MLP whose output varies
    strongly with the offset. Takes this package's and mmpretrain's parameter names."""
    randomize_(model, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    logit_scales = [param for name, param in model.named_parameters() if name.endswith('logit_scale')]
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith('logit_scale'):
                param.copy_(math.log(10.0) + torch.randn(param.shape, generator=generator))
            elif name.endswith('cpb_mlp.0.weight'):
                param.copy_(torch.randn(param.shape, generator=generator))
            elif name.endswith('cpb_mlp.2.weight'):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        logit_scales[0][0] = 5.5  # clamped to log 100 = 4.61
    return model


# Float32 results of one function computed two ways (other kernels, vector units, thread counts or batch
# splits) differ by rounding that grows with the magnitude of the values, so comparisons are relative to
# it. Measured: at most 1.7e-6 of the largest value (AVX2 and SSE4.1 kernels, 1 and 2 threads, whole
# published structures included); a wrong mask, index or order changes outputs by 1e-2 and more.
FP32_REL = 1e-5


def _pairs(outs_a, outs_b):
    if isinstance(outs_a, torch.Tensor):
        outs_a, outs_b = [outs_a], [outs_b]
    assert len(outs_a) == len(outs_b)
    for a, b in zip(outs_a, outs_b):
        assert a.shape == b.shape, (a.shape, b.shape)
    return zip(outs_a, outs_b)


def max_abs_diff(outs_a, outs_b) -> float:
    """The largest absolute difference over pairs of tensors (for exact comparisons and for reporting)."""
    return max((a - b).abs().max().item() for a, b in _pairs(outs_a, outs_b))


def scaled_diff(outs_a, outs_b) -> float:
    """The largest ``max|a - b| / max|b|`` over pairs of tensors: each pair relative to the magnitude of
    its reference ``b`` (at least 1e-6, so that all-zero references compare absolutely)."""
    return max(((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-6)).item()
               for a, b in _pairs(outs_a, outs_b))


def assert_close(outs_a, outs_b, rel: float = FP32_REL) -> None:
    """Asserts :func:`scaled_diff` <= rel, reporting both the scaled and the absolute difference."""
    scaled = scaled_diff(outs_a, outs_b)
    assert scaled <= rel, f'difference {scaled:.3g} of the magnitude (abs {max_abs_diff(outs_a, outs_b):.3g}) > {rel}'


# ------------------------------------------------------------------ whole-model checkpoints
NECK = {'neck.weight': torch.ones(4, 4, 1, 1), 'neck.bias': torch.zeros(4)}


class WholeModel(nn.Module):
    """What a detector or segmentor is to the loaders: a backbone under ``backbone.`` and other parts."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(4, 4, 1)


def whole_model_checkpoint(path, backbone: nn.Module, prefix: str = 'backbone.') -> dict:
    """Saves ``backbone``'s weights under ``prefix`` with a neck beside it, as a detector checkpoint (state dict
    and meta); returns the state dict."""
    state = {prefix + key: value for key, value in backbone.state_dict().items()}
    state.update({prefix[:-len('backbone.')] + key: value for key, value in NECK.items()})
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, path)
    return state


def to_mmdet_keys(state_dict, buffers: bool = True):
    """This package's Swin layout -> the keys of mmdet's ``SwinTransformer`` (a rename: the tensors are the
    same), with the relative_position_index buffers mmdet's state dict has where ``buffers``."""
    from swin_backbones.models.swin import convert_swin_to_mmdet
    from swin_backbones.models.swin_layouts import to_openmmlab_key
    if buffers:
        return convert_swin_to_mmdet(state_dict)
    return {to_openmmlab_key(key): value for key, value in state_dict.items()}


def to_authors_layout(state_dict):
    """This package's Swin V1 / V2 or CrossFormer state dict -> the authors' layout, which the reference
    computations read: ``stages.{i}`` -> ``layers.{i}``, and each Swin merging's 4C axis (its reduction's input,
    and for V1 its norm) from unfold order to the authors' neighbour order. Differentiable."""
    from swin_backbones.models.swin_layouts import unfold_to_neighbour_order
    merged_widths = {key.rsplit('.', 2)[0]: value.shape[1] for key, value in state_dict.items()
                     if key.endswith('.downsample.reduction.weight')}
    converted = {}
    for key, value in state_dict.items():
        stage = key.rsplit('.', 2)[0]
        if stage in merged_widths and value.shape[-1] == merged_widths[stage]:
            value = unfold_to_neighbour_order(value, key)
        converted['layers.' + key[len('stages.'):] if key.startswith('stages.') else key] = value
    return converted


def mmdet_swin_twin(ours: nn.Module, **kwargs) -> nn.Module:
    """mmdet 3.3.0's SwinTransformer built with ``kwargs`` (our constructor's, mmdet's names) holding ``ours``'s
    weights, in eval mode; strict: every tensor of each must have a place in the other."""
    from mmdet.models.backbones import SwinTransformer as MMDetSwin
    reference = MMDetSwin(**kwargs)
    reference.load_state_dict(to_mmdet_keys(ours.state_dict()), strict=True)
    reference.eval()  # mmdet's train() returns None
    return reference


def load_mmpretrain_swinv2():
    """mmpretrain 1.2.0's SwinTransformerV2 class, imported without running mmpretrain's package __init__
    files (they import its whole API, which needs packages a backbone does not: importlib_metadata,
    transformers ...): its packages are stood in for by empty ones, filled with what the backbone imports."""
    spec = importlib.util.find_spec('mmpretrain')
    if spec is None:
        pytest.skip('mmpretrain is not installed (tools/install.sh installs mmpretrain==1.2.0 without dependencies)')
    root = os.path.dirname(spec.origin)
    saved = {name: sys.modules.get(name) for name in ('mmpretrain', 'mmpretrain.models', 'mmpretrain.models.utils',
                                                       'mmpretrain.models.backbones')}
    try:
        for name in saved:
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(root, *name.split('.')[1:])]
            sys.modules[name] = package
        utils = sys.modules['mmpretrain.models.utils']
        for module in ('attention', 'embed', 'helpers'):
            module = importlib.import_module(f'mmpretrain.models.utils.{module}')
            utils.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith('_')})
        return importlib.import_module('mmpretrain.models.backbones.swin_transformer_v2').SwinTransformerV2
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# ---------------------------------------------------------------------------------- packaging
REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
MIM_TOOLS = {scope: osp.join(osp.dirname(__import__(scope).__file__), '.mim', 'tools') for scope in ('mmdet', 'mmseg')}

TOY_CONFIGS = {
    ('det', 'swin'): osp.join(REPO, 'configs/toy/mask-rcnn_swin-toy_fpn_toy-coco.py'),
    ('det', 'crossformer'): osp.join(REPO, 'configs/toy/mask-rcnn_crossformer-toy_fpn_toy-coco.py'),
    ('seg', 'swin'): osp.join(REPO, 'configs/toy/upernet_swin-toy_toy-ade.py'),
    ('seg', 'crossformer'): osp.join(REPO, 'configs/toy/upernet_crossformer-toy_toy-ade.py'),
    ('det', 'swinv2'): osp.join(REPO, 'configs/toy/mask-rcnn_swinv2-toy_fpn_toy-coco.py'),
    ('seg', 'swinv2'): osp.join(REPO, 'configs/toy/upernet_swinv2-toy_toy-ade.py'),
}
# The toy twins of the other heads the published configs use: (scope, config).
TOY_HEAD_CONFIGS = {
    'cascade-mask-rcnn': ('mmdet',
                          osp.join(REPO, 'configs/toy/cascade-mask-rcnn_swin-toy_fpn_4conv1f-giou_toy-coco.py')),
    'retinanet': ('mmdet', osp.join(REPO, 'configs/toy/retinanet_crossformer-toy_fpn_toy-coco.py')),
    'semantic-fpn': ('mmseg', osp.join(REPO, 'configs/toy/fpn_crossformer-toy_toy-ade.py')),
}


def make_small_toy_data(root: str, num_train: int = 16, num_val: int = 8) -> str:
    make_toy_data(root, num_train=num_train, num_val=num_val, size=128, seed=0)
    return root


def short_run_options(iters: int = 2, checkpoint_interval=None, val: bool = True):
    """--cfg-options for a few iterations: logs every iteration, checkpoints at the end (or every N)."""
    interval = checkpoint_interval or iters
    options = [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters if val else 10 ** 6}',
               f'default_hooks.checkpoint.interval={interval}', 'default_hooks.checkpoint.max_keep_ckpts=5',
               'default_hooks.logger.interval=1']
    return options


def run(command, data_root: str, timeout: int = 900, env=None):
    """Runs a command with TOY_DATA set; returns the CompletedProcess (stdout and stderr merged).

    A command still running after ``timeout`` seconds fails the test with its output, which then ends
    with the Python traceback of every thread of every process it started (faulthandler, dumped on
    SIGABRT: torchrun's agent and each worker), so a hang shows where it waits.
    """
    full_env = dict(os.environ, TOY_DATA=data_root, OMP_WAIT_POLICY='PASSIVE', PYTHONWARNINGS='ignore',
                    PYTHONFAULTHANDLER='1')
    full_env.update(env or {})
    process = subprocess.Popen([str(c) for c in command], cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # torchrun starts its workers in sessions of their own: signal the whole tree, found first.
        tree = [process.pid] + descendants(process.pid)
        for pid in tree:
            _abort_and_wait(pid)
        try:
            output, _ = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            _signal_all(tree, signal.SIGKILL)
            output, _ = process.communicate()
        pytest.fail(f'still running after {timeout} s: {" ".join(map(str, command))}\n'
                    + '\n'.join(output.splitlines()[-300:]), pytrace=False)
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def descendants(pid: int):
    """Every process below ``pid``, children before grandchildren (from /proc)."""
    children = {}
    for entry in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{entry}/stat') as stat:
                parent = int(stat.read().rsplit(')', 1)[1].split()[1])  # after "pid (name) state"
        except OSError:  # exited meanwhile
            continue
        children.setdefault(parent, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _abort_and_wait(pid: int, wait: float = 10.0) -> None:
    """SIGABRT to one process, then wait (up to ``wait`` s) until it has dumped and ended: faulthandler
    writes a traceback in many small writes, and two processes dumping into the same pipe at once
    interleave them mid-line."""
    _signal_all([pid], signal.SIGABRT)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited child that its parent has not reaped yet does not)."""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _signal_all(pids, signum) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def check(result):
    """The output of a command that must succeed; on failure, the end of its output (where the error is)."""
    if result.returncode != 0:
        lines = [line for line in result.stdout.splitlines() if 'paramwise_options' not in line]
        pytest.fail(f'exit status {result.returncode}:\n' + '\n'.join(lines[-80:]), pytrace=False)
    return result.stdout


def train_iterations(log: str):
    """The training iterations logged as 'Iter(train) [i/n]'."""
    return [int(m.group(1)) for m in re.finditer(r'Iter\(train\) \[\s*(\d+)/\d+\]', log)]


def read_checkpoint(path: str):
    return read_checkpoint_safely(path, map_location='cpu')


def _console_scripts():
    parser = configparser.ConfigParser()
    parser.read(osp.join(REPO, 'setup.cfg'))
    lines = parser['options.entry_points']['console_scripts'].strip().splitlines()
    return dict(tuple(part.strip() for part in line.split('=')) for line in lines)


CONSOLE_SCRIPTS = _console_scripts()


# ------------------------------------------------------------------------------------- configs
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
