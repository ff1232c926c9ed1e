"""Speed and memory of this package's backbones against a reference with identical weights, in one run.

Run from the repository root (the benchmarks are not part of the installed package):

    python -m benchmarks.benchmark --model swin-t --grid
    python -m benchmarks.benchmark --model swinv2-t --sizes 800x1333 512x512
    python -m benchmarks.benchmark --model crossformer-s --grid \
        --crossformer-reference CrossFormer/models/crossformer_backbone.py
    python -m benchmarks.benchmark --model swin-t --sizes 800x1333 --batch 2 --mode train

``--model`` is any name of :func:`swin_backbones.list_backbones`. References: mmdet 3.3.0's SwinTransformer
for Swin. For CrossFormer, the authors' own backbone (cheerss/CrossFormer, ``crossformer`` branch,
``models/crossformer_backbone.py``) when ``--crossformer-reference`` gives its path (it is loaded at run time,
with stand-ins for its timm/mmcv 1.x/mmdet 2.x imports; it takes sides that are multiples of 32 and the
paper's LDA only), else :mod:`benchmarks.plain_crossformer`, the same function written the way the authors
write it. For every other backbone, the package's own impl='plain'.

For each size, batch and mode it checks that the outputs agree (stops beyond 1e-4 in fp32), then times
ours and the reference in alternation, --runs times each after --warmup, and prints the fastest run of
each (so a burst of load elsewhere shifts both or neither), the ratio reference / ours (above 1: ours is
faster), achieved GFLOP/s (the reference's forward FLOPs, tripled for forward+backward, over the time)
and the memory of a training step: on a CPU the activations kept for backward (distinct storages that
autograd saved, parameters excluded), on a GPU the peak allocation of the step. ``--compare-plain`` adds
our ``impl='plain'`` to the alternation. The last columns count the minor page faults of each side's fastest
step (first touches of memory the allocator had to get from the kernel): on virtual machines each costs
microseconds (1.3-13 us measured), so they can move a CPU ratio by more than the kernels do
(docs/measurements/2026-12-07-avx2-cpu-page-faults.md). The first line names the kernels our fast path runs
(:mod:`swin_backbones.models.ops.rules`); the closing lines give the minimum ratio, the CPU, its vector
extensions, the threads and the load average.
"""
import argparse
import os
import re
import resource
import sys
import time
import types
from contextlib import contextmanager
from typing import Dict, Optional

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from swin_backbones import create_backbone, list_backbones
from swin_backbones.models.layers import DropPath
from swin_backbones.models.swin import convert_swin_to_mmdet

from .plain_crossformer import PlainCrossFormer

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
# The --grid sizes; the authors' CrossFormer code takes multiples of 32 only, so its detection size is 800x1344.
GRID_SIZES = ('512x512', '800x1333')
GRID_SIZES_BY_BACKBONE = {'CrossFormer': ('512x512', '800x1344')}
GRID_BATCHES = (1, 2)
MODES = ('forward', 'train')
FP32_TOLERANCE = 1e-4


def build_ours(name: str, **options) -> nn.Module:
    """The backbone ``name`` without drop path, with random weights that make every term visible (Swin V2's
    zero-initialised res-post-norms would make every block the identity)."""
    ours = create_backbone(name, drop_path_rate=0.0, **options)
    for param_name, param in ours.named_parameters():
        if '.blocks.' in param_name and '.norm' in param_name and param_name.endswith('weight'):
            nn.init.ones_(param)
    return ours


def twin(ours: nn.Module, name: str, **options) -> nn.Module:
    """The backbone ``name`` with other ``options`` (``impl='plain'``, ``save_memory=True``, ...) and ``ours``'s
    weights."""
    other = create_backbone(name, drop_path_rate=0.0, **options)
    other.load_state_dict(ours.state_dict())
    return other


def mmdet_swin(ours: nn.Module, crossformer_reference: Optional[str] = None):
    """mmdet 3.3.0's SwinTransformer with ``ours``'s structure and weights (strict load)."""
    from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin
    reference = MMDetSwin(embed_dims=ours.embed_dims, depths=ours.depths, num_heads=ours.num_heads,
                          window_size=ours.window_size, drop_path_rate=0.0)
    reference.load_state_dict(convert_swin_to_mmdet(ours.state_dict()), strict=True)
    return reference, 'mmdet 3.3.0'


