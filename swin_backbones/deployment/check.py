"""Comparing a deployed model's results with PyTorch's, by fixed limits.

Detections are matched one to one, by label and box, in the order of PyTorch's scores. They agree when every
detection has a partner with

* the same label,
* box corners within :data:`BOX_TOLERANCE` of the image's longer side (in the original image's pixels),
* a score within :data:`SCORE_TOLERANCE`,
* masks (pasted at the original image size, thresholded at 0.5) of IoU at least :data:`MASK_IOU`, not
  counting pixels whose PyTorch probability is within :data:`MASK_MARGIN` of 0.5 (rounding decides those).

A detection without a partner is allowed only where rounding can put it on either side of a cut: a score
within :data:`SCORE_MARGIN` of the score threshold, or, when the list is full, of the lowest score kept.
Segmentation maps agree when at least :data:`SEGMENTATION_AGREEMENT` of their pixels have the same class.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['BOX_TOLERANCE', 'SCORE_TOLERANCE', 'MASK_IOU', 'SEGMENTATION_AGREEMENT', 'SCORE_MARGIN', 'MASK_MARGIN',
           'CheckResult', 'DeployReport', 'compare_detections', 'compare_segmentations']

BOX_TOLERANCE = 1e-3
SCORE_TOLERANCE = 1e-3
MASK_IOU = 0.99
SEGMENTATION_AGREEMENT = 0.999
SCORE_MARGIN = 1e-4
MASK_MARGIN = 1e-3


@dataclasses.dataclass
class CheckResult:
    """onnxruntime against PyTorch on one image or batch; the compare functions add to it."""
    name: str
    input_shape: Tuple[int, ...]
    detections: Optional[int] = None  # PyTorch's detections (all images of the batch)
    box_diff: float = 0.0  # largest |onnxruntime - PyTorch| of a box corner / the image's longer side
    score_diff: float = 0.0
    min_mask_iou: Optional[float] = None
    at_cut: int = 0  # detections without a partner whose score sits at a cut (allowed)
    unpaired: int = 0  # other detections without a partner
    agreement: Optional[float] = None  # segmentation: fraction of pixels of the same class
    errors: List[str] = dataclasses.field(default_factory=list)  # outputs that cannot be compared

    @property
    def problems(self) -> List[str]:
        problems = list(self.errors)
        if self.unpaired:
            problems.append(f'{self.unpaired} detections (of PyTorch\'s {self.detections} and onnxruntime\'s) have no '
                            f'partner of the same label within {BOX_TOLERANCE:.0e} of the image size')
        if self.score_diff > SCORE_TOLERANCE:
            problems.append(f'scores differ by up to {self.score_diff:.1e} (limit {SCORE_TOLERANCE:.0e})')
        if self.min_mask_iou is not None and self.min_mask_iou < MASK_IOU:
            problems.append(f'a mask has IoU {self.min_mask_iou:.4f} (limit {MASK_IOU})')
        if self.agreement is not None and self.agreement < SEGMENTATION_AGREEMENT:
            problems.append(f'segmentation maps agree on {100 * self.agreement:.3f}% of pixels '
                            f'(limit {100 * SEGMENTATION_AGREEMENT:.1f}%)')
        return problems

    @property
    def passed(self) -> bool:
        return not self.problems

    def line(self) -> str:
        shape = 'x'.join(str(side) for side in self.input_shape)
        head = f'check {self.name} (input {shape}): '
        if not self.passed:
            return head + 'FAILED: ' + '; '.join(self.problems)
        if self.agreement is not None:
            return head + f'segmentation maps agree on {100 * self.agreement:.4f}% of pixels'
        body = (f'{self.detections} detections, labels equal, boxes max |diff| {self.box_diff:.1e} of the '
                f'image size, scores {self.score_diff:.1e}')
        if self.min_mask_iou is not None:
            body += f', mask IoU >= {self.min_mask_iou:.4f}'
        if self.at_cut:
            body += f', {self.at_cut} at a score cut on one side only'
        return head + body


@dataclasses.dataclass
class DeployReport:
    """What :func:`swin_backbones.deploy` wrote and how its check went."""
    out: str
    task: str
    dynamic: bool
    export_input_shape: Tuple[int, ...]
    minimum_input_size: int
    files: List[str]
    checks: List[CheckResult]
    export_seconds: float

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def lines(self) -> List[str]:
        shape = 'x'.join(str(side) for side in self.export_input_shape)
        axes = 'dynamic batch, height and width' if self.dynamic else 'static shapes'
        lines = [check.line() for check in self.checks]
        lines.append(f'exported the {self.task} model at input {shape} with {axes} in {self.export_seconds:.1f} s'
                     + (f'; valid for inputs of at least {self.minimum_input_size} px a side'
                        if self.minimum_input_size > 1 else ''))
        lines.append(f'wrote {self.out}: {", ".join(self.files)}')
        return lines


def _mask_iou(reference: np.ndarray, ours: np.ndarray) -> float:
    """IoU of the masks (probabilities) thresholded at 0.5, over the pixels PyTorch does not put at 0.5."""
    decided = np.abs(reference - 0.5) > MASK_MARGIN
    a, b = (reference >= 0.5) & decided, (ours >= 0.5) & decided
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare_detections(reference: Dict[str, np.ndarray], ours: Dict[str, np.ndarray], image_size: Sequence[int],
                       score_threshold: float, keep_top_k: int, result: CheckResult) -> CheckResult:
    """Adds the comparison of one image's detections to ``result`` (see the module docstring).

    ``reference`` (PyTorch) and ``ours`` (onnxruntime) hold 'boxes' (N, 4), 'scores' (N,), 'labels' (N,) and
    optionally 'masks' (N, H, W) probabilities, in the original image's pixels; ``image_size`` is its (H, W).
    """
    scale = float(max(image_size))
    ref_boxes, our_boxes = reference['boxes'].astype(np.float64), ours['boxes'].astype(np.float64)
    free = list(range(len(our_boxes)))
    pairs = []
    for i in np.argsort(-reference['scores'], kind='stable'):
        same_label = [j for j in free if ours['labels'][j] == reference['labels'][i]]
        if not same_label:
            continue
        diffs = [np.abs(our_boxes[j] - ref_boxes[i]).max() / scale for j in same_label]
        best = int(np.argmin(diffs))
        if diffs[best] <= BOX_TOLERANCE:
            pairs.append((i, same_label[best]))
            free.remove(same_label[best])
    result.detections = (result.detections or 0) + len(ref_boxes)
    for i, j in pairs:
        result.box_diff = max(result.box_diff, float(np.abs(our_boxes[j] - ref_boxes[i]).max() / scale))
        result.score_diff = max(result.score_diff, float(abs(ours['scores'][j] - reference['scores'][i])))
        if reference.get('masks') is not None:
            iou = _mask_iou(reference['masks'][i], ours['masks'][j])
            result.min_mask_iou = iou if result.min_mask_iou is None else min(result.min_mask_iou, iou)
    for detections, paired in ((reference, [i for i, _ in pairs]), (ours, [j for _, j in pairs])):
        scores = detections['scores']
        lowest = scores.min() if len(scores) else 0.0
        for index in set(range(len(scores))) - set(paired):
            if (abs(scores[index] - score_threshold) <= SCORE_MARGIN
                    or (len(scores) >= keep_top_k and scores[index] - lowest <= SCORE_MARGIN)):
                result.at_cut += 1
            else:
                result.unpaired += 1
    return result


def compare_segmentations(reference: np.ndarray, ours: np.ndarray, result: CheckResult) -> CheckResult:
    """Adds the comparison of class maps (any equal shapes) to ``result``."""
    if reference.shape != ours.shape:
        result.errors.append(f'segmentation maps of shape {ours.shape} from onnxruntime, {reference.shape} '
                             'from PyTorch')
        return result
    agreement = float((reference == ours).mean())
    result.agreement = agreement if result.agreement is None else min(result.agreement, agreement)
    return result
