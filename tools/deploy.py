"""Deploy a detector or segmentor to ONNX Runtime through mmdeploy, and check it against PyTorch.

The same command as the installed `swin-backbones-deploy`. Options: python tools/deploy.py --help
From Python: swin_backbones.deploy.
"""
import sys

from swin_backbones.cli.deploy import main

if __name__ == '__main__':
    sys.exit(main())