def crossformer_reference(ours: nn.Module, path: Optional[str] = None):
    """The authors' CrossFormer backbone when ``path`` is given, else benchmarks.plain_crossformer."""
    if path is not None:
        return authors_crossformer(path, ours), f"the authors' code ({path})"
    return PlainCrossFormer.from_model(ours), "plain_crossformer (authors' style)"


# The reference of each backbone class, by name; any other backbone is compared with its own impl='plain'.
REFERENCES = {'SwinTransformer': mmdet_swin, 'CrossFormer': crossformer_reference}


def reference_for(ours: nn.Module, name: str, crossformer_path: Optional[str] = None):
    """The reference computation for ``ours`` (see the module doc) and its name."""
    build = REFERENCES.get(type(ours).__name__)
    if build is None:
        return twin(ours, name, impl='plain'), "impl='plain'"
    return build(ours, crossformer_path)


# Imports of the authors' CrossFormer backbone that today's timm / mmcv 2 / mmdet 3 no longer provide.
_AUTHORS_IMPORTS = re.compile(r'^from (timm\.models\.layers|mmdet\.utils|mmcv\.runner) import .*$', re.MULTILINE)


def _load_checkpoint_unused(*args, **kwargs):
    raise RuntimeError('the benchmark loads weights by state dict')


def load_authors_module(path: str) -> types.ModuleType:
    """The authors' ``models/crossformer_backbone.py`` as a module, with stand-ins for the helpers it imports
    from timm (DropPath, to_2tuple, trunc_normal_), mmdet 2.x and mmcv 1.x (unused by the benchmark)."""
    with open(path) as f:
        source = f.read()
    if 'class CrossFormer(' not in source or 'class DynamicPosBias(' not in source:
        raise ValueError(f'{path} does not look like the authors\' CrossFormer backbone (no CrossFormer and '
                         'DynamicPosBias classes)')
    module = types.ModuleType('authors_crossformer_backbone')
    module.__file__ = path
    module.__dict__.update(DropPath=DropPath, trunc_normal_=nn.init.trunc_normal_,
                           to_2tuple=lambda x: tuple(x) if isinstance(x, (tuple, list)) else (x, x),
                           get_root_logger=lambda *args, **kwargs: None, load_checkpoint=_load_checkpoint_unused)
    exec(compile(_AUTHORS_IMPORTS.sub('', source), path, 'exec'), module.__dict__)
    return module


def authors_crossformer(path: str, ours: nn.Module) -> nn.Module:
    """The authors' CrossFormer backbone with ``ours``'s structure and weights (strict load)."""
    if ours.lda_type != 'paper' or ours.use_acl or ours.out_indices != (0, 1, 2, 3):
        raise ValueError("the authors' CrossFormer backbone has the paper's LDA, no ACL and outputs every stage")
    module = load_authors_module(path)
    reference = module.CrossFormer(
        patch_size=[4, 8, 16, 32], embed_dim=ours.embed_dims, depths=list(ours.depths),
        num_heads=list(ours.num_heads), group_size=list(ours.group_size), crs_interval=list(ours.crs_interval),
        merge_size=[[2, 4]] * (len(ours.depths) - 1), drop_path_rate=0.0)
    # The package names the authors' layers.{i} stages.{i}; nothing else differs.
    reference.load_state_dict({'layers.' + key[len('stages.'):] if key.startswith('stages.') else key: value
                               for key, value in ours.state_dict().items()}, strict=True)
    return reference


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@contextmanager
def exact_fp32():
    """fp32 means fp32: no TF32 matmuls or convolutions (cuDNN's default for convolutions), which keep 10 bits
    of mantissa where the output comparisons need the full 23."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextmanager
def precision(device, dtype):
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        yield


def step(model, x, mode, device, dtype):
    if mode == 'forward':
        with torch.inference_mode(), precision(device, dtype):
            return model(x)
    model.zero_grad(set_to_none=True)
    with precision(device, dtype):
        outs = model(x.requires_grad_(False))
        loss = sum(out.float().mean() for out in outs)
    loss.backward()
    return outs


def minor_page_faults() -> int:
    """This process's minor page faults so far: first touches of memory the kernel had to map."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_steps(models: Dict[str, nn.Module], x, mode, device, dtype, warmup: int, runs: int,
               faults: Optional[Dict[str, int]] = None) -> Dict[str, float]:
    """The fastest of ``runs`` steps of each model, the models taking turns (after ``warmup`` steps each).
    ``faults``, when given, receives the minor page faults of each model's fastest step."""
    for _ in range(warmup):
        for model in models.values():
            step(model, x, mode, device, dtype)
    best = {name: float('inf') for name in models}
    for _ in range(runs):
        for name, model in models.items():
            synchronize(device)
            faults_before, start = minor_page_faults(), time.perf_counter()
            step(model, x, mode, device, dtype)
            synchronize(device)
            seconds = time.perf_counter() - start
            if seconds < best[name]:
                best[name] = seconds
                if faults is not None:
                    faults[name] = minor_page_faults() - faults_before
    return best


