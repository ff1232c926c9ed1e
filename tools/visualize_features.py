"""Render the feature pyramids of images (first three principal components as RGB).

The same command as the installed `swin-backbones-visualize`. Options: python tools/visualize_features.py --help
"""
import sys

from swin_backbones.cli.visualize import main

if __name__ == '__main__':
    sys.exit(main())
