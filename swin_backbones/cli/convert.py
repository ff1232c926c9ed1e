"""Convert a Swin or CrossFormer checkpoint of any supported layout to this package's layout, or a Swin
checkpoint to mmdet's.

Reads the authors' releases, mmdet/mmseg/mmpretrain and timm checkpoints and whole detector/segmentor
checkpoints. By default it keeps only the backbone and writes ``{'state_dict': ..., 'meta': ...}`` in this
package's layout, which ``init_cfg=dict(type='Pretrained', checkpoint=DST)`` loads directly (every loader
also reads the other layouts; converting once makes a smaller file that loads without conversion).

``--to mmdet`` (Swin V1) writes the layout of mmdet's and mmseg's own SwinTransformer, which they load
strictly: a whole detector or segmentor checkpoint trained with this package's Swin keeps its other parts
and meta, so mmdet's config with mmdet's Swin (or mmdeploy, or another tool) takes it.

    swin-backbones-convert swin_tiny_patch4_window7_224.pth swin-t.pth
    swin-backbones-convert work_dirs/mask-rcnn_swin-t/epoch_12.pth mask-rcnn_mmdet-swin.pth --to mmdet
    (or python tools/convert_checkpoint.py ...)

The output is written atomically; an existing file is only replaced with --force, the input never.
"""
import argparse
import sys

from ..convert import LAYOUT_NAME, TARGET_LAYOUTS, convert_checkpoint
from . import command_line


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-convert', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='checkpoint to convert (never modified)')
    parser.add_argument('dst', help='where to write the converted checkpoint (written atomically)')
    parser.add_argument('--to', choices=TARGET_LAYOUTS, default=LAYOUT_NAME,
                        help="the layout to write (default: %(default)s); 'mmdet': mmdet's and mmseg's "
                             'SwinTransformer (Swin V1 only)')
    parser.add_argument('--prefix', help="keep only keys under this prefix, e.g. 'backbone.' "
                                         '(whole detector checkpoints are recognised without it)')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    parser.add_argument('--no-weights-only', action='store_true',
                        help='allow arbitrary unpickling: only for a legacy file you trust, since it can run code')
    args = parser.parse_args(argv)
    conversion = convert_checkpoint(args.src, args.dst, prefix=args.prefix, weights_only=not args.no_weights_only,
                                    to=args.to, force=args.force)
    print(conversion.describe())
    return 0


if __name__ == '__main__':
    sys.exit(main())
