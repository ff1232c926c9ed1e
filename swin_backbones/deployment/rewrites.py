"""What mmdeploy 1.3.1 gets wrong on torch 2.13 and for these models, done here as rewrites of its own kind.

Each is registered into mmdeploy's registries (``FUNCTION_REWRITER``, ``SYMBOLIC_REWRITER``) for the
onnxruntime backend only inside :func:`registered_rewrites`, and removed again when it ends; nothing here
runs or registers when ``swin_backbones`` is imported. mmdeploy prefers a backend's own rewrite to its
default one, so these replace mmdeploy's defaults while they are registered.

* RoIAlign symbolic: mmdeploy's builds the batch indices with ``symbolic_opset9._cast_Long``,
  which torch removed; this one casts with a plain ONNX ``Cast`` and, from opset 16, leaves the half-pixel
  alignment to RoiAlign's own attribute.
* ``F.scaled_dot_product_attention``: mmdeploy's default rewrite divides the logits by ``scale`` where
  torch multiplies by it; the backbones pass head_dim ** -0.5, so every PyTorch run inside mmdeploy's
  context computed other attention. The rewrite here calls torch's function (the exported graph never
  contains it: the backbones take their plain path while a graph is traced).
* ``F.adaptive_avg_pool2d`` (UperNet's pyramid pooling): mmdeploy's rewrite pools with a kernel computed
  from the traced size, frozen into the graph (and zero, an error, for maps smaller than the bins). Here
  adaptive pooling is written as two matrix products with bin weights computed from the input's size in
  the graph: PyTorch's bins (start floor(i H / n), end ceil((i + 1) H / n)) at every size.
* mmseg's ``Upsample.forward`` (Semantic FPN's scale heads): mmseg computes the output size as Python ints
  from the input's size, which a traced graph freezes; for integer factors the size is kept in the graph.
* Detectors' ``extract_feat``: mmdeploy clips boxes at the input's size, which mmdet's data preprocessor has
  padded to a multiple of 32 (its ``pad_size_divisor``), where mmdet clips at the resized image's size. The
  deployed model takes the unpadded image (its model config pads to 1) and pads it in the graph itself,
  to the divisor the deploy config records (``codebase_config.pad_size_divisor``): the features are
  mmdet's, and the boxes are clipped where mmdet clips them.
* Cascade R-CNN's ``predict_bbox``: mmdeploy's rewrite refines boxes between stages only for
  class-agnostic regression (it asserts it); the Swin Cascade configs regress per class. Here each stage's
  boxes are decoded from the deltas of the class it scores highest, as mmdet's ``regress_by_class``.
"""
import contextlib
from typing import Iterator, List

import torch
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .configs import BACKEND

__all__ = ['registered_rewrites']


def roi_align__onnxruntime(g, input, rois, output_size, spatial_scale, sampling_ratio, pool_mode, aligned):
    """mmcv's RoIAlign as ONNX RoiAlign; rois are (K, 5) rows of (batch index, x1, y1, x2, y2)."""
    def indices(values):
        return g.op('Constant', value_t=torch.tensor(values, dtype=torch.long))

    batch_indices = g.op('Cast', g.op('Gather', rois, indices(0), axis_i=1),
                         to_i=torch.onnx.TensorProtoDataType.INT64)
    boxes = g.op('Gather', rois, indices([1, 2, 3, 4]), axis_i=1)
    alignment = {}
    if g.opset >= 16:
        alignment['coordinate_transformation_mode_s'] = 'half_pixel' if aligned else 'output_half_pixel'
    elif aligned:
        boxes = g.op('Sub', boxes, g.op('Constant', value_t=torch.tensor([0.5 / spatial_scale])))
    return g.op('RoiAlign', input, boxes, batch_indices, output_height_i=output_size[0],
                output_width_i=output_size[1], spatial_scale_f=spatial_scale, sampling_ratio_i=sampling_ratio,
                mode_s=pool_mode, **alignment)


def scaled_dot_product_attention__torch(*args, **kwargs):
    """torch's own scaled_dot_product_attention."""
    from mmdeploy.core import FUNCTION_REWRITER
    return FUNCTION_REWRITER.get_context().origin_func(*args, **kwargs)


def _adaptive_bins(size, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(bins, size) weights averaging PyTorch's adaptive pooling bins of an axis of ``size`` (a traced size
    stays in the graph)."""
    index = torch.arange(bins, device=device)
    start = torch.div(index * size, bins, rounding_mode='floor')
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode='floor')
    position = torch.arange(size, device=device)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


def adaptive_avg_pool2d__any_size(input, output_size):
    """Adaptive average pooling of (N, C, H, W) as bins_H @ input @ bins_W^T, valid at every H and W."""
    from mmdeploy.core import FUNCTION_REWRITER
    ctx = FUNCTION_REWRITER.get_context()
    height_bins, width_bins = _pair(output_size)
    if (height_bins, width_bins) == (1, 1):  # GlobalAveragePool: any size already
        return ctx.origin_func(input, output_size)
    height, width = input.shape[-2:]
    height_bins = height if height_bins is None else height_bins
    width_bins = width if width_bins is None else width_bins
    rows = _adaptive_bins(height, height_bins, input.dtype, input.device)
    columns = _adaptive_bins(width, width_bins, input.dtype, input.device)
    return torch.matmul(torch.matmul(rows, input), columns.t())


def upsample_forward__traced_size(self, x):
    """mmseg's Upsample with the output size kept in the graph for integer scale factors."""
    from mmdeploy.core import FUNCTION_REWRITER
    ctx = FUNCTION_REWRITER.get_context()
    if self.size or not float(self.scale_factor).is_integer():
        return ctx.origin_func(self, x)
    factor = int(self.scale_factor)
    size = [side * factor for side in x.shape[-2:]]
    return F.interpolate(x, size, None, self.mode, self.align_corners)


