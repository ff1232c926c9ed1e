"""The package's command lines and what they share.

Each module's ``main(argv=None) -> int`` is the body of a tool under ``tools/``. Six of them are also the console
scripts installed with the package (setup.cfg): ``convert``, ``extract``, ``visualize``, ``export_onnx``,
``toy_data`` and ``flops`` (``swin-backbones-convert`` ... ``swin-backbones-flops``); ``demo`` runs as
``tools/demo.py`` only.

:func:`command_line` wraps the console scripts' ``main`` (and ``tools/publish_checkpoint.py``'s): an expected error
(a missing or unreadable file, a checkpoint that does not fit, a bad option value) ends the command with one
``error: ...`` line on stderr and exit status 2, as argparse does for bad arguments; anything else is a bug and
keeps its traceback. :func:`positive_int` is their argparse type for counts.
"""
import argparse
import functools
import sys
from typing import Callable, List, Optional

from ..checkpoint import CheckpointError
from ..export import ExportError

# OSError covers missing, unreadable and existing files (FileNotFoundError, PermissionError, FileExistsError)
# and images PIL cannot identify; TypeError and ValueError bad option values (constructor arguments included).
EXPECTED_ERRORS = (CheckpointError, ExportError, OSError, TypeError, ValueError)
ERROR_STATUS = 2


def positive_int(text: str) -> int:
    """argparse type of counts that must be at least 1 (a batch size, say)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def command_line(main: Callable[[Optional[List[str]]], int]) -> Callable[[Optional[List[str]]], int]:
    """Makes the expected errors of ``main`` one ``error:`` line and exit status 2."""

    @functools.wraps(main)
    def run(argv: Optional[List[str]] = None) -> int:
        try:
            return main(argv)
        except EXPECTED_ERRORS as error:
            print(f'error: {error}', file=sys.stderr)
            return ERROR_STATUS

    return run
