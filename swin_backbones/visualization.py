"""Pictures: feature pyramids (each level's first three principal components as RGB) and the predictions
of a detector or segmentor beside the ground truth, drawn by mmdet's ``DetLocalVisualizer`` and mmseg's
``SegLocalVisualizer``."""
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ['principal_components_rgb', 'render_pyramid', 'render_pyramids', 'draw_predictions']

PathLike = Union[str, 'os.PathLike']


def principal_components_rgb(feature: torch.Tensor) -> np.ndarray:
    """(1, C, h, w) or (C, h, w) features -> (h, w, 3) uint8 image of the first three principal components."""
    feature = feature.detach().float().cpu()
    if feature.dim() == 4:
        feature = feature[0]
    channels, height, width = feature.shape
    tokens = feature.reshape(channels, -1).t()  # h*w, C
    tokens = tokens - tokens.mean(dim=0, keepdim=True)
    components = min(3, channels, tokens.shape[0])
    if components == 0 or not torch.any(tokens):
        return np.zeros((height, width, 3), dtype=np.uint8)
    # Principal axes from the C x C covariance: cheap for large maps, exact for small ones.
    _, eigenvectors = torch.linalg.eigh(tokens.t() @ tokens)
    projected = tokens @ eigenvectors[:, -components:].flip(1)  # h*w, k, largest first
    low = torch.quantile(projected, 0.01, dim=0)
    high = torch.quantile(projected, 0.99, dim=0)
    scaled = ((projected - low) / (high - low).clamp_min(1e-6)).clamp(0, 1)
    rgb = torch.zeros(height * width, 3)
    rgb[:, :components] = scaled
    return (rgb.reshape(height, width, 3).numpy() * 255).round().astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont
    return ImageFont.load_default(size=size)


def render_pyramids(rows: Sequence[Tuple[Optional[str], np.ndarray, Dict[int, torch.Tensor]]], path: PathLike,
                    tile_height: int = 256, title: Optional[str] = None) -> None:
    """Saves a PNG with one row per ``(label, image, pyramid)``: the (H, W, 3) uint8 RGB image, then each
    level of the pyramid ``{stride: (1, C, h, w)}`` as principal components, enlarged (nearest) to the
    image's tile size. Each tile is captioned with the level's stride and shape."""
    from PIL import Image, ImageDraw

    margin, caption = 10, 20
    header = 2 * caption if title else 0
    row_title = caption if any(label for label, _, _ in rows) else 0
    tiles = []
    for label, image, pyramid in rows:
        image = np.asarray(image).astype(np.uint8)
        width = max(1, round(image.shape[1] * tile_height / image.shape[0]))
        row = [(f'input {image.shape[0]}x{image.shape[1]}',
                Image.fromarray(image).resize((width, tile_height), Image.BILINEAR))]
        for stride in sorted(pyramid):
            channels, height, level_width = pyramid[stride].shape[-3:]
            picture = Image.fromarray(principal_components_rgb(pyramid[stride])).resize((width, tile_height),
                                                                                      Image.NEAREST)
            row.append((f'stride {stride}: {channels}x{height}x{level_width}', picture))
        tiles.append((label, row))
    columns = max(len(row) for _, row in tiles)
    tile_width = max(tile.width for _, row in tiles for _, tile in row)
    row_height = row_title + caption + tile_height + margin
    canvas = Image.new('RGB', (margin + columns * (tile_width + margin), header + margin + len(tiles) * row_height),
                       'white')
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin, margin), title, fill='black', font=_font(16))
    for row_index, (label, row) in enumerate(tiles):
        top = header + margin + row_index * row_height
        if label:
            draw.text((margin, top), label, fill='black', font=_font(15))
        for column, (text, tile) in enumerate(row):
            left = margin + column * (tile_width + margin)
            draw.text((left, top + row_title), text, fill='dimgray', font=_font(13))
            canvas.paste(tile, (left, top + row_title + caption))
    canvas.save(path)


def render_pyramid(image: np.ndarray, pyramid: Dict[int, torch.Tensor], path: PathLike,
                   tile_height: int = 256) -> None:
    """Saves a PNG with the input image and each pyramid level (nearest-neighbour enlarged) side by side."""
    render_pyramids([(None, image, pyramid)], path, tile_height=tile_height)


