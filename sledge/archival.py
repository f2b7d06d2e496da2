"""
Model archives, read and written safely.

An archive (`model.tar.gz`) may hold only regular files and folders, every one of them inside the
extraction folder: a member with an absolute name, a `..` that leads outside, a link or a device is
refused before anything of it is written. Weights are read with `torch.load(weights_only=True)`, so a
pickle that would run code is refused whatever the environment says (`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`
included). A truncated or non-gzip archive is an `ArchiveError` naming the archive, and the folder it
was being extracted to is removed. `sledge.patches` puts `extracted_archive` and `read_state_dict` in
place of AllenNLP's own, so every archive AllenNLP loads in a process that imported sledge (predict,
evaluate and sledge's commands) goes through them.
"""

import glob
import io
import json
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import torch

from sledge.errors import ArchiveError
from sledge.files import replaced_on_success

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "weights.th"
# Folders extracted by `extracted_archive`, and the archive each came from (for error messages).
_EXTRACTED: dict[str, str] = {}
_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, OSError)


def _check_member(archive_file: str, member: tarfile.TarInfo) -> None:
    """Refuse a member that is not a plain file or folder inside the extraction folder."""
    name = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        raise ArchiveError(
            f"{archive_file}: refused: member {member.name!r} is a link (to {member.linkname!r}); a model "
            "archive holds only files and folders"
        )
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{archive_file}: refused: member {member.name!r} is not a file or a folder")
    if name.is_absolute() or ".." in name.parts:
        raise ArchiveError(
            f"{archive_file}: refused: member {member.name!r} would be written outside the folder the "
            "archive is extracted to"
        )


def safe_extract(archive_file: str | os.PathLike, target: str | os.PathLike) -> None:
    """
    Extract the gzipped tar `archive_file` into the existing folder `target`, member by member, each
    checked first. Raises `ArchiveError` (naming the archive) for an unsafe member or an unreadable
    archive; what was extracted before the error stays in `target` for the caller to remove.
    """
    archive_file = str(archive_file)
    try:
        with tarfile.open(archive_file, "r:gz") as tar:
            for member in tar:
                _check_member(archive_file, member)
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, target, filter="data")
                else:  # Python before 3.11.4: the checks above are the whole defence
                    tar.extract(member, target)
    except ArchiveError:
        raise
    except FileNotFoundError as error:
        if not os.path.exists(archive_file):
            raise ArchiveError(f"{archive_file}: no such model archive") from error
        raise ArchiveError(f"{archive_file}: could not be extracted ({error})") from error
    except _UNREADABLE as error:
        raise ArchiveError(
            f"{archive_file}: not a readable model archive (truncated, or not a .tar.gz): "
            f"{error or type(error).__name__}"
        ) from error


@contextmanager
def extracted_archive(resolved_archive_file: str, cleanup: bool = True) -> Iterator[str]:
    """
    AllenNLP's `extracted_archive`, made safe: `safe_extract` into a new temporary folder, which is
    removed whenever extraction fails (and when the block ends, with `cleanup`). The archive must hold
    a readable `config.json`.
    """
    tempdir = tempfile.mkdtemp(prefix="sledge-archive-")
    try:
        safe_extract(resolved_archive_file, tempdir)
        _check_config(resolved_archive_file, tempdir)
        _EXTRACTED[tempdir] = str(resolved_archive_file)
    except BaseException:
        shutil.rmtree(tempdir, ignore_errors=True)
        raise
    try:
        yield tempdir
    finally:
        if cleanup:
            shutil.rmtree(tempdir, ignore_errors=True)


def _check_config(archive_file: str, directory: str) -> None:
    path = Path(directory, CONFIG_NAME)
    if not path.is_file():
        raise ArchiveError(f"{archive_file}: no {CONFIG_NAME} in it; not an AllenNLP model archive")
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ArchiveError(f"{archive_file}: its {CONFIG_NAME} is not valid JSON ({error})") from error


def describe(path: str | os.PathLike) -> str:
    """`path`, or 'ARCHIVE (member NAME)' when it lies in a folder that `extracted_archive` made."""
    text = str(path)
    for directory, archive in _EXTRACTED.items():
        if text.startswith(directory + os.sep):
            return f"{archive} (member {os.path.relpath(text, directory)})"
    return text


