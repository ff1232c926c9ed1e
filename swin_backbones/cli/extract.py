"""Extract the feature pyramid of every image in a folder, one output file per image.

    swin-backbones-extract images/ features/ --backbone swin-t --checkpoint swin_tiny.pth
    (or python tools/extract_features.py ...)

Writes features/<relative path of the image, extension included>.npz (e.g. features/sub/a.jpg.npz, so
that a.jpg and a.png never share an output), with arrays 'stride4', 'stride8', 'stride16', 'stride32',
each (C, h, w) float32, or .pt (a dict {4: tensor, ...}). Outputs that already exist are skipped, so an
interrupted run continues where it stopped; each file is written atomically. An image that cannot be read
is skipped with a warning and counted (it is tried again by the next run); --strict stops at it instead.
"""
import argparse
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

from ..api import create_backbone, extract_features, list_backbones, read_image_file
from ..files import atomic_output
from . import command_line, positive_int

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def find_images(folder: str):
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.lower().endswith(IMAGE_EXTENSIONS):
                yield os.path.relpath(os.path.join(root, name), folder)


def output_path(output: str, image: str, file_format: str) -> str:
    """Where the features of ``image`` (a path relative to the input folder) go: its whole relative path,
    extension included, plus the format's, so that no two images share a file."""
    return os.path.join(output, f'{image}.{file_format}')


def save_atomically(pyramid, path: str, file_format: str) -> None:
    with atomic_output(path) as temporary, open(temporary, 'wb') as file:
        if file_format == 'npz':
            np.savez(file, **{f'stride{s}': level[0].numpy() for s, level in pyramid.items()})
        else:
            torch.save({s: level[0] for s, level in pyramid.items()}, file)


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-extract', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', help='folder of images (searched recursively)')
    parser.add_argument('output', help='folder for the feature files')
    parser.add_argument('--backbone', default='swin-t', choices=list_backbones())
    parser.add_argument('--checkpoint', help='backbone weights in any supported layout (random without)')
    parser.add_argument('--format', default='npz', choices=['npz', 'pt'])
    parser.add_argument('--batch-size', type=positive_int, default=4)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--strict', action='store_true',
                        help='stop at the first image that cannot be read (default: skip it with a warning)')
    args = parser.parse_args(argv)

    if not os.path.isdir(args.images):
        raise NotADirectoryError(f'{args.images} is not a folder')
    images = list(find_images(args.images))
    if not images:
        raise FileNotFoundError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {args.images}')
    todo = [name for name in images if not os.path.exists(output_path(args.output, name, args.format))]
    print(f'{len(images)} images, {len(images) - len(todo)} already done, {len(todo)} to extract')
    if not todo:
        return 0
    backbone = create_backbone(args.backbone, checkpoint=args.checkpoint).to(args.device)
    skipped = 0
    with tqdm(total=len(todo), unit='image') as progress:
        for start in range(0, len(todo), args.batch_size):
            chunk = todo[start:start + args.batch_size]
            readable, pixels = [], []
            for name in chunk:
                path = os.path.join(args.images, name)
                try:
                    pixels.append(read_image_file(path))
                except (OSError, ValueError) as error:
                    if args.strict:
                        raise OSError(f'cannot read {path}: {error}') from error
                    skipped += 1
                    tqdm.write(f'warning: skipping {path}, which cannot be read: {error}', file=sys.stderr)
                    continue
                readable.append(name)
            for name, pyramid in zip(readable, extract_features(backbone, pixels, batch_size=args.batch_size)):
                save_atomically(pyramid, output_path(args.output, name, args.format), args.format)
            progress.update(len(chunk))
    print(f'extracted {len(todo) - skipped} images'
          + (f', skipped {skipped} that could not be read' if skipped else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
