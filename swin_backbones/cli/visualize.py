"""Render the feature pyramid of images: the input next to each level's first three principal components.

    swin-backbones-visualize photo.jpg --backbone swin-t --checkpoint swin_tiny.pth --out pictures/
    (or python tools/visualize_features.py ...)
"""
import argparse
import os
import sys

from ..api import create_backbone, extract_features, list_backbones, load_image
from ..visualization import render_pyramid
from . import command_line


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-visualize', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--backbone', default='swin-t', choices=list_backbones())
    parser.add_argument('--checkpoint', help='backbone weights in any supported layout (random without)')
    parser.add_argument('--out', default='pictures', help='folder for the PNG files')
    args = parser.parse_args(argv)

    backbone = create_backbone(args.backbone, checkpoint=args.checkpoint)
    os.makedirs(args.out, exist_ok=True)
    for path, pyramid in zip(args.images, extract_features(backbone, args.images)):
        image = load_image(path).permute(1, 2, 0).byte().numpy()
        target = os.path.join(args.out, os.path.splitext(os.path.basename(path))[0] + '_pyramid.png')
        render_pyramid(image, pyramid, target)
        print(target)
    return 0


if __name__ == '__main__':
    sys.exit(main())
