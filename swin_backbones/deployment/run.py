"""The deployment itself: the model and its weights, the export, the files mmdeploy reads, and the check.

The export follows mmdeploy's ``torch2onnx`` (its task processor builds the model and the sample input, its
``patch_model`` and ``RewriterContext`` apply its rewrites) but calls ``torch.onnx.export`` here, with what
torch 2.13 needs: the TorchScript exporter (``dynamo=False``; torch 2.9 made the other the default) and
``autograd_inlining=False`` (mmdeploy's NMS and RoIAlign are autograd Functions with ONNX symbolics; torch
would trace their Python forward into the graph as well, and its peephole pass then fails on them).
"""
import contextlib
import copy
import logging
import os
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..checkpoint import CheckpointMismatchError, listed_keys, read_checkpoint, unwrap_state_dict
from ..files import atomic_output_dir, check_output_path
from ..toy_data import make_scene
from ..version import __version__
from .check import CheckResult, DeployReport, compare_detections, compare_segmentations
from .configs import BACKEND, OPSET, deploy_config, deployed_model_config, model_task, output_names, test_scale
from .errors import DeployError, require_mmdeploy
from .rewrites import registered_rewrites

__all__ = ['deploy', 'candidate_sizes', 'generated_image', 'read_image', 'EXPORT_IMAGE_SIZE']

# A VGA photo: what the test pipeline's Resize then makes of it is the traced input.
EXPORT_IMAGE_SIZE = (480, 640)
# Height / width of the generated check images, in the order tried (see candidate_sizes).
CHECK_ASPECT_RATIOS = (1.125, 0.625, 1.6, 0.5, 1.33, 0.8, 2.0, 0.4)
CHECKED_SIZES = 2
ONNX_FILE = 'end2end.onnx'
DEPLOY_CONFIG = 'deploy_config.py'
MODEL_CONFIG = 'model_config.py'


def load_model_config(config, cfg_options: Optional[dict] = None):
    from mmengine.config import Config
    if isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        if not os.path.isfile(config):
            raise FileNotFoundError(f'config file not found: {config}')
        cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def generated_image(height: int, width: int, seed: int) -> np.ndarray:
    """A toy scene (swin_backbones.toy_data) of height x width, as a BGR uint8 array (as a file is read)."""
    image, _ = make_scene(np.random.default_rng(seed), max(height, width))
    return np.ascontiguousarray(image[:height, :width, ::-1])


def read_image(path: str) -> np.ndarray:
    """An image file as the test pipeline's LoadImageFromFile reads it (BGR). The pipeline gets arrays only:
    mmdeploy's create_input switches its loader to arrays for good once it has seen one."""
    import mmcv
    image = mmcv.imread(path)
    if image is None:
        raise OSError(f'cannot read the image {path}')
    return image


def candidate_sizes(height: int, width: int) -> List[Tuple[int, int]]:
    """Image sizes of about the area of ``height`` x ``width`` with other aspect ratios (a keep-ratio Resize
    then gives inputs of other sizes too), neither side a multiple of 32."""
    def side(value: float) -> int:
        value = max(int(round(value)), 33)
        return value + 1 if value % 32 == 0 else value
    area = height * width
    return [(side((area * ratio) ** 0.5), side((area / ratio) ** 0.5)) for ratio in CHECK_ASPECT_RATIOS]


def load_weights(model: torch.nn.Module, checkpoint: str, config_name: str) -> None:
    """Loads a whole detector or segmentor checkpoint into ``model``: every weight, each of the right shape.

    The backbone's part goes through the backbone's own loading (any supported layout); everything else
    must match by name and shape.
    """
    state = unwrap_state_dict(read_checkpoint(checkpoint))
    own = model.state_dict()
    misshaped = [f'{key} {tuple(value.shape)} (model: {tuple(own[key].shape)})' for key, value in state.items()
                 if key in own and not key.startswith('backbone.') and value.shape != own[key].shape]
    if misshaped:
        raise CheckpointMismatchError(f'{checkpoint} does not fit {config_name}: mis-shaped {listed_keys(misshaped)}')
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointMismatchError(f'{checkpoint} does not fit {config_name}: '
                                      + '; '.join(f'{kind} {_by_part(keys)}' for kind, keys in
                                                  (('missing', missing), ('unexpected', unexpected)) if keys))


