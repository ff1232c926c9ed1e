"""Where the package's configs and tools are: inside an installed wheel (the OpenMMLab way, under
``swin_backbones/.mim/configs`` and ``.mim/tools``, copied there when the wheel is built) or, in a
source checkout or an editable install, the repository's ``configs/`` and ``tools/``.

    swin_backbones.config_path('mask-rcnn_swin-t-p4-w7_fpn_ms-crop-1x_coco')       # by file name, .py optional
    swin_backbones.config_path('toy/upernet_swin-toy_toy-ade.py')          # or relative to configs/
    swin_backbones.tool_path('train.py')
"""
import difflib
import os
import os.path as osp
from typing import List

__all__ = ['config_path', 'list_configs', 'tool_path']

_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))


def resource_dir(kind: str) -> str:
    """``.mim/<kind>`` of the installed package, else ``<kind>/`` of the source checkout it lives in."""
    installed = osp.join(_PACKAGE_DIR, '.mim', kind)
    if osp.isdir(installed):
        return installed
    checkout = osp.dirname(_PACKAGE_DIR)
    if osp.isdir(osp.join(checkout, kind)) and osp.isfile(osp.join(checkout, 'setup.cfg')):
        return osp.join(checkout, kind)
    raise FileNotFoundError(f'swin_backbones at {_PACKAGE_DIR} has no {kind}: neither {installed} (a wheel built '
                            f'from the repository carries them) nor a source checkout around it')


def list_configs() -> List[str]:
    """Every config, as a path relative to the configs folder (``swin/...``, ``toy/...``), without ``_base_``."""
    root = resource_dir('configs')
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if name != '_base_' and not name.startswith(('.', '_')))
        found.extend(osp.relpath(osp.join(folder, name), root) for name in files if name.endswith('.py'))
    return sorted(found)


def config_path(name: str) -> str:
    """The absolute path of a config, given as a path relative to the configs folder or as its file name
    alone (``.py`` optional); a file name that is not unique or not found is an error listing candidates."""
    root = resource_dir('configs')
    relative = name if name.endswith('.py') else name + '.py'
    if '/' in relative or os.sep in relative:
        path = osp.join(root, relative)
        if osp.isfile(path):
            return path
        matches = []
    else:
        matches = [config for config in list_configs() if osp.basename(config) == relative]
        if len(matches) == 1:
            return osp.join(root, matches[0])
        if len(matches) > 1:
            raise ValueError(f'config name {name!r} is ambiguous: {", ".join(matches)}; give the folder too')
    stem = osp.basename(relative)[:-len('.py')]
    close = ([config for config in list_configs() if osp.basename(config).startswith(stem)]
             or difflib.get_close_matches(relative, list_configs(), n=5, cutoff=0.5))[:8]
    raise FileNotFoundError(f'no config {name!r} in {root}' + (f'; close matches: {", ".join(close)}' if close else
                                                               '; swin_backbones.list_configs() lists them'))


def tool_path(name: str) -> str:
    """The absolute path of a tool (``train.py``, ``test.py``, ``dist_train.sh``, ...)."""
    path = osp.join(resource_dir('tools'), name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no tool {name!r} in {osp.dirname(path)}')
    return path
