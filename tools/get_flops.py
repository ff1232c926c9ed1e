"""Parameters and FLOPs of a config's model at the papers' input size (or --shape H W), without a data set.

The same command as the installed `swin-backbones-flops`. Options: python tools/get_flops.py --help
From Python: swin_backbones.count_flops.
"""
import sys

from swin_backbones.cli.flops import main

if __name__ == '__main__':
    sys.exit(main())
