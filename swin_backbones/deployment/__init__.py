"""Deploying whole detectors and segmentors with this package's backbones to ONNX Runtime, through mmdeploy.

    from swin_backbones import deploy
    report = deploy('configs/swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco.py', 'epoch_12.pth', 'deploy/swin-t')
    print('\\n'.join(report.lines()))

writes ``deploy/swin-t/end2end.onnx`` (dynamic batch, height and width) with the deploy and model configs
(``deploy_config.py``, ``model_config.py``) that ``mmdeploy.apis.inference_model`` takes and the SDK's
``pipeline.json``, ``deploy.json`` and ``detail.json``, then checks the model: onnxruntime against the same
computation in PyTorch on images at sizes other than the export size (and a batch of two), within fixed
limits (:mod:`.check`). The directory appears only complete and checked. The command line is
``swin-backbones-deploy`` (``tools/deploy.py``).

mmdeploy 1.3.1 is used as a library: its deploy-time rewrites of mmdet's and mmseg's models (heads, NMS,
RoIAlign), its task processors and its onnxruntime wrapper. What it gets wrong on torch 2.13 and for these
models is done here (:mod:`.rewrites`), registered into mmdeploy's rewriter registries only for the length of
a deployment. Importing ``swin_backbones`` imports none of it: mmdeploy and onnxruntime are the optional
``deploy`` extra.
"""
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from ..export import ExportError

if TYPE_CHECKING:  # pragma: no cover
    from .check import DeployReport

__all__ = ['DeployError', 'deploy']

INSTALL_HINT = ('pip install "swin_backbones[deploy]" && pip install --no-deps mmdeploy==1.3.1 '
                '(or: bash tools/install.sh --with deploy)')


class DeployError(ExportError):
    """A model, checkpoint, option or result that cannot be deployed as asked."""


def deploy(config, checkpoint: str, out: str, shape: Optional[Tuple[int, int]] = None, dynamic: bool = True,
           images: Optional[Sequence[str]] = None, force: bool = False, cfg_options: Optional[dict] = None,
           backend: str = 'onnxruntime') -> 'DeployReport':
    """Exports the detector or segmentor of ``config`` (a path or an mmengine Config) with the weights of
    ``checkpoint`` to ``out`` and checks it; returns the check's :class:`~.check.DeployReport`.

    ``shape`` (H, W) is the size of the image traced for the export (default: the test pipeline's scale);
    with ``dynamic=False`` it is the fixed input size that the pipeline resizes every image to. The check
    runs on ``images`` (paths) or on generated ones at two other sizes; a failed check raises
    :class:`DeployError` and leaves nothing at ``out``. An existing ``out`` is only replaced with ``force``.
    """
    from .run import deploy_model
    return deploy_model(config, checkpoint, out, shape=shape, dynamic=dynamic, images=images, force=force,
                        cfg_options=cfg_options, backend=backend)


def require_mmdeploy() -> None:
    """Raises :class:`DeployError` naming what to install when mmdeploy or onnxruntime is missing."""
    missing = []
    for module in ('mmdeploy', 'onnxruntime', 'onnx'):
        try:
            __import__(module)
        except ImportError as error:
            missing.append(f'{module} ({error})')
    if missing:
        raise DeployError(f'deploying needs {", ".join(missing)}: install the deploy extra: {INSTALL_HINT}')

