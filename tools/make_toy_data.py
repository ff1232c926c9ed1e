"""Write the toy data sets that configs/toy/ train on (COCO-format instances, ADE20K-layout semantics).

The same command as the installed `swin-backbones-make-toy-data`. Options: python tools/make_toy_data.py --help
"""
import sys

from swin_backbones.cli.toy_data import main

if __name__ == '__main__':
    sys.exit(main())
