"""Feature pyramids from plain Python: create a backbone by name, extract the features of images.

    backbone = create_backbone('swin-t', checkpoint='swin_tiny_patch4_window7_224.pth')
    pyramids = extract_features(backbone, ['a.jpg', 'b.png'])
    pyramids[0][8].shape  # (1, 192, ceil(H/8), ceil(W/8))
"""
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch

from .models.base import PyramidBackbone
from .registry import registered_backbones

if TYPE_CHECKING:
    import PIL.Image

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

ImageLike = Union[str, os.PathLike, np.ndarray, torch.Tensor, 'PIL.Image.Image']


def _presets() -> Dict[str, Tuple[Type[PyramidBackbone], str]]:
    """{name: (backbone class, arch)} from the registered backbones' ``presets``."""
    return {name: (backbone, arch) for backbone in registered_backbones() for name, arch in backbone.presets.items()}


def list_backbones() -> List[str]:
    """Names accepted by :func:`create_backbone`."""
    return list(_presets())


def create_backbone(name: str, checkpoint: Optional[str] = None, weights_only: bool = True,
                    **overrides) -> PyramidBackbone:
    """A backbone by name, in eval mode, optionally with weights from a local checkpoint in any supported layout.

    ``overrides`` are constructor arguments (``out_indices``, ``window_size``, ``drop_path_rate`` ...).
    Without a checkpoint the weights are randomly initialised.
    """
    presets = _presets()
    if name not in presets:
        raise ValueError(f'unknown backbone {name!r}; choose one of {", ".join(presets)}')
    if 'init_cfg' in overrides or 'pretrained' in overrides:
        raise ValueError('give weights with checkpoint=PATH, not init_cfg/pretrained')
    backbone_type, arch = presets[name]
    init_cfg = dict(type='Pretrained', checkpoint=os.fspath(checkpoint), weights_only=weights_only) \
        if checkpoint is not None else None
    backbone = backbone_type(arch=arch, init_cfg=init_cfg, **overrides)
    backbone.init_weights()
    return backbone.eval()


def read_image_file(path: Union[str, os.PathLike]) -> np.ndarray:
    """The pixels of an image file as an (H, W, 3) uint8 RGB array; OSError if it cannot be read."""
    from PIL import Image
    with Image.open(path) as opened:
        return np.asarray(opened.convert('RGB'))


def load_image(image: ImageLike) -> torch.Tensor:
    """An image as a float (3, H, W) tensor of 0-255 pixel values.

    Accepts a file path, a PIL image, an (H, W, 3) or (H, W) numpy array (uint8 0-255, or float 0-1),
    or a (3, H, W) tensor (uint8 0-255, or float 0-1, the torchvision convention).
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_image_file(image)
    elif type(image).__module__.startswith('PIL.'):
        image = np.asarray(image.convert('RGB'))
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'numpy images must be (H, W, 3) or (H, W), got shape {image.shape}')
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)  # a copy: PIL arrays are read-only
    elif isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f'tensor images must be (3, H, W), got shape {tuple(image.shape)}')
        tensor = image
    else:
        raise TypeError(f'cannot read an image from {type(image).__name__}: give a path, a PIL image, '
                        'a numpy array or a tensor')
    if tensor.shape[1] == 0 or tensor.shape[2] == 0:
        raise ValueError(f'empty image of shape {tuple(tensor.shape)}')
    if tensor.dtype == torch.uint8:
        return tensor.float()
    if not tensor.is_floating_point():
        raise TypeError(f'images must be uint8 (0-255) or float (0-1), got {tensor.dtype}')
    return tensor.float() * 255


def extract_features(backbone: PyramidBackbone, images: Union[ImageLike, Sequence[ImageLike]],
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     batch_size: int = 8, device: Union[str, torch.device, None] = None,
                     dtype: Optional[torch.dtype] = None) -> List[Dict[int, torch.Tensor]]:
    """The feature pyramid of each image: ``[{4: (1, C, ceil(H/4), ceil(W/4)), 8: ..., 16: ..., 32: ...}, ...]``.

    Images may differ in size. They are normalised with ``mean`` / ``std`` (0-255 units, ImageNet's by
    default), and images of the same size run together in batches of ``batch_size``; batching never
    changes a result, which equals running that image alone. ``device`` defaults to the backbone's;
    ``dtype`` (e.g. ``torch.bfloat16``) runs the backbone under autocast. Results are float32 on the CPU.
    """
    if isinstance(images, (str, os.PathLike, np.ndarray, torch.Tensor)) or type(images).__module__.startswith('PIL.'):
        images = [images]
    if batch_size < 1:
        raise ValueError(f'batch_size must be at least 1, got {batch_size}')
    device = torch.device(device) if device is not None else next(backbone.parameters()).device
    backbone = backbone.to(device).eval()
    mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    pixels = [(load_image(image) - mean) / std for image in images]

    by_size: Dict[tuple, List[int]] = OrderedDict()
    for index, image in enumerate(pixels):
        by_size.setdefault(tuple(image.shape[1:]), []).append(index)
    strides = backbone.out_strides
    results: List[Optional[Dict[int, torch.Tensor]]] = [None] * len(pixels)
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            batch = torch.stack([pixels[i] for i in chunk]).to(device)
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                levels = backbone(batch)
            for position, index in enumerate(chunk):
                results[index] = {stride: level[position:position + 1].float().cpu()
                                  for stride, level in zip(strides, levels)}
    return results
