"""Deploy a detector or segmentor with a Swin, Swin V2 or CrossFormer backbone to ONNX Runtime, and check it.

    swin-backbones-deploy configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py epoch_12.pth --out deploy/swin-t
    swin-backbones-deploy CONFIG CHECKPOINT --out DIR --image demo.jpg --image other.jpg

(or python tools/deploy.py ...). Writes DIR/end2end.onnx, with dynamic batch, height and width unless --static,
and what mmdeploy reads with it: deploy_config.py and model_config.py (for mmdeploy.apis.inference_model) and
the SDK's pipeline.json, deploy.json and detail.json. Then runs the ONNX model in onnxruntime and the same
computation in PyTorch on the --image files, or on generated images of two other sizes and a batch of two,
and prints the largest differences: boxes, scores, labels and mask IoU, or how many pixels of the
segmentation maps agree. DIR appears only when the check passes (the limits are fixed: see the docs) and
is only replaced with --force.

Needs the deploy extra: pip install "swin_backbones[deploy]" && pip install --no-deps mmdeploy==1.3.1.
"""
import argparse
import sys

from mmengine.config import DictAction

from ..deployment import deploy
from . import command_line, positive_int


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-deploy', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='an mmdet detector or mmseg segmentor config')
    parser.add_argument('checkpoint', help='its trained weights (a whole-model checkpoint)')
    parser.add_argument('--out', required=True, help='directory to write (must not exist unless --force)')
    parser.add_argument('--shape', nargs=2, type=positive_int, metavar=('H', 'W'),
                        help='size of the image traced for the export (default 480 640; the test pipeline '
                             'resizes it); with --static, the fixed input size (default: the test scale)')
    axes = parser.add_mutually_exclusive_group()
    axes.add_argument('--dynamic', dest='dynamic', action='store_true', default=True,
                      help='dynamic batch, height and width (the default)')
    axes.add_argument('--static', dest='dynamic', action='store_false',
                      help='fixed input shape: every image is resized to --shape')
    parser.add_argument('--image', dest='images', nargs='+', action='extend', metavar='IMG',
                        help='images to check on (default: generated ones)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override settings of the config, as in mmdet\'s tools')
    parser.add_argument('--force', action='store_true', help='replace an existing --out directory')
    args = parser.parse_args(argv)

    report = deploy(args.config, args.checkpoint, args.out, shape=tuple(args.shape) if args.shape else None,
                    dynamic=args.dynamic, images=args.images, force=args.force, cfg_options=args.cfg_options)
    print('\n'.join(report.lines()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
