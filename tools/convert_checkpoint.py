"""Convert a checkpoint of any supported layout to this package's layout.

The same command as the installed `swin-backbones-convert`. Options: python tools/convert_checkpoint.py --help
"""
import sys

from swin_backbones.cli.convert import main

if __name__ == '__main__':
    sys.exit(main())
