"""Keep only the weights (and meta) of a training checkpoint, for release or for other tools.

    python tools/publish_checkpoint.py work_dirs/run/iter_4000.pth model.pth

Checkpoints written by mmengine's runner also hold the optimizer, schedulers and the MessageHub's
history buffers. Since torch 2.6, ``torch.load`` refuses those by default, so mmdet's and mmseg's own
tools/test.py cannot read them; the published file (``meta`` and ``state_dict`` only) loads
everywhere with ``weights_only=True``. The input is read without running code from it.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runner_utils import read_runner_checkpoint  # noqa: E402


def publish(src: str, dst: str) -> dict:
    checkpoint = read_runner_checkpoint(src, map_location='cpu')
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise SystemExit(f'{src} has no state_dict: not a checkpoint written by mmengine')
    published = {'meta': checkpoint.get('meta', {}), 'state_dict': checkpoint['state_dict']}
    if os.path.abspath(src) == os.path.abspath(dst):
        raise SystemExit('the output must not overwrite the input')
    tmp = dst + '.partial'
    torch.save(published, tmp)
    torch.load(tmp, map_location='cpu', weights_only=True)  # what every loader can read
    os.replace(tmp, dst)
    return published


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('checkpoint', help='checkpoint written by mmengine (tools/train.py, mmdet, mmseg)')
    parser.add_argument('output', help='where to write the weights-only checkpoint')
    args = parser.parse_args(argv)
    published = publish(args.checkpoint, args.output)
    print(f"wrote {len(published['state_dict'])} tensors and meta to {args.output}")


if __name__ == '__main__':
    main()
