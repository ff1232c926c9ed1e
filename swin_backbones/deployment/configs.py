"""The mmdeploy deploy config of a model config: what mmdeploy's own config files say for its onnxruntime
end-to-end tasks, with the model's own test settings where mmdeploy would put its defaults.

mmdeploy's pip package carries no config files, so the three it would take (mmdet instance segmentation,
mmdet detection, mmseg segmentation; static or dynamic) are built here as dicts.
"""
import copy
from typing import Optional, Tuple

from mmengine.config import Config

from .errors import DeployError

__all__ = ['TASKS', 'OPSET', 'BACKEND', 'model_task', 'output_names', 'deploy_config', 'deployed_model_config',
           'test_scale']

# task name -> (mmdeploy codebase, mmdeploy task)
TASKS = {
    'instance-seg': ('mmdet', 'ObjectDetection'),
    'detection': ('mmdet', 'ObjectDetection'),
    'segmentation': ('mmseg', 'Segmentation'),
}
# 12 at least: the backbones clamp int64 tensors (Clip on integers came with opset 12); 17 as the backbone
# export (swin_backbones.export) uses. RoiAlign takes its half-pixel alignment as an attribute from opset 16.
OPSET = 17
# mmdeploy's backend: the same graph also runs in onnxruntime's CUDA and TensorRT execution providers.
BACKEND = 'onnxruntime'


def model_task(model_cfg: Config) -> str:
    """'instance-seg' (a detector with a mask head), 'detection' or 'segmentation', by the default scope."""
    scope = model_cfg.get('default_scope')
    model = model_cfg.get('model')
    if not isinstance(model, dict):
        raise DeployError('the config has no model')
    if scope == 'mmdet':
        roi_head = model.get('roi_head') or {}
        return 'instance-seg' if roi_head.get('mask_head') else 'detection'
    if scope == 'mmseg':
        test_cfg = model.get('test_cfg') or {}
        if test_cfg.get('mode', 'whole') != 'whole':
            raise DeployError(f"the segmentor's test_cfg.mode is {test_cfg.get('mode')!r}: mmdeploy's segmentor "
                              "rewrite runs whole-image inference only (mode='whole')")
        return 'segmentation'
    raise DeployError(f"default_scope is {scope!r}: deployable configs are mmdet ('mmdet') detectors and mmseg "
                      "('mmseg') segmentors")


def output_names(task: str) -> Tuple[str, ...]:
    if task == 'segmentation':
        return ('output', )
    return ('dets', 'labels', 'masks') if task == 'instance-seg' else ('dets', 'labels')


def _dynamic_axes(task: str) -> dict:
    axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
    if task == 'segmentation':
        axes['output'] = {0: 'batch', 2: 'height', 3: 'width'}
        return axes
    for name in output_names(task)[:2]:
        axes[name] = {0: 'batch', 1: 'num_dets'}
    if task == 'instance-seg':
        axes['masks'] = {0: 'batch', 1: 'num_dets', 2: 'mask_height', 3: 'mask_width'}
    return axes


def _post_processing(model_cfg: Config) -> dict:
    """mmdeploy's NMS settings from the model's test_cfg (the final stage's), so that the deployed model keeps
    the boxes mmdet's would: ``keep_top_k`` its max_per_img, the same per class (a class can fill the whole
    list), and no candidate cut before NMS beyond the head's own nms_pre. mmdeploy's rewrites read score_thr,
    nms.iou_threshold and max_per_img from the model's test_cfg themselves; these are the values they fall
    back on."""
    test_cfg = model_cfg.model.get('test_cfg') or {}
    final = test_cfg.get('rcnn', test_cfg) or {}
    keep = int(final.get('max_per_img', 100))
    return dict(score_threshold=float(final.get('score_thr', 0.05)),
                confidence_threshold=0.005,
                iou_threshold=float((final.get('nms') or {}).get('iou_threshold', 0.5)),
                max_output_boxes_per_class=keep,
                pre_top_k=-1,
                keep_top_k=keep,
                background_label_id=-1,
                export_postprocess_mask=False)


def deploy_config(model_cfg: Config, task: str, dynamic: bool = True,
                  input_shape: Optional[Tuple[int, int]] = None) -> Config:
    """mmdeploy's deploy config for ``task``; ``input_shape`` (H, W) only for static shapes."""
    codebase, mmdeploy_task = TASKS[task]
    onnx_config = dict(type='onnx', export_params=True, keep_initializers_as_inputs=False, opset_version=OPSET,
                       save_file='end2end.onnx', input_names=['input'], output_names=list(output_names(task)),
                       input_shape=None if dynamic else [input_shape[1], input_shape[0]], optimize=False)
    if dynamic:
        onnx_config['dynamic_axes'] = _dynamic_axes(task)
    if codebase == 'mmdet':
        # The graph pads its input itself (rewrites.detector_extract_feat__padded): see deployed_model_config.
        codebase_config = dict(type='mmdet', task=mmdeploy_task, model_type='end2end',
                               post_processing=_post_processing(model_cfg),
                               pad_size_divisor=int(model_cfg.model.get('data_preprocessor', {}).get(
                                   'pad_size_divisor', 1)))
    else:
        codebase_config = dict(type='mmseg', task=mmdeploy_task, with_argmax=True)
    return Config(dict(onnx_config=onnx_config, codebase_config=codebase_config,
                       backend_config=dict(type=BACKEND)))


def deployed_model_config(model_cfg: Config) -> Config:
    """The model config the deployed model is run with: a detector's data preprocessor does not pad (the
    graph pads to the deploy config's ``pad_size_divisor`` itself, so that it knows the image's own size)."""
    deployed = copy.deepcopy(model_cfg)
    preprocessor = deployed.model.get('data_preprocessor')
    if deployed.get('default_scope') == 'mmdet' and preprocessor is not None:
        preprocessor['pad_size_divisor'] = 1
    return deployed


def test_scale(model_cfg: Config) -> Tuple[int, int]:
    """(H, W) of the test pipeline's Resize scale (given as W, H), else 800 x 1333: the fixed input size of a
    static export."""
    for transform in model_cfg.get('test_pipeline') or []:
        if transform.get('type') == 'Resize' and transform.get('scale'):
            width, height = transform['scale']
            return int(height), int(width)
    return 800, 1333