def peak_memory(model, x, mode, device, dtype):
    """Bytes: CUDA peak allocation on a GPU; on a CPU the activations kept for backward (train) or 0."""
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step(model, x, mode, device, dtype)
        return torch.cuda.max_memory_allocated(device) - base
    if mode == 'forward':
        return 0
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), precision(device, dtype):
        model(x)
    return sum(saved.values())


def forward_flops(model, x):
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops()


def cpu_description() -> str:
    """The CPU model, its vector extensions (AVX2 / AVX-512 / AMX) and the kernels ATen dispatches to."""
    model, flags = 'unknown CPU', set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == 'model name':
                    model = value.strip()
                elif key.strip() == 'flags':
                    flags = set(value.split())
                    break
    except OSError:
        pass
    extensions = [name for name, flag in (('AVX2', 'avx2'), ('FMA', 'fma'), ('AVX-512', 'avx512f'),
                                          ('AVX512-BF16', 'avx512_bf16'), ('AMX', 'amx_tile')) if flag in flags]
    return (f'{model}, {os.cpu_count()} CPUs, flags {"/".join(extensions) or "none of AVX2/AVX-512/AMX"}, '
            f'ATen CPU capability {torch.backends.cpu.get_cpu_capability()}')


def _load() -> str:
    try:
        return '/'.join(f'{value:.2f}' for value in os.getloadavg())
    except OSError:
        return 'unknown'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='python -m benchmarks.benchmark', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='swin-t', choices=list_backbones())
    parser.add_argument('--impl', default='fast', choices=['fast', 'plain'], help="our backbone's impl option")
    parser.add_argument('--save-memory', action='store_true', help="our backbone's save_memory option")
    parser.add_argument('--kernels', nargs='+', metavar='DECISION=KERNEL', default=[],
                        help="our backbone's kernels option, e.g. --kernels linear=aten attention_backward=recompute")
    parser.add_argument('--grid', action='store_true',
                        help=f'sizes {GRID_SIZES} ({GRID_SIZES_BY_BACKBONE}), batch {GRID_BATCHES}, '
                             f'modes {MODES} (overrides --sizes, --batch and --mode)')
    parser.add_argument('--sizes', nargs='+', help='HxW; default: the --grid sizes of the model')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--mode', nargs='+', default=list(MODES), choices=MODES)
    parser.add_argument('--compare-plain', action='store_true',
                        help="also time our impl='plain' (same weights) and give the ratio plain / ours")
    parser.add_argument('--crossformer-reference', metavar='PATH',
                        help="the authors' models/crossformer_backbone.py (cheerss/CrossFormer, crossformer "
                             'branch) as the CrossFormer reference, instead of benchmarks.plain_crossformer')
    parser.add_argument('--dtype', default='fp32', choices=sorted(DTYPES))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--runs', type=int, default=3, help='timed steps of each model (the fastest is shown)')
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile both models first (the warm-up runs include compilation)')
    args = parser.parse_args(argv)
    if args.crossformer_reference and not args.model.startswith('crossformer'):
        parser.error('--crossformer-reference is for the CrossFormer models')
    for size in args.sizes or ():
        if not re.fullmatch(r'\d+x\d+', size):
            parser.error(f'--sizes takes HxW, e.g. 800x1333; got {size!r}')
    args.kernels = dict(item.partition('=')[::2] for item in args.kernels)
    return args


