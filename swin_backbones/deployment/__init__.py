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
from .errors import DeployError, require_mmdeploy
from .run import deploy

__all__ = ['DeployError', 'deploy', 'require_mmdeploy']
