"""The package's command lines: each module's ``main(argv=None) -> int`` is a console script installed
with the package (``swin-backbones-...``) and the body of the matching ``tools/*.py``.

Every ``main`` is wrapped in :func:`command_line`: an expected error (a missing or unreadable file, a
checkpoint that does not fit, a bad option value) ends the command with one ``error: ...`` line on stderr
and exit status 2, as argparse does for bad arguments; anything else is a bug and keeps its traceback.
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
