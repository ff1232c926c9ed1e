"""Exporting a backbone to ONNX with dynamic batch, height and width, and checking it in onnxruntime.

    from swin_backbones import check_onnx, create_backbone, export_onnx
    backbone = create_backbone('swin-t', checkpoint='swin_tiny_patch4_window7_224.pth')
    export_onnx(backbone, 'swin-t.onnx')
    for (height, width), diffs in check_onnx('swin-t.onnx', backbone, [(289, 353), (512, 640)]):
        print(height, width, max(diffs))

The model takes 'image', (N, 3, H, W) float32 normalised as for the PyTorch backbone, and returns
'stride4', 'stride8', 'stride16', 'stride32' (those of out_indices), each (N, C, ceil(H/s), ceil(W/s)),
padding internally exactly like the PyTorch backbone. Swin accepts any H, W. CrossFormer falls back to
another attention layout when a stage's map is not larger than its group size, a branch an ONNX graph
cannot take, so its exported model is only valid for H, W >= :func:`minimum_input_size` (225 px for
the usual G = 7); :func:`export_onnx` refuses to trace at a smaller size and records the minimum in
the model's metadata ('minimum_input_size'). The command line is ``swin-backbones-export-onnx``
(``tools/export_onnx.py``).
"""
import os
import sys
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .api import create_backbone, list_backbones
from .files import atomic_output, check_output_path
from .models.base import PyramidBackbone
from .registry import build_backbone_from_cfg, registered_backbones
from .version import __version__

__all__ = ['EXPORTERS', 'ExportError', 'export_onnx', 'check_onnx', 'build_backbone', 'minimum_input_size',
           'default_sample_size', 'check_sizes', 'output_names']

EXPORTERS = ('torchscript', 'dynamo')
DEFAULT_OPSET = {'torchscript': 17, 'dynamo': 18}


class ExportError(Exception):
    """A backbone, size or option that cannot be exported as asked."""


def output_names(backbone: PyramidBackbone) -> List[str]:
    return [f'stride{stride}' for stride in backbone.out_strides]


def minimum_input_size(backbone: PyramidBackbone) -> int:
    """Smallest H and W the exported graph computes what the PyTorch backbone computes for (see the
    backbone's ``minimum_input_size``: CrossFormer's small-map layout is a branch on the input size)."""
    return backbone.minimum_input_size()


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
        raise ExportError(f'unknown backbone {spec!r}: give one of {", ".join(list_backbones())} '
                          'or a config file (.py)')
    if not os.path.isfile(spec):
        raise ExportError(f'config file {spec} does not exist')
    from mmengine.config import Config
    cfg = Config.fromfile(spec)
    backbone_cfg = cfg.get('model', {}).get('backbone') if isinstance(cfg.get('model'), dict) else None
    if not backbone_cfg:
        raise ExportError(f'{spec} has no model.backbone')
    backbone_cfg = dict(backbone_cfg)
    backbone_type = str(backbone_cfg.get('type', '')).split('.')[-1]
    known = [backbone.__name__ for backbone in registered_backbones()]
    if backbone_type not in known:
        raise ExportError(f'{spec}: model.backbone is {backbone_cfg.get("type")!r}, not a swin_backbones '
                          f'backbone ({", ".join(known)})')
    backbone_cfg.pop('pretrained', None)
    backbone_cfg['init_cfg'] = (dict(type='Pretrained', checkpoint=os.fspath(checkpoint))
                                if checkpoint is not None else None)
    backbone_cfg.update(overrides, type=backbone_type)
    backbone = build_backbone_from_cfg(backbone_cfg)
    backbone.init_weights()
    return backbone.eval()


def export_onnx(backbone: PyramidBackbone, path: str, sample_size: Optional[Tuple[int, int]] = None,
                exporter: str = 'torchscript', opset: Optional[int] = None, force: bool = False,
                verify: Optional[Callable[[str], None]] = None) -> float:
    """Writes ``backbone`` as an ONNX model with dynamic batch, height and width to ``path``; returns the
    seconds the export took. The sample image (batch 2, :func:`default_sample_size` unless given) is only
    traced, its values do not matter. An existing ``path`` is only replaced with ``force=True``.

    The file appears only complete and, with ``verify``, only if ``verify(temporary_path)`` returns
    (e.g. a function that runs :func:`check_onnx` and raises when a difference is too large).
    """
    if exporter not in EXPORTERS:
        raise ExportError(f'exporter must be one of {EXPORTERS}, got {exporter!r}')
    check_output_path(path, force)
    minimum = minimum_input_size(backbone)
    height, width = sample_size or default_sample_size(backbone)
    if min(height, width) < minimum:
        raise ExportError(f'this {type(backbone).__name__} can only be exported for inputs of at least {minimum} x '
                          f'{minimum} px (below that its layout is a shape-dependent branch: see its '
                          f'minimum_input_size); the sample size {height} x {width} is smaller')
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

    Each marks a Python decision on a size that the graph freezes at the sample size: check_onnx shows
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
    (height, width); returns, per size, the difference of each output (in ``output_names`` order) relative
    to its magnitude: ``max |onnxruntime - PyTorch| / max |PyTorch|``. Float rounding grows with the values, so
    this is what stays comparable between models and checkpoints."""
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(os.fspath(path), options, providers=['CPUExecutionProvider'])
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
            reference = theirs.numpy()
            diffs.append(float(np.abs(ours - reference).max() / max(np.abs(reference).max(), 1e-6)))
        results.append(((height, width), diffs))
    return results
