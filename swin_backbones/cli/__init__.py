"""The package's command lines: each module's ``main(argv=None) -> int`` is a console script installed
with the package (``swin-backbones-...``) and the body of the matching ``tools/*.py``."""