def detector_extract_feat__padded(self, batch_inputs):
    """extract_feat of the batch zero-padded at the bottom and right to multiples of the deploy config's
    ``pad_size_divisor`` (what mmdet's data preprocessor does outside the graph)."""
    from mmdeploy.core import FUNCTION_REWRITER
    ctx = FUNCTION_REWRITER.get_context()
    divisor = ctx.cfg['codebase_config'].get('pad_size_divisor', 1)
    if divisor > 1:
        height, width = batch_inputs.shape[-2:]
        pad_height = (height + divisor - 1) // divisor * divisor - height
        pad_width = (width + divisor - 1) // divisor * divisor - width
        batch_inputs = F.pad(batch_inputs, (0, pad_width, 0, pad_height))
    return ctx.origin_func(self, batch_inputs)


def cascade_roi_head__predict_bbox(self, x, batch_img_metas, rpn_results_list, rcnn_test_cfg, rescale=False,
                                   **kwargs):
    """CascadeRoIHead.predict_bbox on mmdeploy's batched proposals (dets (B, N, 5)), for class-specific
    and class-agnostic regression alike."""
    from mmdet.structures.bbox import get_box_tensor
    proposals = rpn_results_list[0]
    batch_size, num_proposals = proposals.shape[:2]
    batch_index = torch.arange(batch_size, device=proposals.device, dtype=proposals.dtype).view(-1, 1, 1)
    batch_index = batch_index.expand(batch_size, num_proposals, 1)
    rois = torch.cat([batch_index, proposals[..., :4]], dim=-1)
    max_shape = batch_img_metas[0]['img_shape']
    stage_scores = []
    for stage in range(self.num_stages):
        results = self._bbox_forward(stage, x, rois.reshape(-1, 5), **kwargs)
        cls_score = results['cls_score'].reshape(batch_size, num_proposals, -1)
        bbox_pred = results['bbox_pred'].reshape(batch_size, num_proposals, -1)
        stage_scores.append(cls_score)
        if stage == self.num_stages - 1:
            break
        head = self.bbox_head[stage]
        if not head.reg_class_agnostic:
            scores = head.loss_cls.get_activation(cls_score) if head.custom_activation else cls_score
            label = scores[..., :-1].argmax(dim=-1, keepdim=True)
            size = head.bbox_coder.encode_size
            bbox_pred = bbox_pred.gather(-1, label * size + torch.arange(size, device=label.device))
        boxes = get_box_tensor(head.bbox_coder.decode(rois[..., 1:], bbox_pred, max_shape=max_shape))
        rois = torch.cat([batch_index, boxes], dim=-1)
    return self.bbox_head[-1].predict_by_feat(
        rois=rois, cls_scores=sum(stage_scores) / len(stage_scores), bbox_preds=bbox_pred,
        batch_img_metas=batch_img_metas, rcnn_test_cfg=rcnn_test_cfg, rescale=rescale)


# (function path, rewrite)
FUNCTION_REWRITES = (
    ('torch.nn.functional.scaled_dot_product_attention', scaled_dot_product_attention__torch),
    ('torch.nn.functional.adaptive_avg_pool2d', adaptive_avg_pool2d__any_size),
    ('mmseg.models.utils.wrappers.Upsample.forward', upsample_forward__traced_size),
    ('mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.predict_bbox', cascade_roi_head__predict_bbox),
    ('mmdet.models.detectors.two_stage.TwoStageDetector.extract_feat', detector_extract_feat__padded),
    ('mmdet.models.detectors.single_stage.SingleStageDetector.extract_feat', detector_extract_feat__padded),
)
# (autograd Function path, symbolic)
SYMBOLIC_REWRITES = (
    ('mmcv.ops.roi_align.__self__', roi_align__onnxruntime),
)


@contextlib.contextmanager
def registered_rewrites() -> Iterator[None]:
    """Registers the rewrites above into mmdeploy's registries for this block, then removes them.

    mmdeploy reads its registries when a ``RewriterContext`` is entered: enter it inside this block.
    """
    from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
    added: List = []
    try:
        for path, rewrite in FUNCTION_REWRITES:
            FUNCTION_REWRITER.register_rewriter(path, backend=BACKEND)(rewrite)
            added.append((FUNCTION_REWRITER, rewrite))
        for path, symbolic in SYMBOLIC_REWRITES:
            SYMBOLIC_REWRITER.register_symbolic(path, backend=BACKEND)(symbolic)
            added.append((SYMBOLIC_REWRITER, symbolic))
        yield
    finally:
        for rewriter, rewrite in added:  # mmdeploy has no public way to unregister
            rewriter._registry.remove_record(rewrite)
