"""The deployment's error type and the check that its optional packages are installed."""
from ..export import ExportError

__all__ = ['DeployError', 'INSTALL_HINT', 'require_mmdeploy']

INSTALL_HINT = ('pip install "swin_backbones[deploy]" && pip install --no-deps mmdeploy==1.3.1 '
                '(or: bash tools/install.sh --with deploy)')


class DeployError(ExportError):
    """A model, checkpoint, option or result that cannot be deployed as asked."""


def require_mmdeploy() -> None:
    """Raises :class:`DeployError` naming what to install when mmdeploy or onnxruntime is missing."""
    missing = []
    for module in ('mmdeploy', 'onnxruntime', 'onnx', 'aenum'):
        try:
            __import__(module)
        except ImportError as error:
            missing.append(f'{module} ({error})')
    if missing:
        raise DeployError(f'deploying needs {", ".join(missing)}: install the deploy extra: {INSTALL_HINT}')