def run(args) -> None:
    """Prints the table and the closing lines."""
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    batches = GRID_BATCHES if args.grid else (args.batch,)
    modes = MODES if args.grid else tuple(args.mode)
    load_before = _load()
    torch.manual_seed(0)
    ours = build_ours(args.model, impl=args.impl, save_memory=args.save_memory, kernels=args.kernels or None)
    grid_sizes = GRID_SIZES_BY_BACKBONE.get(type(ours).__name__, GRID_SIZES)
    sizes = grid_sizes if args.grid or not args.sizes else args.sizes
    reference, reference_name = reference_for(ours, args.model, args.crossformer_reference)
    models = {'ours': ours, 'reference': reference}
    if args.compare_plain:
        models['plain'] = twin(ours, args.model, impl='plain')
    for name, model in models.items():
        model.to(device)
        model.eval()  # mmdet's train() returns None, so no chaining
    if args.compile:
        models = {name: torch.compile(model) for name, model in models.items()}
    print(f'{args.model} ({ours.fast_path.describe(device, dtype)}) vs {reference_name}, {args.dtype}, {device}, '
          f'{args.threads} threads, fastest of {args.runs} alternating runs, torch {torch.__version__}'
          + (', both torch.compile-d' if args.compile else ''))
    plain_header = f' {"plain s":>8} {"ratio":>6} |' if args.compare_plain else ''
    print(f'{"size":>10} {"batch":>5} {"mode":>8} | {"ours s":>8} {"ref s":>8} {"ratio":>6} |{plain_header} '
          f'{"GFLOP/s ours":>12} {"ref":>7} | {"mem ours MB":>11} {"ref":>7} {"ratio":>6} | max |diff| | '
          f'faults/step ours ref')
    ratios, plain_ratios = [], []
    for size in sizes:
        height, width = (int(v) for v in size.split('x'))
        for batch in batches:
            x = torch.randn(batch, 3, height, width, device=device)
            with torch.inference_mode(), precision(device, dtype), exact_fp32():
                outputs = {name: model(x) for name, model in models.items()}
            difference = max(max((a.float() - b.float()).abs().max().item() for a, b in zip(outputs['ours'], outs))
                             for name, outs in outputs.items() if name != 'ours')
            del outputs
            if dtype == torch.float32 and difference > FP32_TOLERANCE:
                raise SystemExit(f'{size}: outputs differ by {difference:.1e} (> {FP32_TOLERANCE} in fp32)')
            flops = forward_flops(reference, x)
            for mode in modes:
                work = flops * (3 if mode == 'train' else 1)
                faults = {}
                times = time_steps(models, x, mode, device, dtype, args.warmup, args.runs, faults)
                memory = {name: peak_memory(models[name], x, mode, device, dtype) / 2 ** 20
                          for name in ('ours', 'reference')}
                ratio = times['reference'] / times['ours']
                ratios.append(ratio)
                memory_ratio = f'{memory["ours"] / memory["reference"]:6.2f}' if memory['reference'] else f'{"-":>6}'
                plain_cells = ''
                if args.compare_plain:
                    plain_ratios.append(times['plain'] / times['ours'])
                    plain_cells = f' {times["plain"]:8.3f} {plain_ratios[-1]:6.2f} |'
                print(f'{size:>10} {batch:>5} {mode:>8} | {times["ours"]:8.3f} {times["reference"]:8.3f} {ratio:6.2f} |'
                      f'{plain_cells} {work / times["ours"] / 1e9:12.1f} {work / times["reference"] / 1e9:7.1f} | '
                      f'{memory["ours"]:11.0f} {memory["reference"]:7.0f} {memory_ratio} | {difference:<10.1e} | '
                      f'{faults["ours"] / 1e3:12.0f}k {faults["reference"] / 1e3:5.0f}k', flush=True)
    print(f'minimum ratio reference / ours: {min(ratios):.2f}'
          + (f'; plain / ours: {min(plain_ratios):.2f}' if plain_ratios else ''))
    if device.type == 'cpu':
        print(f'CPU: {cpu_description()}')
    elif device.type == 'cuda':
        print(f'GPU: {torch.cuda.get_device_name(device)}')
    print(f'threads {torch.get_num_threads()}, torch {torch.__version__}, load average (1/5/15 min) '
          f'{load_before} before, {_load()} after')


def main(argv=None) -> None:
    run(parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
