"""Writing output files and directories so that a reader never sees a partial one, and never over one by
accident."""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Optional


def check_output_path(path: str, force: bool = False, source: Optional[str] = None) -> None:
    """Refuses to write ``path`` over the input ``source`` (always) or over another existing file (unless
    ``force``): a ValueError or a FileExistsError naming the file."""
    if not os.path.exists(path):
        return
    if source is not None and os.path.exists(source) and os.path.samefile(source, path):
        raise ValueError(f'refusing to overwrite the input {source}; choose another destination')
    if not force:
        raise FileExistsError(f'{path} exists; pass --force (force=True) to replace it')


@contextlib.contextmanager
def atomic_output(path: str, suffix: str = '') -> Iterator[str]:
    """Yields a temporary path next to ``path`` (directories created) to write to; it becomes ``path`` when
    the block finishes and is removed if the block raises.

    The file gets the permissions a plain ``open`` would give it, not mkstemp's 0600.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix='.partial-', suffix=suffix)
    os.close(handle)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def atomic_output_dir(path: str, force: bool = False) -> Iterator[str]:
    """Yields a new, empty temporary directory next to ``path`` to fill; it becomes ``path`` when the block
    finishes (an existing ``path`` is replaced only with ``force``, see :func:`check_output_path`) and is
    removed if the block raises, so ``path`` never holds a partial result.

    The temporary directory is made first: an unwritable destination fails before any work is done.
    """
    check_output_path(path, force)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        temporary = tempfile.mkdtemp(dir=parent, prefix='.partial-')
    except OSError as error:
        raise OSError(error.errno, f'cannot write {path}: {error.strerror}', error.filename) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o777 & ~umask)
        yield temporary
        check_output_path(path, force)  # something may have appeared there meanwhile
        if os.path.lexists(path):
            replaced = tempfile.mkdtemp(dir=parent, prefix='.replaced-')
            os.replace(path, os.path.join(replaced, 'old'))
            os.replace(temporary, path)
            shutil.rmtree(replaced, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