# ------------------------------------------------------------------------------------- predictions
def _enlarge(array: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour enlargement of the last two axes by an integer factor."""
    return np.repeat(np.repeat(array, scale, axis=-2), scale, axis=-1)


def _enlarged_sample(sample, scale: int, score_thr: float):
    """The sample's ground truth and its predictions scoring above ``score_thr``, for an image ``scale`` times
    larger (masks and label maps enlarged by nearest neighbour, boxes scaled)."""
    from mmengine.structures import InstanceData, PixelData
    sample = sample.cpu()
    enlarged = sample.new()
    for key in ('gt_instances', 'pred_instances'):
        if key not in sample:
            continue
        instances = sample.get(key)
        if 'scores' in instances:
            instances = instances[instances.scores > score_thr]
        masks = instances.masks
        masks = masks.to_ndarray() if hasattr(masks, 'to_ndarray') else np.asarray(masks)
        bboxes = getattr(instances.bboxes, 'tensor', instances.bboxes)
        fields = dict(bboxes=bboxes * scale, labels=instances.labels, masks=_enlarge(masks.astype(bool), scale))
        if 'scores' in instances:
            fields['scores'] = instances.scores
        enlarged.set_field(InstanceData(**fields), key)
    for key in ('gt_sem_seg', 'pred_sem_seg'):
        if key in sample:
            enlarged.set_field(PixelData(data=torch.from_numpy(_enlarge(sample.get(key).data.numpy(), scale))), key)
    return enlarged


def draw_predictions(model: torch.nn.Module, dataset, path: PathLike, count: int = 4, score_thr: float = 0.5,
                     scale: int = 3, title: Optional[str] = None) -> None:
    """Saves a PNG of ``model``'s predictions on the first ``count`` images of ``dataset`` (an mmdet or mmseg
    test set, ground truth included), one image per row: the ground truth on the left, the prediction on
    the right, drawn by mmdet's ``DetLocalVisualizer`` (boxes, masks, class and score; instances with a
    score > ``score_thr``) or mmseg's ``SegLocalVisualizer`` (class maps with their names). Images are
    enlarged ``scale`` times (nearest neighbour for masks and maps) so that small images stay legible.
    """
    import cv2
    from mmengine.dataset import pseudo_collate

    model = model.eval()
    visualizer, rows = None, []
    for index in range(min(count, len(dataset))):
        with torch.no_grad():
            sample = model.test_step(pseudo_collate([dataset[index]]))[0]
        if visualizer is None:
            visualizer, options, column_titles = _visualizer_for(sample, score_thr)
            visualizer.dataset_meta = dict(dataset.metainfo)
        image = cv2.cvtColor(cv2.imread(sample.img_path), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
        enlarged = _enlarged_sample(sample, scale, score_thr)
        sides = []
        for draw_gt in (True, False):  # one call per side: mmseg's add_datasample keeps only the last drawn
            visualizer.add_datasample(os.path.basename(sample.img_path), image, enlarged, draw_gt=draw_gt,
                                      draw_pred=not draw_gt, **options)
            sides.append(visualizer.get_image())
        rows.append((os.path.basename(sample.img_path), sides))
    _save_rows(rows, path, title, column_titles)


def _visualizer_for(sample, score_thr: float):
    """mmdet's visualizer for instance predictions, mmseg's for class maps; their add_datasample options;
    the column titles."""
    name = f'swin_backbones.draw_predictions.{id(sample)}'
    if 'pred_instances' in sample:
        from mmdet.visualization import DetLocalVisualizer
        visualizer = DetLocalVisualizer(name=name, line_width=1.5, alpha=0.6)
        # Its label font is 6.5 pt for objects under 30000 px^2; at 150 dpi instead of matplotlib's 100
        # that is 13 px, legible on these small images (line widths, in points too, grow alike).
        visualizer.dpi = 150
        visualizer.fig_save.set_dpi(visualizer.dpi)
        return visualizer, dict(pred_score_thr=score_thr), ('ground truth', f'prediction (score > {score_thr})')
    from mmseg.visualization import SegLocalVisualizer
    return SegLocalVisualizer(name=name, alpha=0.6), dict(with_labels=True), ('ground truth', 'prediction')


def _save_rows(rows, path: PathLike, title: Optional[str], column_titles: Tuple[str, str]) -> None:
    """One row per (name, [ground truth picture, prediction picture]) under a header naming the columns."""
    from PIL import Image, ImageDraw

    margin, caption = 10, 22
    header = (2 if title else 1) * caption
    side_width = max(side.shape[1] for _, sides in rows for side in sides)
    canvas = Image.new('RGB', (margin + 2 * (side_width + margin),
                               header + margin + sum(sides[0].shape[0] + caption + margin for _, sides in rows)),
                       'white')
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin, margin // 2), title, fill='black', font=_font(16))
    for column, text in enumerate(column_titles):
        draw.text((margin + column * (side_width + margin), header - caption + margin // 2), text, fill='black',
                  font=_font(15))
    top = header + margin
    for name, sides in rows:
        draw.text((margin, top), name, fill='dimgray', font=_font(13))
        for column, side in enumerate(sides):
            canvas.paste(Image.fromarray(side), (margin + column * (side_width + margin), top + caption))
        top += sides[0].shape[0] + caption + margin
    canvas.save(path)
