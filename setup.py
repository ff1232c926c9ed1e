"""Builds the package; the metadata is in setup.cfg.

A wheel carries the repository's configs/ and tools/ inside the package, the OpenMMLab way
(``swin_backbones/.mim/configs`` and ``.mim/tools``, as mmdet and mmseg ship theirs), so an installed
package is usable without its repository: ``swin_backbones.config_path(name)`` finds a config. The model
index (``model-index.yml`` and the configs' ``metafile.yml``) goes along, for ``mim search``. They are
copied into the build directory when the wheel is built; the source tree keeps no copies.
"""
import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
# The command lines that work from an installed package. Not shipped: install.sh and run.sh (they set up a
# checkout), gpu_check (it runs the checkout's tests and benchmarks/) and model_index.py (it rewrites the
# checkout's metafiles).
TOOLS = ('train.py', 'test.py', 'dist_train.sh', 'dist_test.sh', 'demo.py', 'convert_checkpoint.py',
         'extract_features.py', 'visualize_features.py', 'export_onnx.py', 'get_flops.py', 'make_toy_data.py',
         'publish_checkpoint.py', 'deploy.py')
CONFIGS = ('*.py', 'metafile.yml')


class BuildWithMimResources(build_py):
    """build_py that also copies the configs (with their metafiles), model-index.yml and the tools into
    swin_backbones/.mim/."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads configs/ and tools/ from the checkout
            return
        target = os.path.join(self.build_lib, 'swin_backbones', '.mim')
        if os.path.isdir(target):
            shutil.rmtree(target)
        for pattern in CONFIGS:
            for source in sorted(glob.glob(os.path.join(ROOT, 'configs', '**', pattern), recursive=True)):
                self._copy(source, os.path.join(target, os.path.relpath(source, ROOT)))
        self._copy(os.path.join(ROOT, 'model-index.yml'), os.path.join(target, 'model-index.yml'))
        for name in TOOLS:
            self._copy(os.path.join(ROOT, 'tools', name), os.path.join(target, 'tools', name))

    def _copy(self, source: str, destination: str) -> None:
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        self.copy_file(source, destination, preserve_mode=True)


setup(cmdclass={'build_py': BuildWithMimResources})
