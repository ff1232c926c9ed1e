"""Extract the feature pyramid of every image in a folder, one file per image.

The same command as the installed `swin-backbones-extract`. Options: python tools/extract_features.py --help
"""
import sys

from swin_backbones.cli.extract import main

if __name__ == '__main__':
    sys.exit(main())