def _by_part(keys: Sequence[str]) -> str:
    """A few keys by name, more by the model part they belong to ('roi_head.* (16 tensors)')."""
    if len(keys) <= 5:
        return ', '.join(keys)
    parts: Dict[str, int] = {}
    for key in keys:
        part = key.split('.')[0]
        parts[part] = parts.get(part, 0) + 1
    return ', '.join(f'{part}.* ({count} tensors)' for part, count in parts.items())


def _rewritten_functions() -> set:
    """The functions mmdeploy rewrites for onnxruntime (with this package's rewrites registered)."""
    from mmdeploy.core import FUNCTION_REWRITER
    from mmdeploy.core.rewriters.rewriter_utils import collect_env, import_function
    from mmdeploy.utils import IR, Backend
    functions = set()
    for path, _ in FUNCTION_REWRITER._registry.get_records(collect_env(Backend.get(BACKEND), IR.ONNX)):
        with contextlib.suppress(Exception):
            functions.add(import_function(path)[0])
    return functions


def _needed_rewrites(model: torch.nn.Module, task: str) -> List[Tuple[torch.nn.Module, str]]:
    """(module, method) pairs whose batched, graph-friendly version only mmdeploy's rewrites provide."""
    if task == 'segmentation':
        return [(model, 'forward'), (model, 'predict')]
    needed = [(model, 'forward')]
    if hasattr(model, 'rpn_head'):
        needed.append((model.rpn_head, 'predict_by_feat'))
        roi_head = model.roi_head
        needed.append((roi_head, 'predict_bbox'))
        bbox_heads = roi_head.bbox_head if isinstance(roi_head.bbox_head, torch.nn.ModuleList) else [roi_head.bbox_head]
        needed.append((bbox_heads[-1], 'predict_by_feat'))
        if task == 'instance-seg':
            mask_heads = (roi_head.mask_head if isinstance(roi_head.mask_head, torch.nn.ModuleList)
                          else [roi_head.mask_head])
            needed += [(roi_head, 'predict_mask'), (mask_heads[-1], 'predict_by_feat')]
    elif hasattr(model, 'bbox_head'):
        needed.append((model.bbox_head, 'predict_by_feat'))
    return needed


def check_deployable(model: torch.nn.Module, task: str, config_name: str) -> None:
    rewritten = _rewritten_functions()
    for module, method in _needed_rewrites(model, task):
        function = getattr(type(module), method, None)
        if function not in rewritten:
            owner = function.__qualname__ if function is not None else f'{type(module).__name__}.{method}'
            raise DeployError(f'{config_name}: {type(module).__name__} cannot be deployed: mmdeploy has no rewrite '
                              f'of {owner} for {BACKEND}, which an end-to-end graph needs')


class _EndToEnd(torch.nn.Module):
    """The model's predict mode as a function of the image batch alone (what is traced)."""

    def __init__(self, model: torch.nn.Module, data_samples):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, input: torch.Tensor):
        return self.model(input, data_samples=copy.deepcopy(self.data_samples), mode='predict')


