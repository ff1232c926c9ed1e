"""Converting checkpoints of any supported layout to this package's layout (see tools/convert_checkpoint.py)."""
import os
from dataclasses import dataclass
from typing import Dict, Optional, Type

import torch

from .checkpoint import CheckpointError, extract_state_dict, read_checkpoint, unwrap_state_dict, whole_model_prefix
from .files import atomic_output
from .models import BACKBONES
from .models.base import PyramidBackbone

LAYOUT_NAME = 'swin_backbones'


@dataclass
class Conversion:
    source: str
    destination: str
    backbone: str
    source_layout: str
    from_whole_model: bool
    tensors_in: int
    tensors_out: int

    def describe(self) -> str:
        origin = 'the backbone of a whole detector/segmentor checkpoint' if self.from_whole_model else 'a backbone'
        dropped = self.tensors_in - self.tensors_out
        return (f'{self.source}: {origin}, {self.backbone} in the {self.source_layout} layout\n'
                f'  wrote {self.tensors_out} tensors in the {LAYOUT_NAME} layout to {self.destination}'
                + (f'\n  dropped {dropped} tensors not used by the backbone (classifier head, final norm, '
                   'derived index, mask and coordinate buffers)' if dropped else ''))


def identify_backbone(state_dict: Dict[str, torch.Tensor]) -> Type[PyramidBackbone]:
    matches = [backbone for backbone in BACKBONES if backbone.recognizes(state_dict)]
    if len(matches) != 1:
        sample = ', '.join(list(state_dict)[:8])
        raise CheckpointError(f'cannot tell which backbone this checkpoint belongs to (known: '
                              f'{", ".join(b.__name__ for b in BACKBONES)}); its first keys: {sample}')
    return matches[0]


def convert_checkpoint(source: str, destination: str, prefix: Optional[str] = None,
                       weights_only: bool = True) -> Conversion:
    """Writes the backbone weights of ``source`` (any supported layout) to ``destination`` in this package's
    layout, as ``{'state_dict': ..., 'meta': ...}``. The write is atomic and never replaces ``source``."""
    if os.path.exists(destination) and os.path.samefile(source, destination):
        raise ValueError(f'refusing to overwrite the input checkpoint {source}; choose another destination')
    whole_state_dict = unwrap_state_dict(read_checkpoint(source, weights_only=weights_only))
    prefix = prefix if prefix is not None else whole_model_prefix(whole_state_dict)
    state_dict = extract_state_dict(whole_state_dict, prefix=prefix)
    backbone = identify_backbone(state_dict)
    converted, layout = backbone.convert_state_dict(state_dict)
    meta = dict(layout=LAYOUT_NAME, backbone=backbone.__name__, source_layout=layout,
                source=os.path.basename(source))
    with atomic_output(destination, suffix='.pth') as temporary:
        torch.save({'state_dict': converted, 'meta': meta}, temporary)
    return Conversion(source, destination, backbone.__name__, layout, bool(prefix),
                      len(state_dict), len(converted))


