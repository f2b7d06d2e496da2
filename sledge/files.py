"""Writing outputs so that nothing is half-written: a temporary name beside the target, renamed on success."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from sledge.errors import SledgeError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def partial_path(path: str | Path) -> Iterator[str]:
    """
    The name of a new, empty temporary file beside `path`; when the block ends without an error the
    file is renamed to `path` (atomically: readers see the old file or the new one, never a part),
    else it is removed and `path` is left as it was. Concurrent writers each rename a complete file.
    """
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)  # write through a link
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps at most 64 characters of the target's, so a name near the system's
    # limit (255 bytes) still has room for the prefix and suffix.
    handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:64]}.", suffix=".partial")
    os.close(handle)
    try:
        yield partial
        os.chmod(partial, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@contextmanager
def replaced_on_success(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """`partial_path`, opened in `mode`."""
    with partial_path(path) as partial, open(partial, mode) as file:
        yield file


def write_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through `replaced_on_success`."""
    with replaced_on_success(path, "wb") as file:
        file.write(data)


def check_input_path(path: str | Path, option: str, file: bool = False) -> None:
    """
    Before any computation: the local file or folder (a file, with `file`) named by `option` exists.
    URLs are left to `cached_path`; a data path with a split selector (`train.csv#dev`) is checked
    without it.
    """
    text = str(path)
    if "://" in text:
        return
    if not os.path.exists(text) and "#" in text and os.path.exists(text.partition("#")[0]):
        text = text.partition("#")[0]
    if not os.path.exists(text):
        raise SledgeError(f"{option}: {path} does not exist")
    if file and os.path.isdir(text):
        raise SledgeError(f"{option}: {path} is a folder, not a file")


def check_output_file(path: str | Path, option: str) -> None:
    """
    Before any computation: `path` (named by `option`) can be written, i.e. its name is legal, it is
    not a folder and a file can be created in the nearest existing folder above it (missing folders
    are created only when writing).
    """
    target = _legal(path, option)
    if target.is_dir():
        raise SledgeError(f"{option}: {path} is a folder, not a file")
    _check_writable_parent(target, option)


def check_output_dir(path: str | Path, option: str) -> None:
    """Before any computation: the folder `path` (named by `option`) exists writable or can be created."""
    target = _legal(path, option)
    if target.exists():
        if not target.is_dir():
            raise SledgeError(f"{option}: {path} exists and is not a folder")
        _probe(target, f"{option}: the folder {path} is not writable")
        return
    _check_writable_parent(target, option)


def _legal(path: str | Path, option: str) -> Path:
    """`path` as a Path, once every part of it is a name this system accepts."""
    target = Path(path)
    limit = os.pathconf(".", "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    for part in target.parts:
        if len(os.fsencode(part)) > limit:
            raise SledgeError(f"{option}: {path}: the name {part[:40]}... is longer than {limit} bytes")
    return target


def _check_writable_parent(target: Path, option: str) -> None:
    parent = target.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SledgeError(f"{option}: cannot create {target}: {parent} is not a folder")
    _probe(parent, f"{option}: cannot write {target}: the folder {parent} is not writable")


def _probe(folder: Path, message: str) -> None:
    """Create and remove a file in `folder`: `os.access` says yes to root even where nothing can be
    written (a read-only file system, /proc)."""
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".sledge-probe.")
    except OSError as error:
        raise SledgeError(f"{message} ({error.strerror})") from error
    os.close(handle)
    os.remove(probe)


def write_files(directory: str | Path, files: dict[str, bytes]) -> None:
    """
    Write every file of `files` (name -> bytes) into `directory` (created if missing): all are written
    to temporary names first and renamed only once every one is complete, so a failure leaves the
    earlier versions of all of them.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        for name, data in files.items():
            Path(stack.enter_context(partial_path(folder / name))).write_bytes(data)
