"""Extract the feature pyramid of every image in a folder, one output file per image.

    swin-backbones-extract images/ features/ --backbone swin-t --checkpoint swin_tiny.pth
    (or python tools/extract_features.py ...)

Writes features/<relative path>.npz (arrays 'stride4', 'stride8', 'stride16', 'stride32', each
(C, h, w) float32) or .pt (a dict {4: tensor, ...}). Outputs that already exist are skipped, so an
interrupted run continues where it stopped; each file is written atomically.
"""
import argparse
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from ..api import create_backbone, extract_features, list_backbones
from ..files import atomic_output

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def find_images(folder: str):
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield os.path.relpath(os.path.join(root, name), folder)


def save_atomically(pyramid, path: str, file_format: str) -> None:
    with atomic_output(path) as temporary, open(temporary, 'wb') as file:
        if file_format == 'npz':
            np.savez(file, **{f'stride{s}': level[0].numpy() for s, level in pyramid.items()})
        else:
            torch.save({s: level[0] for s, level in pyramid.items()}, file)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-extract', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', help='folder of images (searched recursively)')
    parser.add_argument('output', help='folder for the feature files')
    parser.add_argument('--backbone', default='swin-t', choices=list_backbones())
    parser.add_argument('--checkpoint', help='backbone weights in any supported layout (random without)')
    parser.add_argument('--format', default='npz', choices=['npz', 'pt'])
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    images = list(find_images(args.images))
    if not images:
        print(f'error: no images ({", ".join(IMAGE_EXTENSIONS)}) under {args.images}', file=sys.stderr)
        return 1
    outputs = {name: os.path.join(args.output, os.path.splitext(name)[0] + '.' + args.format) for name in images}
    todo = [name for name in images if not os.path.exists(outputs[name])]
    print(f'{len(images)} images, {len(images) - len(todo)} already done, {len(todo)} to extract')
    if not todo:
        return 0
    backbone = create_backbone(args.backbone, checkpoint=args.checkpoint).to(args.device)
    with tqdm(total=len(todo), unit='image') as progress:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            pyramids = extract_features(backbone, [os.path.join(args.images, n) for n in chunk],
                                        batch_size=args.batch_size)
            for name, pyramid in zip(chunk, pyramids):
                save_atomically(pyramid, outputs[name], args.format)
            progress.update(len(chunk))
    return 0


if __name__ == '__main__':
    sys.exit(main())