@contextlib.contextmanager
def _quiet_logs():
    """mmdeploy and mmengine warn about registry scopes and rewrites of other torch versions on every step."""
    from mmengine.logging import MMLogger
    loggers = [MMLogger.get_instance(name) for name in ('mmdeploy', 'mmengine')]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _Deployment:
    """The pieces one deployment shares between its export and its check."""

    def __init__(self, model_cfg, checkpoint: str, config_name: str, dynamic: bool, shape: Optional[Tuple[int, int]]):
        from mmdeploy.apis import build_task_processor
        from mmdeploy.core import patch_model
        from mmdeploy.utils import IR
        self.task = model_task(model_cfg)
        self.dynamic = dynamic
        self.config_name = config_name
        self.input_shape = None if dynamic else (shape or test_scale(model_cfg))
        self.deploy_cfg = deploy_config(model_cfg, self.task, dynamic, self.input_shape)
        self.model_cfg = deployed_model_config(model_cfg)
        # mmdeploy's create_input changes the pipeline of the config it was given: keep ours as written.
        self.processor = build_task_processor(copy.deepcopy(self.model_cfg), self.deploy_cfg, 'cpu')
        self.model = self.processor.build_pytorch_model(None)
        check_deployable(self.model, self.task, config_name)
        load_weights(self.model, checkpoint, config_name)
        self.model.eval()
        backbone = getattr(self.model, 'backbone', None)
        self.minimum = backbone.minimum_input_size() if hasattr(backbone, 'minimum_input_size') else 1
        self.patched = patch_model(self.model, cfg=self.deploy_cfg, backend=BACKEND, ir=IR.ONNX)
        post = self.deploy_cfg.codebase_config.get('post_processing', {})
        self.score_threshold = self._final_test_cfg().get('score_thr', post.get('score_threshold', 0.0))
        self.keep_top_k = self._final_test_cfg().get('max_per_img', post.get('keep_top_k', 100))

    def _final_test_cfg(self) -> dict:
        test_cfg = self.model_cfg.model.get('test_cfg') or {}
        return test_cfg.get('rcnn', test_cfg) or {}

    def rewriter_context(self):
        from mmdeploy.core import RewriterContext
        from mmdeploy.utils import IR
        return RewriterContext(cfg=self.deploy_cfg, backend=BACKEND, ir=IR.ONNX, opset=OPSET)

    def preprocessed(self, images: Sequence):
        """(data, input batch) of images (arrays) through the test pipeline and the data preprocessor."""
        input_shape = None if self.dynamic else [self.input_shape[1], self.input_shape[0]]
        return self.processor.create_input(list(images), input_shape, data_preprocessor=self.model.data_preprocessor)

    def check_sizes(self, export_size: Tuple[int, int], export_input: Sequence[int]) -> List[Tuple[int, int]]:
        """Generated-image sizes to check at: the first candidates whose inputs differ from the export's and
        from each other (dynamic shapes), and are not below the minimum size."""
        chosen, inputs = [], {tuple(export_input[-2:])}
        for size in candidate_sizes(*export_size):
            shape = tuple(self.preprocessed([np.zeros(size + (3, ), np.uint8)])[1].shape[-2:])
            if min(shape) >= self.minimum and (shape not in inputs or not self.dynamic):
                chosen.append(size)
                inputs.add(shape)
            if len(chosen) == CHECKED_SIZES:
                return chosen
        raise DeployError(f'no generated image size of about {export_size[0]} x {export_size[1]} gives the test '
                          'pipeline inputs of two other sizes (and not below the minimum): give --image files')

    def inputs(self, images: Sequence, name: str):
        """:meth:`preprocessed`, refused below the minimum input size."""
        data, batch = self.preprocessed(images)
        height, width = batch.shape[-2:]
        if min(height, width) < self.minimum:
            raise DeployError(f'{name}: the test pipeline makes an input of {height} x {width}, but the exported '
                              f'{type(self.model.backbone).__name__} computes what PyTorch does only for inputs of '
                              f'at least {self.minimum} px a side (see its minimum_input_size); give larger images '
                              'or raise the test scale (e.g. --cfg-options test_pipeline.1.scale=...)')
        return data, batch

    def export(self, path: str, images: Sequence) -> Tuple[Tuple[int, ...], float]:
        data, batch = self.inputs(images, 'the export image')
        module = _EndToEnd(self.patched, data['data_samples']).eval()
        onnx_cfg = self.deploy_cfg.onnx_config
        start = time.perf_counter()
        with self.rewriter_context(), torch.no_grad():
            torch.onnx.export(module, (batch, ), path, dynamo=False, autograd_inlining=False, export_params=True,
                              input_names=list(onnx_cfg.input_names), output_names=list(onnx_cfg.output_names),
                              opset_version=OPSET, dynamic_axes=onnx_cfg.get('dynamic_axes'),
                              keep_initializers_as_inputs=False)
        seconds = time.perf_counter() - start
        import onnx
        model_proto = onnx.load(path)
        onnx.helper.set_model_props(model_proto, {'producer': f'swin_backbones {__version__} with mmdeploy',
                                                  'minimum_input_size': str(self.minimum)})
        onnx.save(model_proto, path)
        onnx.checker.check_model(path)
        return tuple(batch.shape), seconds

    def check(self, run_graph, images: Sequence, name: str) -> CheckResult:
        """The ONNX model (``run_graph``: input batch -> {output name: tensor}) against the same rewritten model
        in PyTorch."""
        data, batch = self.inputs(images, name)
        result = CheckResult(name=name, input_shape=tuple(batch.shape))
        with self.rewriter_context(), torch.no_grad():
            reference = self.patched(batch, data_samples=copy.deepcopy(data['data_samples']), mode='predict')
        reference = [reference] if isinstance(reference, torch.Tensor) else list(reference)
        try:
            outputs = run_graph(batch)
        except Exception as error:  # onnxruntime's own exception types
            raise DeployError(f'{name}: onnxruntime failed on an input of shape {tuple(batch.shape)}: '
                              f'{str(error).splitlines()[0]}') from None
        names = output_names(self.task)
        ours = [outputs[key] for key in names]
        for key, theirs, mine in zip(names, reference, ours):
            if tuple(theirs.shape[:2]) != tuple(mine.shape[:2]) or theirs.dim() != mine.dim():
                result.errors.append(f'output {key!r} has shape {tuple(mine.shape)} in onnxruntime, '
                                     f'{tuple(theirs.shape)} in PyTorch')
        if result.errors:
            return result
        if self.task == 'segmentation':
            return compare_segmentations(reference[0].numpy(), ours[0].numpy(), result)
        for expected, got in zip(self._detections(reference, data), self._detections(ours, data)):
            compare_detections(expected[0], got[0], expected[1], self.score_threshold, self.keep_top_k, result)
        return result

    @staticmethod
    def _detections(outputs: List[torch.Tensor], data) -> List[Tuple[Dict, Tuple[int, int]]]:
        """Per image: boxes, scores, labels (and mask probabilities) in the original image's pixels, and its
        (H, W): what mmdeploy's backend model makes of the outputs (before it thresholds the masks)."""
        from mmdeploy.codebase.mmdet.deploy.object_detection_model import End2EndModel
        results = []
        for index, sample in enumerate(data['data_samples']):
            dets, labels = outputs[0][index], outputs[1][index]
            kept = dets[:, 4] > 0
            scale_factor = torch.tensor(sample.metainfo['scale_factor'], dtype=dets.dtype).repeat(2)
            boxes = dets[kept, :4] / scale_factor
            height, width = sample.metainfo['ori_shape'][:2]
            detections = dict(boxes=boxes.numpy(), scores=dets[kept, 4].numpy(), labels=labels[kept].numpy())
            if len(outputs) > 2:
                detections['masks'] = End2EndModel.postprocessing_masks(boxes, outputs[2][index][kept], width,
                                                                        height).numpy()
            results.append((detections, (height, width)))
        return results


