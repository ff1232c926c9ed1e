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
    tiles = []
    for label, image, pyramid in rows:
        image = np.asarray(image).astype(np.uint8)
        width = max(1, round(image.shape[1] * tile_height / image.shape[0]))
        row = [(f'{label}: input {image.shape[0]}x{image.shape[1]}' if label else
                f'input {image.shape[0]}x{image.shape[1]}', Image.fromarray(image).resize((width, tile_height),
                                                                                          Image.BILINEAR))]
        for stride in sorted(pyramid):
            level = pyramid[stride]
            channels, height, level_width = level.shape[-3:]
            picture = Image.fromarray(principal_components_rgb(level)).resize((width, tile_height), Image.NEAREST)
            row.append((f'stride {stride}: {channels}x{height}x{level_width}', picture))
        tiles.append(row)
    columns = max(len(row) for row in tiles)
    tile_width = max(tile.width for row in tiles for _, tile in row)
    canvas = Image.new('RGB', (margin + columns * (tile_width + margin),
                               header + margin + len(tiles) * (caption + tile_height + margin)), 'white')
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin, margin), title, fill='black', font=_font(16))
    for row_index, row in enumerate(tiles):
        top = header + margin + row_index * (caption + tile_height + margin)
        for column, (text, tile) in enumerate(row):
            left = margin + column * (tile_width + margin)
            draw.text((left, top), text, fill='black', font=_font(13))
            canvas.paste(tile, (left, top + caption))
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
    """The sample's ground truth and its predictions above ``score_thr``, in an image ``scale`` times larger."""
    from mmengine.structures import InstanceData, PixelData
    sample = sample.cpu()
    enlarged = sample.new()
    for key in ('gt_instances', 'pred_instances'):
        if key not in sample:
            continue
        instances = sample.get(key)
        if 'scores' in instances:
            instances = instances[instances.scores >= score_thr]
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
    score >= ``score_thr``) or mmseg's ``SegLocalVisualizer`` (class maps with their names). Images are
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
            if 'pred_instances' in sample:
                from mmdet.visualization import DetLocalVisualizer
                visualizer = DetLocalVisualizer(name=f'swin_backbones.draw_predictions.{id(sample)}', line_width=2,
                                                alpha=0.6)
            else:
                from mmseg.visualization import SegLocalVisualizer
                visualizer = SegLocalVisualizer(name=f'swin_backbones.draw_predictions.{id(sample)}', alpha=0.6)
            visualizer.dataset_meta = dict(dataset.metainfo)
        image = cv2.cvtColor(cv2.imread(sample.img_path), cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (image.shape[1] * scale, image.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
        visualizer.add_datasample(os.path.basename(sample.img_path), image,
                                  _enlarged_sample(sample, scale, score_thr), draw_gt=True, draw_pred=True,
                                  pred_score_thr=score_thr)
        rows.append((os.path.basename(sample.img_path), visualizer.get_image()))
    _save_rows(rows, path, title, ('ground truth', f'prediction (score >= {score_thr})'
                                   if 'pred_instances' in sample else 'prediction'))


def _save_rows(rows, path: PathLike, title: Optional[str], column_titles: Tuple[str, str]) -> None:
    """Stacks the (name, GT | prediction picture) rows under a header naming the two columns."""
    from PIL import Image, ImageDraw

    margin, caption = 10, 22
    header = (2 if title else 1) * caption
    width = max(picture.shape[1] for _, picture in rows)
    height = sum(picture.shape[0] + caption + margin for _, picture in rows)
    canvas = Image.new('RGB', (width + 2 * margin, header + margin + height), 'white')
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((margin, margin // 2), title, fill='black', font=_font(16))
    for column, text in enumerate(column_titles):
        draw.text((margin + column * width // 2, header - caption + margin // 2), text, fill='black', font=_font(15))
    top = header + margin
    for name, picture in rows:
        draw.text((margin, top), name, fill='dimgray', font=_font(13))
        canvas.paste(Image.fromarray(picture), (margin, top + caption))
        top += picture.shape[0] + caption + margin
    canvas.save(path)
