"""
How much a model archive may unpack to. Four limits bound what extracting one costs, whatever the
archive says about itself: its unpacked size, the size of one member, the number of members and the
compression ratio (unpacked bytes over packed bytes, checked continuously while it is read, once more
than `RATIO_FREE_BYTES` have been unpacked). A member's size and the number of members are read from
the member's header, so an archive over those limits is refused before the member is written; the
ratio stops a "bomb" (a small file of zeros that unpacks to gigabytes) after at most
`RATIO_FREE_BYTES`, or `max_ratio` times the bytes read, whichever is more.

The defaults let every real archive through with a wide margin. A MiniLM-L6 sledge archive holds 13
members, 93.7 MB unpacked from 85.2 MB (a ratio of 1.1: trained float32 weights hardly compress); a
12-layer base model's weights are about 440 MB, BERT-large's 1.34 GB and XLM-R-large's 2.24 GB. So
one member may be 4 GiB (BERT-large's weights three times over), the whole archive 8 GiB (a cascade
of a large and a base model twice over), with 1,000 members (a real one has 13 to 40) and a ratio of
100 (a gzip of zeros reaches about 1,000). Each limit has an environment variable that overrides it,
named in the refusal, for users with bigger models: sizes in bytes or with a K, M, G or T suffix
(powers of 1024), e.g. `SLEDGE_ARCHIVE_MAX_MEMBER_BYTES=16G`.
"""

import os
import re
from dataclasses import dataclass

from sledge.errors import ArchiveError, SledgeError

KIB, MIB, GIB, TIB = 1024, 1024**2, 1024**3, 1024**4
RATIO_FREE_BYTES = 64 * MIB  # the ratio is checked once more than this has been unpacked
_SUFFIXES = {"": 1, "K": KIB, "M": MIB, "G": GIB, "T": TIB}


@dataclass(frozen=True)
class ArchiveLimits:
    """
    The limits one extraction runs under (see the module's notes).

    Parameters
    ----------
    max_bytes : `int`
        The most bytes all members together may unpack to (`SLEDGE_ARCHIVE_MAX_BYTES`).
    max_member_bytes : `int`
        The most bytes one member may unpack to (`SLEDGE_ARCHIVE_MAX_MEMBER_BYTES`).
    max_members : `int`
        The most members (files and folders) (`SLEDGE_ARCHIVE_MAX_MEMBERS`).
    max_ratio : `float`
        The most unpacked bytes per packed byte (`SLEDGE_ARCHIVE_MAX_RATIO`).
    """

    max_bytes: int = 8 * GIB
    max_member_bytes: int = 4 * GIB
    max_members: int = 1000
    max_ratio: float = 100.0

    @classmethod
    def from_environment(cls) -> "ArchiveLimits":
        """The defaults, each replaced by its environment variable where that is set."""
        return cls(
            max_bytes=_size(VARIABLES["max_bytes"], cls.max_bytes),
            max_member_bytes=_size(VARIABLES["max_member_bytes"], cls.max_member_bytes),
            max_members=int(_number(VARIABLES["max_members"], cls.max_members, whole=True)),
            max_ratio=_number(VARIABLES["max_ratio"], cls.max_ratio),
        )


VARIABLES = {
    "max_bytes": "SLEDGE_ARCHIVE_MAX_BYTES",
    "max_member_bytes": "SLEDGE_ARCHIVE_MAX_MEMBER_BYTES",
    "max_members": "SLEDGE_ARCHIVE_MAX_MEMBERS",
    "max_ratio": "SLEDGE_ARCHIVE_MAX_RATIO",
}


def refuse(archive: str, found: str, limit: str, field: str) -> ArchiveError:
    """The one-line refusal: the archive, what was found, the limit and the variable that raises it."""
    return ArchiveError(
        f"{archive}: refused: {found}; the limit is {limit} (if you trust this archive, raise it with "
        f"the environment variable {VARIABLES[field]})"
    )


def human(size: float) -> str:
    """A byte count as people read it: '8.0 GiB', '95.4 MiB', '512 bytes'."""
    for unit, scale in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} bytes"


def _size(variable: str, default: int) -> int:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", text, flags=re.IGNORECASE)
    if match is None or float(match.group(1)) <= 0:
        raise SledgeError(
            f"{variable}={text}: not a size; give a number of bytes, optionally with K, M, G or T (e.g. 16G)"
        )
    return int(float(match.group(1)) * _SUFFIXES[match.group(2).upper()])


def _number(variable: str, default: float, whole: bool = False) -> float:
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = 0
    if not value > 0:
        kind = "a whole number" if whole else "a number"
        raise SledgeError(f"{variable}={text}: give {kind} above 0")
    return value
