"""Small generated data sets for machines without COCO or ADE20K (what configs/toy/ train on).

    from swin_backbones.toy_data import make_toy_data
    make_toy_data('work_dirs/toy_data')     # or: swin-backbones-make-toy-data --out work_dirs/toy_data

Both sets show circles, squares and triangles (the classes) on textured backgrounds:

* ``coco/``: instance segmentation in COCO format, ``train/`` and ``val/`` JPEG images and
  ``annotations/instances_{train,val}.json`` with polygon masks (category ids 1-3);
* ``ade/``: semantic segmentation in ADE20K's folder layout, ``images/{training,validation}/*.jpg``
  and ``annotations/{training,validation}/*.png`` with ADE20K's label convention: 0 is "other"
  (ignored with ``reduce_zero_label=True``; not used here), 1 the background, 2-4 the shapes.

Each class has its own colour family and texture (circles: shaded reds/oranges, squares: striped
greens, triangles: checkered blues); backgrounds are smooth noise in muted colours crossed by random
lines. Objects do not overlap. The output depends only on the arguments: the same seed gives the
same files.
"""
import json
import math
import os
import os.path as osp
import shutil

import cv2
import numpy as np

__all__ = ['CLASSES', 'make_scene', 'make_coco', 'make_ade', 'make_toy_data']

CLASSES = ('circle', 'square', 'triangle')
# Base hue (OpenCV's 0-180 scale) of each class: red, green, blue.
_HUES = (2, 60, 112)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float map in [0, 1]: bicubically upsampled random grid."""
    grid = rng.random((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted, low-saturation textured background (RGB uint8) with a few thin random lines."""
    base = rng.uniform(70, 170, size=3)
    tint = rng.uniform(-25, 25, size=3)
    noise = _smooth_noise(rng, size, int(rng.integers(3, 9)))[..., None]
    fine = rng.normal(0, 8, size=(size, size, 1))
    image = base + tint * (2 * noise - 1) * 2 + fine
    for _ in range(int(rng.integers(2, 6))):
        p1 = tuple(int(v) for v in rng.integers(0, size, 2))
        p2 = tuple(int(v) for v in rng.integers(0, size, 2))
        shade = float(rng.uniform(-40, 40))
        line = np.zeros((size, size), np.uint8)
        cv2.line(line, p1, p2, 1, int(rng.integers(1, 3)), cv2.LINE_AA)
        image += shade * line[..., None]
    return image


