"""Builds the package; the metadata is in setup.cfg.

A wheel carries the repository's configs/ and tools/ inside the package, the OpenMMLab way
(``swin_backbones/.mim/configs`` and ``.mim/tools``, as mmdet and mmseg ship theirs), so an installed
package is usable without its repository: ``swin_backbones.config_path(name)`` finds a config. They are
copied into the build directory when the wheel is built; the source tree keeps no copies.
"""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
# The command lines that work from an installed package; install.sh and run.sh set up a checkout.
TOOLS = ('*.py', 'dist_train.sh', 'dist_test.sh')


class BuildWithMimResources(build_py):
    """build_py that also copies configs/**/*.py and the tools into swin_backbones/.mim/."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads configs/ and tools/ from the checkout
            return
        target = os.path.join(self.build_lib, 'swin_backbones', '.mim')
        if os.path.isdir(target):
            shutil.rmtree(target)
        for source in sorted(glob.glob(os.path.join(ROOT, 'configs', '**', '*.py'), recursive=True)):
            self._copy(source, os.path.join(target, os.path.relpath(source, ROOT)))
        for pattern in TOOLS:
            for source in sorted(glob.glob(os.path.join(ROOT, 'tools', pattern))):
                self._copy(source, os.path.join(target, 'tools', os.path.basename(source)))

    def _copy(self, source: str, destination: str) -> None:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        self.copy_file(source, destination, preserve_mode=True)


setup(cmdclass={'build_py': BuildWithMimResources})
