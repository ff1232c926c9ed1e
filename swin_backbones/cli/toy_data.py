"""Write the toy data sets (circles, squares and triangles on textured backgrounds) that configs/toy/ train on.

    swin-backbones-make-toy-data                          # -> work_dirs/toy_data/{coco,ade}
    swin-backbones-make-toy-data --out DIR --seed 3 --num-train 400 --num-val 100 --size 192
    (or python tools/make_toy_data.py ...)

coco/ is an instance segmentation set in COCO format, ade/ a semantic segmentation set in ADE20K's
layout, with the same classes. The toy configs read DIR from the environment variable TOY_DATA
(default work_dirs/toy_data). The output depends only on the arguments.
"""
import argparse
import os.path as osp
import sys

from ..toy_data import make_toy_data
from . import command_line


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-make-toy-data', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='work_dirs/toy_data', help='output folder (default: %(default)s)')
    parser.add_argument('--num-train', type=int, default=200, help='training images per set')
    parser.add_argument('--num-val', type=int, default=50, help='validation images per set')
    parser.add_argument('--size', type=int, default=128, help='image height and width in pixels')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    summary = make_toy_data(args.out, args.num_train, args.num_val, args.size, args.seed)
    print(f"COCO-format instance set: {osp.join(args.out, 'coco')} "
          f"(train {summary['coco']['train']['images']} images / {summary['coco']['train']['objects']} objects, "
          f"val {summary['coco']['val']['images']} / {summary['coco']['val']['objects']})")
    print(f"ADE20K-layout semantic set: {osp.join(args.out, 'ade')} "
          f"(training {summary['ade']['training']['images']}, "
          f"validation {summary['ade']['validation']['images']} images)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
