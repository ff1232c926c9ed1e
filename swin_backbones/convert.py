"""Converting checkpoints of any supported layout to this package's layout, and Swin checkpoints to mmdet's
(see tools/convert_checkpoint.py)."""
import os
from dataclasses import dataclass
from typing import Dict, Optional, Type

import torch

from .checkpoint import CheckpointError, backbone_weights, read_checkpoint, unwrap_state_dict, whole_model_prefix
from .files import atomic_output, check_output_path
from .models.base import PyramidBackbone
from .models.swin import SwinTransformer, convert_swin_to_mmdet
from .registry import registered_backbones

LAYOUT_NAME = 'swin_backbones'
# What the converter writes: this package's layout (see swin_backbones.models.swin_layouts), or the
# layout of mmdet's and mmseg's own SwinTransformer (Swin V1 only: they have no Swin V2 or CrossFormer).
TARGET_LAYOUTS = (LAYOUT_NAME, 'mmdet')


@dataclass
class Conversion:
    source: str
    destination: str
    backbone: str
    source_layout: str
    origin: str
    tensors_in: int
    tensors_out: int
    target_layout: str = LAYOUT_NAME
    other_tensors: int = 0  # the other parts of a whole model, written unchanged

    def describe(self) -> str:
        dropped = self.tensors_in - self.tensors_out
        lines = [f'{self.source}: {self.origin}, {self.backbone} in the {self.source_layout} layout',
                 f'  wrote {self.tensors_out} backbone tensors in the {self.target_layout} layout to '
                 f'{self.destination}']
        if self.other_tensors:
            lines.append(f'  and the {self.other_tensors} tensors of the other parts of the model, unchanged')
        if dropped > 0:
            lines.append(f'  dropped {dropped} tensors not used by the backbone (classifier head, final norm, '
                         'derived index, mask and coordinate buffers)')
        elif dropped < 0:
            lines.append(f'  added {-dropped} derived relative_position_index buffers, which mmdet keeps in its '
                         'state dict')
        return '\n'.join(lines)


def identify_backbone(state_dict: Dict[str, torch.Tensor]) -> Type[PyramidBackbone]:
    backbones = registered_backbones()
    matches = [backbone for backbone in backbones if backbone.recognizes(state_dict)]
    if len(matches) != 1:
        sample = ', '.join(list(state_dict)[:8])
        raise CheckpointError(f'cannot tell which backbone this checkpoint belongs to (known: '
                              f'{", ".join(b.__name__ for b in backbones)}); its first keys: {sample}')
    return matches[0]


def convert_checkpoint(source: str, destination: str, prefix: Optional[str] = None, weights_only: bool = True,
                       to: str = LAYOUT_NAME, force: bool = False) -> Conversion:
    """Converts the backbone weights of ``source`` (any supported layout, a whole detector/segmentor checkpoint
    included) and writes them to ``destination``, atomically; never replaces ``source``, and replaces an
    existing ``destination`` only with ``force=True``.

    ``to='swin_backbones'``: the backbone alone in this package's layout, ``{'state_dict': ..., 'meta': ...}``,
    which ``init_cfg=dict(type='Pretrained', checkpoint=...)`` and ``load_state_dict`` load.
    ``to='mmdet'`` (Swin V1): for mmdet's and mmseg's own ``SwinTransformer``, which loads it strictly. A whole
    detector or segmentor checkpoint keeps its other parts and its ``meta`` (mmdet's config with mmdet's Swin
    loads it); a backbone checkpoint gives the backbone's keys alone.
    """
    if to not in TARGET_LAYOUTS:
        raise ValueError(f'unknown target layout {to!r}; choose one of {", ".join(TARGET_LAYOUTS)}')
    check_output_path(destination, force, source)
    checkpoint = read_checkpoint(source, weights_only=weights_only)
    whole = unwrap_state_dict(checkpoint)
    state_dict, origin = backbone_weights(whole, prefix)
    backbone = identify_backbone(state_dict)
    converted, layout = backbone.convert_state_dict(state_dict)
    info = dict(layout=to, backbone=backbone.__name__, source_layout=layout, source=os.path.basename(source))
    conversion = Conversion(source, destination, backbone.__name__, layout, origin, len(state_dict), len(converted), to)
    if to == LAYOUT_NAME:
        written = {'state_dict': converted, 'meta': info}
    else:
        if backbone is not SwinTransformer:
            raise ValueError(f'mmdet and mmseg have no {backbone.__name__}: --to mmdet converts Swin Transformer '
                             '(V1) checkpoints')
        converted = convert_swin_to_mmdet(converted)
        conversion.tensors_out = len(converted)
        prefix = prefix if prefix is not None else whole_model_prefix(whole)
        others = {key: value for key, value in whole.items() if not key.startswith(prefix)} if prefix else {}
        conversion.other_tensors = len(others)
        meta = checkpoint.get('meta') if prefix and isinstance(checkpoint.get('meta'), dict) else {}
        written = {'state_dict': {**{prefix + key: value for key, value in converted.items()}, **others},
                   'meta': {**meta, **info}}
    with atomic_output(destination, suffix='.pth') as temporary:
        torch.save(written, temporary)
    return conversion
