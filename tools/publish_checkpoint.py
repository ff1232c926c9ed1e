"""Keep only the weights and meta of a training checkpoint, for release.

    python tools/publish_checkpoint.py work_dirs/run/iter_4000.pth model.pth

Checkpoints written by mmengine's runner also hold the optimizer, schedulers and the MessageHub's
history buffers: with AdamW about two thirds of the file. The published file (``meta`` and
``state_dict`` only) is smaller and loads with plain ``torch.load(weights_only=True)``. Testing and
resuming need no such step: importing swin_backbones lets mmengine read the training checkpoint itself.
The input is read without running code from it; the output is written atomically.
"""
import argparse
import sys

from swin_backbones.checkpoint import publish_checkpoint
from swin_backbones.cli import command_line


@command_line
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='checkpoint written by mmengine (tools/train.py, mmdet, mmseg)')
    parser.add_argument('output', help='where to write the weights-only checkpoint')
    args = parser.parse_args(argv)
    published = publish_checkpoint(args.checkpoint, args.output)
    print(f"wrote {len(published['state_dict'])} tensors and meta to {args.output}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
