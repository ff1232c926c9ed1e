"""Converting checkpoints of any supported layout to this package's layout (see tools/convert_checkpoint.py)."""
import os
from dataclasses import dataclass
from typing import Dict, Optional, Type

import torch

from .checkpoint import CheckpointError, read_backbone_weights
from .files import atomic_output
from .models.base import PyramidBackbone, registered_backbones

LAYOUT_NAME = 'swin_backbones'


@dataclass
class Conversion:
    source: str
    destination: str
    backbone: str
    source_layout: str
    origin: str
    tensors_in: int
    tensors_out: int

    def describe(self) -> str:
        dropped = self.tensors_in - self.tensors_out
        return (f'{self.source}: {self.origin}, {self.backbone} in the {self.source_layout} layout\n'
                f'  wrote {self.tensors_out} tensors in the {LAYOUT_NAME} layout to {self.destination}'
                + (f'\n  dropped {dropped} tensors not used by the backbone (classifier head, final norm, '
                   'derived index, mask and coordinate buffers)' if dropped else ''))


def identify_backbone(state_dict: Dict[str, torch.Tensor]) -> Type[PyramidBackbone]:
    backbones = registered_backbones()
    matches = [backbone for backbone in backbones if backbone.recognizes(state_dict)]
    if len(matches) != 1:
        sample = ', '.join(list(state_dict)[:8])
        raise CheckpointError(f'cannot tell which backbone this checkpoint belongs to (known: '
                              f'{", ".join(b.__name__ for b in backbones)}); its first keys: {sample}')
    return matches[0]


def convert_checkpoint(source: str, destination: str, prefix: Optional[str] = None,
                       weights_only: bool = True) -> Conversion:
    """Writes the backbone weights of ``source`` (any supported layout) to ``destination`` in this package's
    layout, as ``{'state_dict': ..., 'meta': ...}``. The write is atomic and never replaces ``source``."""
    if os.path.exists(destination) and os.path.samefile(source, destination):
        raise ValueError(f'refusing to overwrite the input checkpoint {source}; choose another destination')
    state_dict, origin = read_backbone_weights(source, prefix=prefix, weights_only=weights_only)
    backbone = identify_backbone(state_dict)
    converted, layout = backbone.convert_state_dict(state_dict)
    meta = dict(layout=LAYOUT_NAME, backbone=backbone.__name__, source_layout=layout,
                source=os.path.basename(source))
    with atomic_output(destination, suffix='.pth') as temporary:
        torch.save({'state_dict': converted, 'meta': meta}, temporary)
    return Conversion(source, destination, backbone.__name__, layout, origin, len(state_dict), len(converted))
