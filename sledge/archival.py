"""
Model archives, read and written safely.

An archive (`model.tar.gz`) may hold only regular files and folders, every one of them inside the
extraction folder: a member with an absolute name, a `..` that leads outside, a link or a device is
refused before anything of it is written. Extraction runs under `sledge.archive_limits`: the unpacked
size, a member's size, the number of members and the compression ratio are bounded, and an archive
over a limit is refused in one line naming the environment variable that raises it. Weights are read
with `torch.load(weights_only=True)`, so a pickle that would run code is refused whatever the
environment says (`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` included). A truncated or non-gzip archive is an
`ArchiveError` naming the archive, and the folder it was being extracted to is removed, whatever
stopped the extraction (Ctrl-C included). `sledge.patches` puts `extracted_archive` and
`read_state_dict` in place of AllenNLP's own, so every archive AllenNLP loads in a process that
imported sledge (predict, evaluate and sledge's commands) goes through them; this module never
imports `sledge.patches`.
"""

import glob
import gzip
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

import torch

from sledge.archive_limits import RATIO_FREE_BYTES, ArchiveLimits, human, refuse
from sledge.errors import ArchiveError
from sledge.files import replaced_on_success

CONFIG_NAME = "config.json"
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a config.json is a few KB
WEIGHTS_NAME = "weights.th"
# Folders extracted by `extracted_archive`, and the archive each came from (for error messages).
_EXTRACTED: dict[str, str] = {}
_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


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


