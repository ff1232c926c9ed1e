"""Export a backbone to ONNX with dynamic batch, height and width, optionally checked in onnxruntime.

The same command as the installed `swin-backbones-export-onnx`. Options: python tools/export_onnx.py --help
From Python: swin_backbones.export_onnx and swin_backbones.check_onnx.
"""
import sys

from swin_backbones.cli.export_onnx import main

if __name__ == '__main__':
    sys.exit(main())