def load_weights(path: str | os.PathLike, cuda_device: int = -1) -> dict[str, torch.Tensor]:
    """A state dict read with `weights_only=True`; anything else is an `ArchiveError` naming the file."""
    location = "cpu" if cuda_device < 0 else f"cuda:{cuda_device}"
    if not os.path.isfile(path):
        raise ArchiveError(f"{describe(path)}: no weights file")
    try:
        state = torch.load(path, map_location=location, weights_only=True)
    except Exception as error:  # noqa: BLE001 (whatever torch raises, the file is not plain weights)
        # torch's own message goes on to suggest `weights_only=False`: keep only what was refused
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
        reason = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0])
        raise ArchiveError(
            f"{describe(path)}: refused to load the weights: not a plain file of tensors ({reason})"
        ) from error
    if not isinstance(state, dict):
        raise ArchiveError(f"{describe(path)}: the weights are a {type(state).__name__}, not a state dict")
    return state


def read_state_dict(
    path: str | os.PathLike,
    strip_prefix: str | None = None,
    ignore: list[str] | None = None,
    strict: bool = True,
    cuda_device: int = -1,
) -> dict[str, torch.Tensor]:
    """AllenNLP's `read_state_dict` with `load_weights` (weights only) as its loader."""
    state = load_weights(path, cuda_device)
    if strip_prefix is None and ignore is None:
        return state
    # AllenNLP's own renaming, on the weights already read safely (written back as plain tensors).
    from sledge.patches import ORIGINALS

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return ORIGINALS["read_state_dict"](buffer, strip_prefix, ignore, strict, cuda_device)


def read_config(archive: str | os.PathLike) -> dict:
    """The `config.json` of an archive or serialization folder, read without extracting anything else."""
    archive = str(archive)
    if os.path.isdir(archive):
        path = Path(archive, CONFIG_NAME)
        if not path.is_file():
            raise ArchiveError(f"{archive}: no {CONFIG_NAME} in this folder; not a serialization folder")
        return json.loads(path.read_text(encoding="utf-8"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                if member.isfile() and PurePosixPath(member.name) == PurePosixPath(CONFIG_NAME):
                    return json.loads(tar.extractfile(member).read().decode("utf-8"))  # type: ignore[union-attr]
    except _UNREADABLE as error:
        raise ArchiveError(
            f"{archive}: not a readable model archive (truncated, or not a .tar.gz): {error}"
        ) from error
    except (ValueError, UnicodeDecodeError) as error:
        raise ArchiveError(f"{archive}: its {CONFIG_NAME} is not valid JSON ({error})") from error
    raise ArchiveError(f"{archive}: no {CONFIG_NAME} in it; not an AllenNLP model archive")


def stage_archive(source: str, staging: str) -> None:
    """Put the contents of an archive, or the archivable files of a serialization folder, in `staging`."""
    if not os.path.isdir(source):
        safe_extract(source, staging)
        return
    config = read_config(source)
    names = [CONFIG_NAME, "meta.json", "vocabulary"]
    patterns = config.get("include_in_archive") or []
    for pattern in patterns:
        names += [os.path.relpath(match, source) for match in glob.glob(os.path.join(source, pattern))]
    for name in dict.fromkeys(names):
        origin = os.path.join(source, name)
        if os.path.isdir(origin):
            shutil.copytree(origin, os.path.join(staging, name), symlinks=False)
        elif os.path.isfile(origin):
            os.makedirs(os.path.dirname(os.path.join(staging, name)), exist_ok=True)
            shutil.copyfile(origin, os.path.join(staging, name))


def write_archive(
    source: str | os.PathLike,
    output_file: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    extra_files: dict[str, str] | None = None,
) -> None:
    """
    Write `output_file`: the archive (or serialization folder) `source` with `state_dict` as its
    weights and `extra_files` (name -> text) added. Written to a temporary name beside it and renamed
    on success; `source` is only read.
    """
    output = Path(output_file)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sledge-archive-") as staging:
        stage_archive(str(source), staging)
        torch.save(state_dict, os.path.join(staging, WEIGHTS_NAME))
        for name, text in (extra_files or {}).items():
            Path(staging, name).write_text(text, encoding="utf-8")
        with replaced_on_success(output, "wb") as file, tarfile.open(fileobj=file, mode="w:gz") as tar:
            for name in sorted(os.listdir(staging)):
                tar.add(os.path.join(staging, name), arcname=name)
