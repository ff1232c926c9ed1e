"""Convert a Swin or CrossFormer checkpoint of any supported layout to this package's layout.

Reads the authors' releases, mmdet/mmseg and timm checkpoints and whole detector/segmentor checkpoints
(only the backbone is kept), and writes ``{'state_dict': ..., 'meta': ...}`` that
``init_cfg=dict(type='Pretrained', checkpoint=DST)`` loads directly.

    swin-backbones-convert swin_tiny_patch4_window7_224.pth swin-t.pth
    (or python tools/convert_checkpoint.py ...)
"""
import argparse
import sys

from ..checkpoint import CheckpointError
from ..convert import convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-convert', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (never modified)')
    parser.add_argument('dst', help='where to write the converted checkpoint (written atomically)')
    parser.add_argument('--prefix', help="keep only keys under this prefix, e.g. 'backbone.' "
                                         '(whole detector checkpoints are recognised without it)')
    parser.add_argument('--no-weights-only', action='store_true',
                        help='allow arbitrary unpickling: only for a legacy file you trust, since it can run code')
    args = parser.parse_args(argv)
    try:
        conversion = convert_checkpoint(args.src, args.dst, prefix=args.prefix,
                                        weights_only=not args.no_weights_only)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(conversion.describe())
    return 0


if __name__ == '__main__':
    sys.exit(main())
