"""Parameters and FLOPs (multiply-accumulates) of a config's model for one image, without a data set.

    swin-backbones-flops mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco            # 1280 x 800, as the papers
    swin-backbones-flops configs/crossformer/crossformer-s-g7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py
    swin-backbones-flops CONFIG --shape 800 1333                          # height width (one value: a square)
    (or python tools/get_flops.py ...)

CONFIG is a config file or a config name of this package. The count follows the authors' get_flops.py: mmcv's
rules for convolutions, linear layers, norms, ReLUs, pooling and upsampling over mmdet 2's / mmseg 0.x's dummy
forward (a detector's RoI heads on 1000 proposals, mask heads on 100; a segmentor's decode head on the whole
image), plus the attention products q @ k^T and attn @ v. Default size: 1280 x 800 (height x width) for
detectors, 512 x 2048 for segmentors. The last line gives the parameters in M and the FLOPs in G.
"""
import argparse
import sys

from mmengine.config import DictAction

from ..flops import count_flops
from . import command_line


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-flops', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='a config file, or the name of one of the package (.py optional)')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIDE',
                        help='input height and width in pixels, or one side for a square')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error(f'--shape takes a height and a width, or one side; got {len(args.shape)} values')
    shape = None if args.shape is None else args.shape[0] if len(args.shape) == 1 else tuple(args.shape)
    result = count_flops(args.config, shape=shape, cfg_options=args.cfg_options)
    height, width = result.shape
    print(f'input: 1 x 3 x {height} x {width} (height x width)')
    print(f'{"module":<20} {"params (M)":>11} {"FLOPs (G)":>10}')
    for name, (params, flops) in result.parts.items():
        if params or flops:
            print(f'{name:<20} {params / 1e6:>11.3f} {flops / 1e9:>10.2f}')
    print(f'attention products q @ k^T and attn @ v: {result.attention_flops / 1e9:.2f}G of the FLOPs')
    print(result.summary())
    return 0


if __name__ == '__main__':
    sys.exit(main())
