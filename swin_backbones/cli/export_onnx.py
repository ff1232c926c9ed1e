"""Export a Swin or CrossFormer backbone to ONNX with dynamic batch, height and width.

    swin-backbones-export-onnx swin-t swin-t.onnx --checkpoint swin_tiny_patch4_window7_224.pth --check
    swin-backbones-export-onnx configs/crossformer/mask-rcnn_crossformer-s-g7_fpn_1x_coco.py cf-s.onnx \\
        --checkpoint work_dirs/mask-rcnn_crossformer-s/epoch_12.pth --set out_indices=1,2,3

(or python tools/export_onnx.py ...). The model takes 'image', (N, 3, H, W) float32 normalised as for
the PyTorch backbone, and returns 'stride4', 'stride8', 'stride16', 'stride32' (those of out_indices),
each (N, C, ceil(H/s), ceil(W/s)), padding internally exactly like the PyTorch backbone. Swin accepts
any H, W. CrossFormer falls back to another attention layout when a stage's map is not larger than its
group size, a branch an ONNX graph cannot take, so the exported model is only valid for
H, W >= max over stages of G * stride + 1 (225 px for the usual G = 7); the tool refuses to trace at a
smaller size, prints the minimum and records it in the model's metadata ('minimum_input_size').

--check runs the exported model in onnxruntime at the sample size and at a second size with other
padding, and fails unless every output is within --tolerance of PyTorch, relative to the output's
largest magnitude. The output is written
atomically and an existing file is only replaced with --force.
"""
import argparse
import ast
import os
import sys
from typing import Tuple

from ..api import list_backbones
from ..export import (EXPORTERS, ExportError, build_backbone, check_onnx, check_sizes, default_sample_size,
                      export_onnx, minimum_input_size, output_names)
from ..files import check_output_path
from . import command_line


def _size(text: str) -> Tuple[int, int]:
    try:
        parts = [int(part) for part in text.lower().split('x')]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f'expected HxW (e.g. 512x640) or one side, got {text!r}')
    return parts[0], parts[1]


def _override(text: str) -> Tuple[str, object]:
    key, sep, value = text.partition('=')
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f'expected KEY=VALUE (e.g. out_indices=1,2,3), got {text!r}')
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value  # a plain string, e.g. lda_type=pp


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog='swin-backbones-export-onnx', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('backbone', help=f'a name ({", ".join(list_backbones())}) or a config file whose '
                                         'model.backbone is a swin_backbones backbone')
    parser.add_argument('output', help='where to write the .onnx file (written atomically)')
    parser.add_argument('--checkpoint', help='backbone weights in any supported layout, or a whole detector/'
                                             'segmentor checkpoint (random weights without)')
    parser.add_argument('--set', dest='overrides', metavar='KEY=VALUE', type=_override, action='append', default=[],
                        help='constructor argument, e.g. --set out_indices=1,2,3 (repeatable)')
    parser.add_argument('--exporter', choices=EXPORTERS, default='torchscript',
                        help="torch.onnx's TorchScript tracer (fast) or its torch.export-based exporter "
                             '(needs onnxscript; about a minute or more)')
    parser.add_argument('--opset', type=int, help='ONNX opset (default 17 with torchscript, 18 with dynamo)')
    parser.add_argument('--sample-size', type=_size, metavar='HxW',
                        help='size of the traced sample image (default: odd sides of at least the minimum)')
    parser.add_argument('--check', action='store_true',
                        help='compare onnxruntime with PyTorch at the sample size and a second size')
    parser.add_argument('--tolerance', type=float, default=1e-4,
                        help='max |onnxruntime - PyTorch| / max |PyTorch| that --check accepts')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)

    check_output_path(args.output, args.force)  # before the backbone is built and traced
    results = []

    def check(path: str) -> None:
        try:
            results.extend(check_onnx(path, backbone, check_sizes(sample)))
        except ImportError as error:
            raise ExportError(f'--check needs onnxruntime ({error})') from None
        worst = 0.0
        for (height, width), diffs in results:
            print(f'check {height} x {width}: max |onnxruntime - PyTorch| / max |PyTorch| '
                  + ', '.join(f'{name} {diff:.1e}' for name, diff in zip(output_names(backbone), diffs)))
            worst = max(worst, *diffs)
        if worst > args.tolerance:
            raise ExportError(f'relative difference {worst:.1e} exceeds the tolerance {args.tolerance:.0e}; '
                              f'{args.output} was not written')

    backbone = build_backbone(args.backbone, args.checkpoint, dict(args.overrides))
    minimum = minimum_input_size(backbone)
    sample = args.sample_size or default_sample_size(backbone)
    seconds = export_onnx(backbone, args.output, sample, args.exporter, args.opset, force=args.force,
                          verify=check if args.check else None)
    print(f'wrote {args.output} ({os.path.getsize(args.output) / 2 ** 20:.1f} MiB, exported in {seconds:.1f} s '
          f'with the {args.exporter} exporter): image (N, {backbone.in_channels}, H, W) -> '
          + ', '.join(output_names(backbone)))
    print(f'valid for H, W >= {minimum}' if minimum > 1 else 'valid for any H, W')
    return 0


if __name__ == '__main__':
    sys.exit(main())
