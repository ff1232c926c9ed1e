"""Pictures of feature pyramids: each level's first three principal components shown as RGB."""
import os
from typing import Dict, Union

import numpy as np
import torch

__all__ = ['principal_components_rgb', 'render_pyramid']


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


def render_pyramid(image: np.ndarray, pyramid: Dict[int, torch.Tensor], path: Union[str, 'os.PathLike'],
                   tile_height: int = 256) -> None:
    """Saves a PNG with the input image and each pyramid level (nearest-neighbour enlarged) side by side."""
    from PIL import Image, ImageDraw

    image = np.asarray(image)
    scale = tile_height / image.shape[0]
    tile_width = max(1, round(image.shape[1] * scale))
    tiles = [('input', Image.fromarray(image.astype(np.uint8)).resize((tile_width, tile_height), Image.BILINEAR))]
    for stride in sorted(pyramid):
        level = Image.fromarray(principal_components_rgb(pyramid[stride]))
        tiles.append((f'stride {stride}', level.resize((tile_width, tile_height), Image.NEAREST)))
    margin, label_height = 8, 18
    canvas = Image.new('RGB', (len(tiles) * (tile_width + margin) + margin, tile_height + label_height + 2 * margin),
                       'white')
    draw = ImageDraw.Draw(canvas)
    for position, (label, tile) in enumerate(tiles):
        left = margin + position * (tile_width + margin)
        canvas.paste(tile, (left, margin + label_height))
        draw.text((left, margin), label, fill='black')
    canvas.save(path)
