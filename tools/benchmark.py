"""Speed and memory of this package's Swin against mmdet 3.3.0's, with identical weights, in one run.

    python tools/benchmark.py --sizes 800x1333 512x512 --batch 1 --mode forward train

For each size and mode it checks that the outputs agree, then prints the median time over --runs
runs (after --warmup), the ratio reference / ours (above 1: ours is faster), achieved GFLOP/s (from
the FLOPs of the forward pass, tripled for forward+backward) and the peak memory of the step
(activation bytes saved for backward, from autograd's saved-tensor hooks; CUDA peak allocation on a GPU).
"""
import argparse
import statistics
import time
from contextlib import contextmanager

import torch
from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin
from mmdet.models.backbones.swin import swin_converter
from torch.utils.flop_counter import FlopCounterMode

from swin_backbones import SwinTransformer

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}


def paired_swin(arch: str, device):
    ours = SwinTransformer(arch=arch, drop_path_rate=0.0)
    ours.init_weights()
    reference = MMDetSwin(embed_dims=ours.embed_dims, depths=ours.depths, num_heads=ours.num_heads,
                          drop_path_rate=0.0)
    reference.load_state_dict({k[len('backbone.'):]: v for k, v in swin_converter(ours.state_dict()).items()},
                              strict=False)
    return ours.to(device), reference.to(device)


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
    saved = 0

    def pack(tensor):
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), precision(device, dtype):
        model(x)
    return saved


def forward_flops(model, x):
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(x)
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='tiny', choices=['tiny', 'small', 'base', 'large'])
    parser.add_argument('--sizes', nargs='+', default=['800x1333', '512x512'])
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--mode', nargs='+', default=['forward', 'train'], choices=['forward', 'train'])
    parser.add_argument('--dtype', default='fp32', choices=sorted(DTYPES))
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    torch.manual_seed(0)
    ours, reference = paired_swin(args.arch, device)
    ours.eval()
    reference.eval()

    print(f'Swin-{args.arch[0].upper()} vs mmdet 3.3.0, batch {args.batch}, {args.dtype}, {device}, '
          f'{args.threads} threads, median of {args.runs}')
    print(f'{"size":>10} {"mode":>8} | {"ours s":>8} {"mmdet s":>8} {"ratio":>6} | {"GFLOP/s ours":>12} '
          f'{"mmdet":>7} | {"mem ours MB":>11} {"mmdet":>7} {"ratio":>6} | max |diff|')
    for size in args.sizes:
        height, width = (int(v) for v in size.split('x'))
        x = torch.randn(args.batch, 3, height, width, device=device)
        with torch.inference_mode(), precision(device, dtype):
            difference = max((a.float() - b.float()).abs().max().item() for a, b in zip(ours(x), reference(x)))
        flops = forward_flops(ours, x)
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