def _graph_runner(deployment: _Deployment, onnx_path: str, providers: Optional[Sequence]):
    """input batch -> {output name: tensor} from mmdeploy's onnxruntime backend model (the CPU), or from an
    onnxruntime session with ``providers``."""
    if not providers:
        wrapper = deployment.processor.build_backend_model([onnx_path]).wrapper
        return lambda batch: wrapper({'input': batch})
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_path, providers=list(providers))
    names = [output.name for output in session.get_outputs()]

    def run_graph(batch):
        outputs = session.run(names, {'input': batch.numpy()})
        return {name: torch.from_numpy(value) for name, value in zip(names, outputs)}
    return run_graph


def _write_configs(deployment: _Deployment, directory: str, checkpoint: str) -> None:
    from mmdeploy.backend.sdk.export_info import export2SDK
    deployment.deploy_cfg.dump(os.path.join(directory, DEPLOY_CONFIG))
    deployment.model_cfg.dump(os.path.join(directory, MODEL_CONFIG))
    export2SDK(deployment.deploy_cfg, deployment.model_cfg, directory, pth=os.path.abspath(checkpoint), device='cpu')


def deploy(config, checkpoint: str, out: str, shape: Optional[Tuple[int, int]] = None, dynamic: bool = True,
           images: Optional[Sequence[str]] = None, force: bool = False, cfg_options: Optional[dict] = None,
           providers: Optional[Sequence] = None) -> DeployReport:
    """Exports the detector or segmentor of ``config`` (a path or an mmengine Config) with the weights of
    ``checkpoint`` to ``out`` and checks it; returns the check's :class:`~.check.DeployReport`.

    ``shape`` (H, W) is the size of the image traced for the export (default 480 x 640; the test pipeline
    resizes it); with ``dynamic=False`` it is the fixed input size that the pipeline resizes every image to
    (default: the test scale). The check runs on ``images`` (paths) or on generated ones at two other
    sizes, and (dynamic shapes) a batch of two, in mmdeploy's onnxruntime wrapper on the CPU, or in an
    onnxruntime session with ``providers`` (e.g. ['CUDAExecutionProvider']). A failed check raises
    :class:`DeployError` and leaves nothing at ``out``. An existing ``out`` is only replaced with ``force``.

    A detector's deployed model takes the image batch unpadded (its written model config does not pad) and
    pads it in the graph to the original ``pad_size_divisor``, so that boxes are clipped at the image's size
    as mmdet clips them.
    """
    require_mmdeploy()
    config = os.fspath(config) if isinstance(config, (str, os.PathLike)) else config
    checkpoint, out = os.fspath(checkpoint), os.fspath(out)
    check_output_path(out, force)  # before any work
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file not found: {checkpoint}')
    for image in images or ():
        if not os.path.isfile(image):
            raise FileNotFoundError(f'image not found: {image}')
    if shape is not None and min(shape) < 1:
        raise ValueError(f'shape must be two positive sides, got {shape}')
    config_name = config if isinstance(config, str) else (config.filename or 'the config')
    model_cfg = load_model_config(config, cfg_options)
    from mmengine.registry import DefaultScope
    with atomic_output_dir(out, force) as directory, _quiet_logs(), \
            DefaultScope.overwrite_default_scope(model_cfg.get('default_scope')), registered_rewrites():
        deployment = _Deployment(model_cfg, checkpoint, config_name, dynamic, shape)
        export_size = shape if (shape and dynamic) else EXPORT_IMAGE_SIZE
        onnx_path = os.path.join(directory, ONNX_FILE)
        export_shape, seconds = deployment.export(onnx_path, [generated_image(*export_size, seed=0)])
        _write_configs(deployment, directory, checkpoint)
        run_graph = _graph_runner(deployment, onnx_path, providers)
        if images:
            arrays = [read_image(image) for image in images]
            checks = [deployment.check(run_graph, [array], image) for array, image in zip(arrays, images)]
            batch, batch_name = arrays[:1] * 2, f'batch of 2 {images[0]}'
        else:
            sizes = deployment.check_sizes(export_size, export_shape)
            checks = [deployment.check(run_graph, [generated_image(*size, seed=index + 1)],
                                       f'image {size[0]}x{size[1]}') for index, size in enumerate(sizes)]
            batch = [generated_image(*sizes[0], seed=seed) for seed in (3, 4)]
            batch_name = f'batch of 2 {sizes[0][0]}x{sizes[0][1]}'
        if dynamic:  # a static graph has batch 1
            checks.append(deployment.check(run_graph, batch, batch_name))
        report = DeployReport(out=out, task=deployment.task, dynamic=dynamic, export_input_shape=export_shape,
                              minimum_input_size=deployment.minimum, files=sorted(os.listdir(directory)),
                              checks=checks, export_seconds=seconds)
        if not report.passed:
            failed = '; '.join(check.line() for check in checks if not check.passed)
            raise DeployError(f'onnxruntime and PyTorch differ, so nothing was written to {out}: {failed}')
    return report