class _Counted:
    """A binary file read through `read` only, counting the bytes (a pipe has no position to ask)."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.count = file, 0

    def read(self, size: int = -1) -> bytes:
        data = self.file.read(size)
        self.count += len(data)
        return data


class _Unpacked(io.RawIOBase):
    """
    The gzip-decompressed bytes of an archive file, refused (`ArchiveError`) as soon as they pass the
    total limit or the compression ratio: the stream tarfile reads, so even its own headers (long
    names, pax records) are bounded.
    """

    def __init__(self, archive_file: str, packed: IO[bytes], limits: ArchiveLimits) -> None:
        self.archive_file, self.limits = archive_file, limits
        self.packed = _Counted(packed)
        self.gzip = gzip.GzipFile(fileobj=self.packed, mode="rb")
        self.unpacked = 0
        # member data plus at most 1 KiB of headers per member allowed
        self.ceiling = limits.max_bytes + 1024 * limits.max_members + 2 * 1024 * 1024

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.gzip.read(len(buffer))
        buffer[: len(data)] = data
        self.unpacked += len(data)
        if self.unpacked > self.ceiling:
            raise refuse(self.archive_file, f"its contents unpack to more than {human(self.ceiling)}",
                         human(self.limits.max_bytes), "max_bytes")
        packed = max(self.packed.count, 1)
        if self.unpacked > RATIO_FREE_BYTES and self.unpacked > self.limits.max_ratio * packed:
            raise refuse(
                self.archive_file,
                f"{human(packed)} of it unpacked to {human(self.unpacked)}, a compression ratio of "
                f"{self.unpacked / packed:.0f} (an archive bomb?)",
                f"a ratio of {self.limits.max_ratio:g}",
                "max_ratio",
            )
        return len(data)


@contextmanager
def _reading(archive_file: str) -> Iterator[tuple[tarfile.TarFile, Iterator[tarfile.TarInfo]]]:
    """
    The members of the gzipped tar `archive_file`, in order (read them before taking the next), each
    checked before it is yielded: a plain file or folder inside the extraction folder, within the
    limits of `ArchiveLimits.from_environment()`. Errors are `ArchiveError`s naming the archive.
    """
    limits = ArchiveLimits.from_environment()
    try:
        # unbuffered: a read returns what a pipe holds, rather than waiting for a full buffer
        with open(archive_file, "rb", buffering=0) as packed, _Unpacked(archive_file, packed, limits) as raw:
            with tarfile.open(fileobj=io.BufferedReader(raw, 1024 * 1024), mode="r|") as tar:
                yield tar, _checked(archive_file, tar, limits)
    except ArchiveError:
        raise
    except _UNREADABLE as error:
        raise ArchiveError(
            f"{archive_file}: not a readable model archive (truncated, or not a .tar.gz): "
            f"{error or type(error).__name__}"
        ) from error
    except OSError as error:
        if not os.path.exists(archive_file):
            raise ArchiveError(f"{archive_file}: no such model archive") from error
        raise ArchiveError(f"{archive_file}: could not be extracted ({error})") from error


def _checked(archive_file: str, tar: tarfile.TarFile, limits: ArchiveLimits) -> Iterator[tarfile.TarInfo]:
    total = 0
    for count, member in enumerate(tar, start=1):
        _check_member(archive_file, member)
        if count > limits.max_members:
            raise refuse(archive_file, f"it has more than {limits.max_members:,} members",
                         f"{limits.max_members:,} members", "max_members")
        if member.size > limits.max_member_bytes:
            raise refuse(archive_file, f"member {member.name!r} unpacks to {human(member.size)}",
                         f"{human(limits.max_member_bytes)} per member", "max_member_bytes")
        total += member.size
        if total > limits.max_bytes:
            raise refuse(archive_file, f"its members unpack to {human(total)} or more",
                         human(limits.max_bytes), "max_bytes")
        yield member


def safe_extract(archive_file: str | os.PathLike, target: str | os.PathLike) -> None:
    """
    Extract the gzipped tar `archive_file` into the existing folder `target`, member by member, each
    checked first (see `_reading`). Raises `ArchiveError` (naming the archive) for an unsafe member,
    an archive over a limit or an unreadable archive; what was extracted before the error stays in
    `target` for the caller to remove.
    """
    archive_file = str(archive_file)
    with _reading(archive_file) as (tar, members):
        for member in members:
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, target, filter="data")
            else:  # Python before 3.11.4: the checks above are the whole defence
                tar.extract(member, target)


@contextmanager
def extracted_archive(resolved_archive_file: str, cleanup: bool = True) -> Iterator[str]:
    """
    AllenNLP's `extracted_archive`, made safe: `safe_extract` into a new temporary folder, which is
    removed whenever extraction fails (and when the block ends, with `cleanup`). The archive must hold
    a readable `config.json`.
    """
    tempdir = tempfile.mkdtemp(prefix="sledge-archive-")
    _EXTRACTED[tempdir] = str(resolved_archive_file)
    try:
        safe_extract(resolved_archive_file, tempdir)
        _check_config(resolved_archive_file, tempdir)
    except BaseException:
        shutil.rmtree(tempdir, ignore_errors=True)
        _EXTRACTED.pop(tempdir, None)
        raise
    try:
        yield tempdir
    finally:
        if cleanup:
            shutil.rmtree(tempdir, ignore_errors=True)


def remove_extracted() -> None:
    """Remove every folder `extracted_archive` made that is still there: for a process that must end at
    once, while another thread may still be loading a model from one."""
    for directory in list(_EXTRACTED):
        shutil.rmtree(directory, ignore_errors=True)


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
    """
    AllenNLP's `read_state_dict` with `load_weights` (weights only) as its loader: the weights whose
    names match none of the regular expressions `ignore`, with `strip_prefix` taken off their names;
    with `strict`, a prefix or pattern that never matched is a `ValueError`.
    """
    state = load_weights(path, cuda_device)
    if ignore is not None and not isinstance(ignore, list):
        raise ValueError("'ignore' parameter should be a list")
    ignore = ignore or []
    used = [False] * len(ignore)
    prefix_used = False
    out: dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        matched = next((i for i, pattern in enumerate(ignore) if re.match(pattern, key)), None)
        if matched is not None:
            used[matched] = True
            continue
        if strip_prefix and key.startswith(strip_prefix):
            prefix_used = True
            key = key[len(strip_prefix):]
            if not key:
                raise ValueError("'strip_prefix' resulted in an empty string for a key")
        out[key] = value
    if strict and strip_prefix is not None and not prefix_used:
        raise ValueError(f"'strip_prefix' of '{strip_prefix}' was never used")
    for pattern, was_used in zip(ignore, used):
        if strict and not was_used:
            raise ValueError(f"'ignore' pattern '{pattern}' didn't have any matches")
    return out


def read_config(archive: str | os.PathLike) -> dict:
    """The `config.json` of an archive or serialization folder, read without extracting anything else."""
    archive = str(archive)
    if os.path.isdir(archive):
        path = Path(archive, CONFIG_NAME)
        if not path.is_file():
            raise ArchiveError(f"{archive}: no {CONFIG_NAME} in this folder; not a serialization folder")
        return json.loads(path.read_text(encoding="utf-8"))
    with _reading(archive) as (tar, members):
        for member in members:
            if member.isfile() and PurePosixPath(member.name) == PurePosixPath(CONFIG_NAME):
                if member.size > MAX_CONFIG_BYTES:
                    raise ArchiveError(f"{archive}: refused: its {CONFIG_NAME} is {human(member.size)}")
                try:
                    return json.loads(tar.extractfile(member).read().decode("utf-8"))  # type: ignore[union-attr]
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