def _class_texture(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Full-image RGB float texture for class ``label`` (0 circle, 1 square, 2 triangle)."""
    hue = (_HUES[label] + rng.integers(-8, 9)) % 180
    sat = rng.integers(170, 256)
    val = rng.integers(170, 256)
    colour = cv2.cvtColor(np.uint8([[[hue, sat, val]]]), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if label == 0:  # radial shading
        cy, cx = rng.uniform(0, size, 2)
        pattern = 1 - 0.35 * np.clip(np.hypot(yy - cy, xx - cx) / size, 0, 1)
    elif label == 1:  # stripes
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(5, 9)
        phase = np.cos(angle) * xx + np.sin(angle) * yy
        pattern = 0.75 + 0.25 * np.sign(np.sin(2 * math.pi * phase / period))
    else:  # checkerboard
        cell = int(rng.integers(4, 8))
        pattern = 0.75 + 0.25 * (((yy // cell) + (xx // cell)) % 2)
    return colour * pattern[..., None]


def _shape_polygon(rng: np.random.Generator, label: int, cx: float, cy: float, radius: float) -> np.ndarray:
    """(K, 2) float polygon (x, y) of the shape inscribed in a circle of ``radius``."""
    if label == 0:
        angles = np.linspace(0, 2 * math.pi, 32, endpoint=False)
    elif label == 1:
        angles = rng.uniform(0, math.pi / 2) + np.arange(4) * math.pi / 2
    else:
        angles = rng.uniform(0, 2 * math.pi) + np.arange(3) * 2 * math.pi / 3
    return np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], axis=1)


def make_scene(rng: np.random.Generator, size: int, max_objects: int = 4):
    """One image: (RGB uint8 image, [(label, polygon (K, 2), mask (size, size) bool), ...])."""
    image = _background(rng, size)
    objects, boxes = [], []
    count = int(rng.integers(1, max_objects + 1))
    for _ in range(count * 20):  # rejection sampling of non-overlapping places
        if len(objects) == count:
            break
        radius = rng.uniform(0.09, 0.22) * size
        cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if any(box[0] < b[2] + 3 and b[0] < box[2] + 3 and box[1] < b[3] + 3 and b[1] < box[3] + 3 for b in boxes):
            continue
        label = int(rng.integers(0, len(CLASSES)))
        polygon = _shape_polygon(rng, label, cx, cy, radius)
        mask = np.zeros((size, size), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
        if mask.sum() < 16:
            continue
        soft = np.zeros((size, size), np.float32)
        cv2.fillPoly(soft, [np.round(polygon * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
        texture = _class_texture(rng, label, size)
        image = image * (1 - soft[..., None]) + texture * soft[..., None]
        objects.append((label, polygon, mask.astype(bool)))
        boxes.append(box)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    return image, objects


def _write_jpeg(path: str, rgb: np.ndarray) -> None:
    if not cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]):
        raise OSError(f'could not write {path}')


def _fresh_dir(path: str) -> str:
    if osp.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)
    return path


def make_coco(root: str, num_train: int, num_val: int, size: int, seed: int) -> dict:
    """Instance segmentation set in COCO format under ``root``; returns the number of images/objects per split."""
    categories = [dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(CLASSES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    summary = {}
    for split, count, split_seed in (('train', num_train, seed), ('val', num_val, seed + 1_000_003)):
        rng = np.random.default_rng([split_seed, 0])
        image_dir = _fresh_dir(osp.join(root, split))
        images, annotations = [], []
        for index in range(count):
            image, objects = make_scene(rng, size)
            file_name = f'{index:06d}.jpg'
            _write_jpeg(osp.join(image_dir, file_name), image)
            image_id = index + 1
            images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
            for label, polygon, mask in objects:
                x0, y0 = float(polygon[:, 0].min()), float(polygon[:, 1].min())
                x1, y1 = float(polygon[:, 0].max()), float(polygon[:, 1].max())
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=label + 1,
                    segmentation=[[round(float(v), 2) for v in polygon.reshape(-1)]],
                    area=float(mask.sum()), bbox=[round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    iscrowd=0))
        with open(osp.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump(dict(info=dict(description=f'toy shapes, seed {seed}'), licenses=[],
                           images=images, annotations=annotations, categories=categories), f)
        summary[split] = dict(images=len(images), objects=len(annotations))
    return summary


def make_ade(root: str, num_train: int, num_val: int, size: int, seed: int) -> dict:
    """Semantic segmentation set in ADE20K's layout under ``root``; labels 1 background, 2.. the shapes."""
    summary = {}
    for split, count, split_seed in (('training', num_train, seed), ('validation', num_val, seed + 1_000_003)):
        rng = np.random.default_rng([split_seed, 1])
        image_dir = _fresh_dir(osp.join(root, 'images', split))
        label_dir = _fresh_dir(osp.join(root, 'annotations', split))
        for index in range(count):
            image, objects = make_scene(rng, size)
            seg = np.ones((size, size), np.uint8)
            for label, _, mask in objects:
                seg[mask] = label + 2
            name = f'toy_{split}_{index:06d}'
            _write_jpeg(osp.join(image_dir, name + '.jpg'), image)
            if not cv2.imwrite(osp.join(label_dir, name + '.png'), seg):
                raise OSError(f'could not write {name}.png')
        summary[split] = dict(images=count)
    return summary


def make_toy_data(out: str, num_train: int = 200, num_val: int = 50, size: int = 128, seed: int = 0) -> dict:
    """Writes ``out/coco`` and ``out/ade``; returns a summary (also saved as ``out/toy_data.json``)."""
    if size < 32:
        raise ValueError(f'size must be at least 32 pixels, got {size}')
    if num_train < 1 or num_val < 1:
        raise ValueError('num_train and num_val must be at least 1')
    summary = dict(seed=seed, size=size, classes=list(CLASSES),
                   coco=make_coco(osp.join(out, 'coco'), num_train, num_val, size, seed),
                   ade=make_ade(osp.join(out, 'ade'), num_train, num_val, size, seed))
    with open(osp.join(out, 'toy_data.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    return summary
