"""Feature-pyramid demo: run the backbones on images of awkward sizes and check Swin against mmdet.

    bash tools/run.sh demo                      # random weights
    bash tools/run.sh demo --checkpoint swin_tiny_patch4_window7_224.pth

Prints, per image, the shapes of the 4x/8x/16x/32x maps, the time per forward, and the largest
difference from mmdet 3.3.0's own SwinTransformer given the same weights.
"""
import argparse
import time

import torch
from mmdet.models.backbones.swin import SwinTransformer as MMDetSwin
from mmdet.models.backbones.swin import swin_converter

from swin_backbones import SwinTransformer

SIZES = ((480, 640), (333, 517), (97, 131), (1, 1))


def synthetic_images(sizes, seed=0):
    """Smooth random images (sums of a few sinusoids), one per size, normalised like ImageNet inputs."""
    generator = torch.Generator().manual_seed(seed)
    for height, width in sizes:
        rows = torch.linspace(0, 1, height).view(1, height, 1)
        cols = torch.linspace(0, 1, width).view(1, 1, width)
        freq = torch.rand(3, 2, generator=generator) * 12
        phase = torch.rand(3, 1, 1, generator=generator) * 6.28
        image = torch.sin(freq[:, :1, None] * rows * 6.28 + phase) + torch.cos(freq[:, 1:, None] * cols * 6.28)
        yield image.unsqueeze(0)


def timed(model, x):
    start = time.perf_counter()
    with torch.inference_mode():
        outs = model(x)
    return outs, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', default='tiny', choices=['tiny', 'small', 'base', 'large'])
    parser.add_argument('--checkpoint', help='Swin checkpoint in any supported layout (random weights without it)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    init_cfg = dict(type='Pretrained', checkpoint=args.checkpoint) if args.checkpoint else None
    ours = SwinTransformer(arch=args.arch, drop_path_rate=0.0, init_cfg=init_cfg)
    torch.manual_seed(0)
    ours.init_weights()
    ours.eval()
    settings = dict(embed_dims=ours.embed_dims, depths=ours.depths, num_heads=ours.num_heads, drop_path_rate=0.0)
    reference = MMDetSwin(**settings)
    mmdet_state = {k[len('backbone.'):]: v for k, v in swin_converter(ours.state_dict()).items()}
    reference.load_state_dict(mmdet_state, strict=False)
    reference.eval()

    print(f'Swin-{args.arch[0].upper()} ({sum(p.numel() for p in ours.parameters()) / 1e6:.2f}M parameters, '
          f'{"weights from " + args.checkpoint if args.checkpoint else "random weights"}), '
          f'{args.threads} threads')
    print(f'{"image":>10} | {"stride 4":>14} {"stride 8":>14} {"stride 16":>14} {"stride 32":>14} | '
          f'{"ours s":>7} {"mmdet s":>7} | max |ours - mmdet|')
    for image in synthetic_images(SIZES):
        outs, ours_time = timed(ours, image)
        expected, reference_time = timed(reference, image)
        difference = max((a - b).abs().max().item() for a, b in zip(outs, expected))
        shapes = ' '.join(f'{"x".join(map(str, o.shape[1:])):>14}' for o in outs)
        print(f'{"x".join(map(str, image.shape[2:])):>10} | {shapes} | {ours_time:7.3f} {reference_time:7.3f} | '
              f'{difference:.2e}')


if __name__ == '__main__':
    main()
