"""Export a Swin or CrossFormer backbone to ONNX with dynamic batch, height and width.

    python tools/export_onnx.py swin-t swin-t.onnx --checkpoint swin_tiny_patch4_window7_224.pth --check
    python tools/export_onnx.py configs/crossformer/mask-rcnn_crossformer-s-g7_fpn_1x_coco.py cf-s.onnx \\
        --checkpoint work_dirs/mask-rcnn_crossformer-s/epoch_12.pth --set out_indices=1,2,3

The model takes 'image', (N, 3, H, W) float32 normalised as for the PyTorch backbone, and returns
'stride4', 'stride8', 'stride16', 'stride32' (those of out_indices), each (N, C, ceil(H/s), ceil(W/s)),
padding internally exactly like the PyTorch backbone. Swin accepts any H, W. CrossFormer falls back to
another attention layout when a stage's map is not larger than its group size, a branch an ONNX graph
cannot take, so the exported model is only valid for H, W >= max over stages of G * stride + 1
(225 px for the usual G = 7); the tool refuses to trace at a smaller size, prints the minimum and
records it in the model's metadata ('minimum_input_size').

--check runs the exported model in onnxruntime at the sample size and at a second size with other
padding, and fails unless every output is within --tolerance of PyTorch. The output is written
atomically and an existing file is only replaced with --force.
"""
import argparse
import ast
import os
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from swin_backbones import __version__
from swin_backbones.api import create_backbone, list_backbones
from swin_backbones.checkpoint import CheckpointError
from swin_backbones.files import atomic_output
from swin_backbones.models.base import PyramidBackbone
from swin_backbones.models.crossformer import CrossFormer

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = {'torchscript': 17, 'dynamo': 18}


class ExportError(Exception):
    """A backbone, size or option that cannot be exported as asked."""


def output_names(backbone: PyramidBackbone) -> List[str]:
    return [f'stride{4 * 2 ** index}' for index in backbone.out_indices]


def minimum_input_size(backbone: PyramidBackbone) -> int:
    """Smallest H and W the exported graph computes what the PyTorch backbone computes for.

    A CrossFormer stage with map side L <= its group size G switches to its small-map layout, a Python
    branch the graph freezes at the traced size. Stage i's side is ceil(H / (4 * 2**i)), so every stage
    stays on the normal path exactly when H > G_i * 4 * 2**i for all i. Swin has no such branch.
    """
    if isinstance(backbone, CrossFormer):
        return max(stage.group_size * 4 * 2 ** i for i, stage in enumerate(backbone.layers)) + 1
    return 1


def default_sample_size(backbone: PyramidBackbone) -> Tuple[int, int]:
    """An odd, non-square size (padding at every level) of at least the minimum: 289 x 353 for G = 7."""
    side = max(289, minimum_input_size(backbone))
    side += 1 - side % 2
    return side, side + 64


def check_sizes(sample: Tuple[int, int]) -> List[Tuple[int, int]]:
    """The sample size and a larger one with other remainders modulo 4, 7, 8 and 32."""
    return [sample, (sample[0] + 35, sample[1] + 27)]


