"""Speed and memory of this package's backbones against a reference with identical weights, in one run.

    python tools/benchmark.py --model swin --sizes 800x1333 512x512 --mode forward train
    python tools/benchmark.py --model crossformer --sizes 800x1344 512x512 --mode forward train
    python tools/benchmark.py --model swinv2 --sizes 800x1333 512x512 --mode forward train

References: mmdet 3.3.0's SwinTransformer for Swin; for CrossFormer, tools/plain_crossformer.py, the
same function written the way the authors write it (full bias and mask tensors, per-forward bias); for
SwinV2, the package's own impl='plain'.
For each size and mode it checks that the outputs agree, then prints the median time over --runs
runs (after --warmup), the ratio reference / ours (above 1: ours is faster), achieved GFLOP/s (the
reference's forward FLOPs, tripled for forward+backward, over the time) and the memory of a training
step: on a CPU the activations kept for backward (distinct storages that autograd saved, parameters
excluded), on a GPU the peak allocation of the step.
"""
import argparse
import statistics
import time
from contextlib import contextmanager

import torch
from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin
from mmdet.models.backbones.swin import swin_converter
from torch.utils.flop_counter import FlopCounterMode

from plain_crossformer import PlainCrossFormer
from swin_backbones import CrossFormer, SwinTransformer, SwinTransformerV2

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def paired_swin(arch: str, impl: str):
    ours = SwinTransformer(arch=arch, drop_path_rate=0.0, impl=impl)
    ours.init_weights()
    reference = MMDetSwin(embed_dims=ours.embed_dims, depths=ours.depths, num_heads=ours.num_heads,
                          drop_path_rate=0.0)
    missing, unexpected = reference.load_state_dict(
        {k[len('backbone.'):]: v for k, v in swin_converter(ours.state_dict()).items()}, strict=False)
    # mmdet rebuilds its relative position index buffers itself; every parameter must have been loaded.
    assert not unexpected and all(key.endswith('relative_position_index') for key in missing), (missing, unexpected)
    return ours, reference, 'mmdet 3.3.0'


def paired_crossformer(arch: str, impl: str):
    ours = CrossFormer(arch=arch, drop_path_rate=0.0, impl=impl)
    ours.init_weights()
    return ours, PlainCrossFormer.from_model(ours), 'plain (authors\' style)'


def paired_swinv2(arch: str, impl: str):
    ours = SwinTransformerV2(arch=arch, drop_path_rate=0.0, impl=impl)
    ours.init_weights()
    for name, param in ours.named_parameters():  # zero-initialised res-post-norms would make every block the identity
        if '.blocks.' in name and '.norm' in name and name.endswith('weight'):
            torch.nn.init.ones_(param)
    reference = SwinTransformerV2(arch=arch, drop_path_rate=0.0, impl='plain')
    reference.load_state_dict(ours.state_dict())
    return ours, reference, "impl='plain'"


PAIRS = {'swin': (paired_swin, ['tiny', 'small', 'base', 'large']),
         'swinv2': (paired_swinv2, ['tiny', 'small', 'base', 'large']),
         'crossformer': (paired_crossformer, ['tiny', 'small', 'base', 'large', 'pp-small', 'pp-base', 'pp-large'])}


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


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


def time_step(model, x, mode, device, dtype, warmup, runs):
    for _ in range(warmup):
        step(model, x, mode, device, dtype)
    times = []
    for _ in range(runs):
        synchronize(device)
        start = time.perf_counter()
        step(model, x, mode, device, dtype)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', default='swin', choices=sorted(PAIRS))
    parser.add_argument('--arch', help='default: tiny for Swin and SwinV2, small for CrossFormer')
    parser.add_argument('--impl', default='fast', choices=['fast', 'plain'], help="our backbone's impl option")
    parser.add_argument('--sizes', nargs='+', default=['800x1333', '512x512'])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--mode', nargs='+', default=['forward', 'train'], choices=['forward', 'train'])
    parser.add_argument('--dtype', default='fp32', choices=sorted(DTYPES))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile both models first (the warm-up runs include compilation)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    build, archs = PAIRS[args.model]
    arch = args.arch or ('small' if args.model == 'crossformer' else 'tiny')
    if arch not in archs:
        parser.error(f'--arch for {args.model} must be one of {archs}, got {arch!r}')
    torch.manual_seed(0)
    ours, reference, reference_name = build(arch, args.impl)
    ours, reference = ours.to(device), reference.to(device)
    ours.eval()
    reference.eval()  # mmdet's train() returns None, so no chaining

    flop_model = reference
    if args.compile:
        ours, reference = torch.compile(ours), torch.compile(reference)
    print(f'{args.model} {arch} (impl={args.impl}) vs {reference_name}, batch {args.batch}, {args.dtype}, {device}, '
          f'{args.threads} threads, median of {args.runs}, torch {torch.__version__}'
          + (', both torch.compile-d' if args.compile else ''))
    print(f'{"size":>10} {"mode":>8} | {"ours s":>8} {"ref s":>8} {"ratio":>6} | {"GFLOP/s ours":>12} '
          f'{"ref":>7} | {"mem ours MB":>11} {"ref":>7} {"ratio":>6} | max |diff|')
    for size in args.sizes:
        height, width = (int(v) for v in size.split('x'))
        x = torch.randn(args.batch, 3, height, width, device=device)
        with torch.inference_mode(), precision(device, dtype):
            difference = max((a.float() - b.float()).abs().max().item() for a, b in zip(ours(x), reference(x)))
        if dtype == torch.float32 and difference > 1e-4:
            raise SystemExit(f'{size}: outputs differ from the reference by {difference:.1e} (> 1e-4 in fp32)')
        flops = forward_flops(flop_model, x)
        for mode in args.mode:
            work = flops * (3 if mode == 'train' else 1)
            ours_time = time_step(ours, x, mode, device, dtype, args.warmup, args.runs)
            reference_time = time_step(reference, x, mode, device, dtype, args.warmup, args.runs)
            ours_memory = peak_memory(ours, x, mode, device, dtype) / 2 ** 20
            reference_memory = peak_memory(reference, x, mode, device, dtype) / 2 ** 20
            memory_ratio = f'{ours_memory / reference_memory:6.2f}' if reference_memory else f'{"-":>6}'
            print(f'{size:>10} {mode:>8} | {ours_time:8.3f} {reference_time:8.3f} {reference_time / ours_time:6.2f} | '
                  f'{work / ours_time / 1e9:12.1f} {work / reference_time / 1e9:7.1f} | '
                  f'{ours_memory:11.0f} {reference_memory:7.0f} {memory_ratio} | {difference:.1e}', flush=True)


if __name__ == '__main__':
    main()
