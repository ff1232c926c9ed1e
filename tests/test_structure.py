"""The package's structure: no import loops, no private names reached across files, and the API lists exactly
the registered backbones (tests/test_adding_a_backbone.py adds one)."""
import ast
import re
import os.path as osp
import pkgutil
import subprocess
import sys

import pytest

import swin_backbones
from swin_backbones import list_backbones
from swin_backbones.registry import registered_backbones

PACKAGE_DIR = osp.dirname(swin_backbones.__file__)
MODULES = sorted(name for _, name, _ in pkgutil.walk_packages([PACKAGE_DIR], 'swin_backbones.')) + ['swin_backbones']


def module_path(name: str) -> str:
    relative = name.split('.')[1:]
    path = osp.join(PACKAGE_DIR, *relative)
    return osp.join(path, '__init__.py') if osp.isdir(path) else path + '.py'


def package_imports(name: str):
    """(imported module, names imported, whether at module level) for each import of the package's own
    modules in ``name``."""
    tree = ast.parse(open(module_path(name)).read())
    top_level = set(map(id, tree.body))
    package = name if module_path(name).endswith('__init__.py') else name.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                target = f'{base}.{node.module}' if node.module else base
            else:
                target = node.module or ''
            if not (target == 'swin_backbones' or target.startswith('swin_backbones.')):
                continue
            names = [alias.name for alias in node.names]
            # ``from package import module`` imports that module (the package is its parent, imported anyway).
            submodules = [f'{target}.{name}' for name in names if f'{target}.{name}' in MODULES]
            for module in submodules or [target]:
                found.append((module, [] if submodules else names, id(node) in top_level))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith('swin_backbones'):
                    found.append((alias.name, [], id(node) in top_level))
    return found


def test_no_import_inside_functions_of_the_package_itself():
    """An import of the package from inside a function hides an import loop."""
    hidden = [(name, target) for name in MODULES for target, _, top in package_imports(name) if not top]
    assert hidden == []


def test_no_private_names_imported_from_another_file():
    private = [(name, target, imported) for name in MODULES for target, names, _ in package_imports(name)
               for imported in names if imported.startswith('_') and not imported.endswith('__')]
    assert private == []


def test_module_level_imports_have_no_cycle():
    """Every module-level import of the package's own modules, a package's __init__ included: a submodule
    that imports its package's __init__ while that __init__ imports it back is a loop too."""
    graph = {name: {target for target, _, top in package_imports(name) if top and target in MODULES and target != name}
             for name in MODULES}
    visiting, done = set(), set()

    def visit(node, path):
        assert node not in visiting, f'import cycle: {" -> ".join(path + [node])}'
        if node in done:
            return
        visiting.add(node)
        for target in graph[node]:
            visit(target, path + [node])
        visiting.discard(node)
        done.add(node)
    for name in MODULES:
        visit(name, [])


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    processes = {name: subprocess.Popen([sys.executable, '-c', f'import {name}'], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True) for name in MODULES}
    failed = {name: process.communicate()[0][-2000:] for name, process in processes.items() if process.wait()}
    assert failed == {}


def test_the_api_lists_every_registered_backbone_by_its_presets():
    assert {backbone.__name__ for backbone in registered_backbones()} == {
        'SwinTransformer', 'SwinTransformerV2', 'CrossFormer'}
    assert list_backbones() == [name for backbone in registered_backbones() for name in backbone.presets]
    assert {'swin-t', 'swinv2-l', 'crossformer-pp-s'} <= set(list_backbones())
    assert all(getattr(swin_backbones, backbone.__name__) is backbone for backbone in registered_backbones())


def test_every_constructor_argument_is_documented_in_the_class_docstring():
    """Each backbone's own arguments in its Args section, the common ones added from PyramidBackbone's single
    description of them (or the backbone's own, where it means something else there, as SwinV2's frozen_stages)."""
    for backbone in registered_backbones():
        documented = set(re.findall(r'^\s{8}(\w+) \(', backbone.__doc__, re.MULTILINE))
        assert set(backbone.argument_names()) <= documented, (backbone.__name__,
                                                               set(backbone.argument_names()) - documented)
        assert backbone.__doc__.count('\n        frozen_stages (') == 1