class _Features(nn.Module):
    """The backbone's features as a tuple, without its Python-side input checks (not expressible in ONNX)."""

    def __init__(self, backbone: PyramidBackbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, image: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(self.backbone._forward_features(image))


def build_backbone(spec: str, checkpoint: Optional[str] = None, overrides: Optional[Dict] = None) -> PyramidBackbone:
    """A backbone from a name of :func:`list_backbones` or a config file's ``model.backbone``, in eval mode.

    Weights come from ``checkpoint`` only (any supported layout, whole detector/segmentor checkpoints
    included); a config's own ``init_cfg`` is ignored. Without a checkpoint the weights are random.
    """
    overrides = dict(overrides or {})
    if spec in list_backbones():
        return create_backbone(spec, checkpoint=checkpoint, **overrides)
    if not spec.endswith('.py'):
        raise ExportError(f'unknown backbone {spec!r}: give one of {", ".join(list_backbones())} or a config file (.py)')
    if not os.path.isfile(spec):
        raise ExportError(f'config file {spec} does not exist')
    from mmengine.config import Config

    from swin_backbones.registry import MODELS
    cfg = Config.fromfile(spec)
    backbone_cfg = cfg.get('model', {}).get('backbone') if isinstance(cfg.get('model'), dict) else None
    if not backbone_cfg:
        raise ExportError(f'{spec} has no model.backbone')
    backbone_cfg = dict(backbone_cfg)
    backbone_type = str(backbone_cfg.get('type', '')).split('.')[-1]
    if backbone_type not in ('SwinTransformer', 'SwinTransformerV2', 'CrossFormer'):
        raise ExportError(f'{spec}: model.backbone is {backbone_cfg.get("type")!r}, not a swin_backbones '
                          'SwinTransformer, SwinTransformerV2 or CrossFormer')
    backbone_cfg.pop('pretrained', None)
    backbone_cfg['init_cfg'] = (dict(type='Pretrained', checkpoint=os.fspath(checkpoint))
                                if checkpoint is not None else None)
    backbone_cfg.update(overrides, type=backbone_type)
    backbone = MODELS.build(backbone_cfg)
    backbone.init_weights()
    return backbone.eval()


def export_onnx(backbone: PyramidBackbone, path: str, sample_size: Optional[Tuple[int, int]] = None,
                exporter: str = 'torchscript', opset: Optional[int] = None, force: bool = False,
                verify: Optional[Callable[[str], None]] = None) -> float:
    """Writes ``backbone`` as an ONNX model with dynamic batch, height and width to ``path``; returns the
    seconds the export took. The sample image (batch 2) is only traced, its values do not matter.

    The file appears only complete and, with ``verify``, only if ``verify(temporary_path)`` returns.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    if os.path.exists(path) and not force:
        raise ExportError(f'{path} exists; pass --force to replace it')
    minimum = minimum_input_size(backbone)
    height, width = sample_size or default_sample_size(backbone)
    if min(height, width) < minimum:
        raise ExportError(f'{type(backbone).__name__} with group sizes {backbone.group_size} can only be exported '
                          f'for inputs of at least {minimum} x {minimum} px (below that a stage uses the small-map '
                          f'attention layout, a shape-dependent branch); the sample size {height} x {width} is smaller')
    opset = opset or DEFAULT_OPSET[exporter]
    model = _Features(backbone.eval()).eval()
    names = output_names(backbone)
    image = torch.randn(2, backbone.in_channels, height, width, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    with atomic_output(path, suffix='.onnx') as temporary:
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            if exporter == 'torchscript':
                dynamic_axes = {'image': {0: 'batch', 2: 'height', 3: 'width'}}
                dynamic_axes.update({name: {0: 'batch', 2: f'{name}_height', 3: f'{name}_width'} for name in names})
                torch.onnx.export(model, (image,), temporary, dynamo=False, opset_version=opset,
                                  input_names=['image'], output_names=names, dynamic_axes=dynamic_axes)
            else:
                dim = torch.export.Dim
                shapes = {'image': {0: dim('batch', min=1), 2: dim('height', min=minimum),
                                    3: dim('width', min=minimum)}}
                program = torch.onnx.export(model, (image,), dynamo=True, opset_version=opset, external_data=False,
                                            input_names=['image'], output_names=names, dynamic_shapes=shapes)
                program.save(temporary)
        elapsed = time.perf_counter() - start
        _report_unexpected_tracer_warnings(caught)
        import onnx
        model_proto = onnx.load(temporary)
        onnx.helper.set_model_props(model_proto, {'producer': f'swin_backbones {__version__}',
                                                  'minimum_input_size': str(minimum)})
        onnx.save(model_proto, temporary)
        onnx.checker.check_model(temporary)
        if verify is not None:
            verify(temporary)
    return elapsed


def _report_unexpected_tracer_warnings(caught) -> None:
    """Shows tracer warnings other than the CrossFormer small-map test, which the minimum size covers.

    Each marks a Python decision on a size that the graph freezes at the sample size: --check shows
    whether it matters.
    """
    tracer_warning = getattr(torch.jit, 'TracerWarning', ())
    for warning in caught:
        if not (tracer_warning and issubclass(warning.category, tracer_warning)):
            continue
        if os.path.basename(warning.filename) == 'crossformer.py':
            continue
        print(f'warning: {warning.filename}:{warning.lineno}: {str(warning.message).splitlines()[0]}',
              file=sys.stderr)


def check_onnx(path: str, backbone: PyramidBackbone, sizes: Sequence[Tuple[int, int]], batch: int = 2,
               seed: int = 0, threads: Optional[int] = None) -> List[Tuple[Tuple[int, int], List[float]]]:
    """Runs the ONNX model in onnxruntime and the backbone in PyTorch on the same random images of each
    size; returns, per size, the max abs difference of each output."""
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    names = [output.name for output in session.get_outputs()]
    generator = torch.Generator().manual_seed(seed)
    results = []
    for height, width in sizes:
        image = torch.randn(batch, backbone.in_channels, height, width, generator=generator)
        with torch.no_grad():
            expected = backbone(image)
        got = session.run(names, {'image': image.numpy()})
        diffs = []
        for name, ours, theirs in zip(names, got, expected):
            if ours.shape != tuple(theirs.shape):
                raise ExportError(f'{name} at {height} x {width}: onnxruntime gave shape {ours.shape}, '
                                  f'PyTorch {tuple(theirs.shape)}')
            diffs.append(float(np.abs(ours - theirs.numpy()).max()))
        results.append(((height, width), diffs))
    return results


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    parser.add_argument('--tolerance', type=float, default=1e-4, help='max abs difference --check accepts')
    parser.add_argument('--force', action='store_true', help='replace an existing output file')
    args = parser.parse_args(argv)

    if os.path.exists(args.output) and not args.force:
        print(f'error: {args.output} exists; pass --force to replace it', file=sys.stderr)
        return 1
    results = []

    def check(path: str) -> None:
        try:
            results.extend(check_onnx(path, backbone, check_sizes(sample)))
        except ImportError as error:
            raise ExportError(f'--check needs onnxruntime ({error})') from None
        worst = 0.0
        for (height, width), diffs in results:
            print(f'check {height} x {width}: max |onnxruntime - PyTorch| '
                  + ', '.join(f'{name} {diff:.1e}' for name, diff in zip(output_names(backbone), diffs)))
            worst = max(worst, *diffs)
        if worst > args.tolerance:
            raise ExportError(f'max difference {worst:.1e} exceeds the tolerance {args.tolerance:.0e}; '
                              f'{args.output} was not written')

    try:
        backbone = build_backbone(args.backbone, args.checkpoint, dict(args.overrides))
        minimum = minimum_input_size(backbone)
        sample = args.sample_size or default_sample_size(backbone)
        seconds = export_onnx(backbone, args.output, sample, args.exporter, args.opset, force=args.force,
                              verify=check if args.check else None)
    except (ExportError, CheckpointError, FileNotFoundError, ValueError, TypeError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print(f'wrote {args.output} ({os.path.getsize(args.output) / 2 ** 20:.1f} MiB, exported in {seconds:.1f} s '
          f'with the {args.exporter} exporter): image (N, {backbone.in_channels}, H, W) -> '
          + ', '.join(output_names(backbone)))
    print(f'valid for H, W >= {minimum}' if minimum > 1 else 'valid for any H, W')
    return 0


if __name__ == '__main__':
    sys.exit(main())
