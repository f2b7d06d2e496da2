"""
Data paths the AllenNLP way: a config names a dataset's public release by URL (`URL!member` for a file
or folder inside an archive), AllenNLP's `cached_path` downloads it once into its cache
(`~/.allennlp/cache`, or `$ALLENNLP_CACHE_ROOT/cache`), and every download is checked against the
release's pinned sha256 before anything in it is read.

- A download whose sha256 is not the pinned one is an error naming the URL and both hashes; the
  download is deleted from the cache, so the next run fetches it afresh and nothing of it is trusted.
  (`cached_path` writes a download to a temporary name and renames it only when it is complete, so
  an interrupted download never reaches the cache either.)
- A URL with no pinned hash (your own mirror, another dataset) is trusted on first use: its sha256 is
  recorded in `sledge-sha256.json` in the cache and printed once, and every later download of that
  URL must match it.
- An archive is extracted only after its download was checked, from the checked file (by
  `cached_path`, into a folder beside it: `tar` members outside the folder are refused).
- A local path is read as it is; one that does not exist is an error naming the dataset and where
  its release is (docs/datasets.md).
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from allennlp.common import file_utils
from allennlp.common.file_utils import cached_path

from sledge.errors import SledgeError
from sledge.files import write_atomically

DATASETS_DOC = "docs/datasets.md"
RECORDED = "sledge-sha256.json"  # the trusted-on-first-use hashes, in the cache folder


@dataclass(frozen=True)
class Release:
    """One published file of a dataset: its size in bytes, its sha256, and where that hash was published."""

    dataset: str
    size: int
    sha256: str
    source: str


# The releases the configs name. The hashes are published by TensorFlow Datasets (url_checksums) and
# HuggingFace datasets (dataset_infos.json); docs/datasets.md says which for each, and how STS-B's was
# established (its host publishes none).
RELEASES: dict[str, Release] = {
    "https://drive.google.com/uc?export=download&id=0Bz8a_Dbh9QhbUDNpeUdjb0wxRms": Release(
        "AG News", 11784327, "4e2fc37d369e6e317a8b62d0d2f11d379f8c3dde60c07c35a46b069a246498ad",
        "tensorflow/datasets url_checksums/ag_news_subset.txt",
    ),
    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/train.csv": Release(
        "AG News", 29470338, "76a0a2d2f92b286371fe4d4044640910a04a803fdd2538e0f3f29a5c6f6b672e",
        "huggingface/datasets datasets/ag_news/dataset_infos.json",
    ),
    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/test.csv": Release(
        "AG News", 1857427, "521465c2428ed7f02f8d6db6ffdd4b5447c1c701962353eb2c40d548c3c85699",
        "huggingface/datasets datasets/ag_news/dataset_infos.json",
    ),
    "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz": Release(
        "IMDB", 84125825, "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",
        "tensorflow/datasets url_checksums/imdb_reviews.txt",
    ),
    "https://nlp.stanford.edu/projects/snli/snli_1.0.zip": Release(
        "SNLI", 94550081, "afb3d70a5af5d8de0d9d81e2637e0fb8c22d1235c2749d83125ca43dab0dbd3e",
        "tensorflow/datasets url_checksums/snli.txt",
    ),
    "https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip": Release(
        "MultiNLI", 226850426, "049f507b9e36b1fcb756cfd5aeb3b7a0cfcb84bf023793652987f7e7e0957822",
        "tensorflow/datasets url_checksums/multi_nli.txt",
    ),
    "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/RTE.zip": Release(
        "RTE (SuperGLUE)", 750920, "6310aab3f000424c9d0318a1ff20692e07c7f4aa15e8f17a5972ea0a35c398b9",
        "huggingface/datasets datasets/super_glue/dataset_infos.json",
    ),
    "http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz": Release(
        "STS-B", 409630, "557a86abbd2b76ee6768d8b5103b659601a9d26b797898c7467812f303b21280",
        "computed from a copy whose MD5 is pytorch/text's published 4eb0065aba063ef77873d3a9c8088811",
    ),
    "https://zenodo.org/record/2787612/files/SICK.zip?download=1": Release(
        "SICK", 217584, "da272af924399fc2de4889ed55383e38822c10d16c4a949a89d597d09a0b7912",
        "huggingface/datasets datasets/sick/dataset_infos.json",
    ),
}

_VERIFIED: dict[tuple[str, int, int], str] = {}  # (file, size, mtime) -> its sha256, this process


def is_url(path: str) -> bool:
    return "://" in path.partition("!")[0]


def local_data_path(data_path: str, dataset: str = "the dataset") -> str:
    """
    The local file or folder of a data path (without `#split` selectors): a local path as it is (an
    `archive!member` path extracted by `cached_path`); a URL downloaded once by `cached_path`, checked
    against its pinned (or first recorded) sha256, then, for `URL!member`, extracted and the member's
    path returned. Every failure is one `SledgeError` line that says what to do.
    """
    url, bang, member = data_path.partition("!")
    if not is_url(url):
        if not os.path.exists(url):
            raise SledgeError(
                f"{url} does not exist ({dataset}); a config's default data path names the public "
                f"release, downloaded on first use; where to get each dataset: {DATASETS_DOC}"
            )
        return _cached(data_path, member)
    archive = _download(url, dataset)
    verify(url, archive)
    return archive if not bang else _cached(f"{archive}!{member}", member, url)


def _cached(path: str, member: str, url: str | None = None) -> str:
    """`cached_path` of a local path, extracting `archive!member`; a missing member is one line."""
    try:
        return cached_path(path, extract_archive=bool(member))
    except FileNotFoundError as error:
        where = url or path.partition("!")[0]
        raise SledgeError(f"{where}: no member {member!r} in this archive ({error})") from None
    except ValueError as error:  # `!` after a file that is not an archive
        raise SledgeError(f"{url or path}: {error}") from None


def _download(url: str, dataset: str) -> str:
    try:
        return cached_path(url)
    except Exception as error:  # noqa: BLE001 (requests, OSError, ...: each is one line for the user)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SledgeError(
            f"could not download {url} ({dataset}): {type(error).__name__}: {reason[:300]}; without "
            f"internet, fetch the release elsewhere and pass local paths with -o (see {DATASETS_DOC})"
        ) from None


def sha256_of(path: str | os.PathLike) -> str:
    """The sha256 of a file (remembered for this process while the file is unchanged)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as data:
            for block in iter(lambda: data.read(1 << 20), b""):
                digest.update(block)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def verify(url: str, downloaded: str) -> None:
    """
    Check the download of `url` (the cached file `downloaded`) against the pinned sha256, or against the
    hash recorded at its first download; with neither, record it now. A mismatch deletes the download
    from the cache and raises one line naming the URL and both hashes.
    """
    actual = sha256_of(downloaded)
    release = RELEASES.get(url)
    recorded = _recorded()
    expected = release.sha256 if release else recorded.get(url)
    if expected is None:
        recorded[url] = actual
        write_atomically(_recorded_path(), json.dumps(recorded, indent=2, sort_keys=True).encode())
        print(f"sledge: no published sha256 for {url}; recorded {actual} (first download, trusted from "
              f"now on: later downloads must match; {_recorded_path()})", flush=True)
        return
    if actual == expected:
        return
    html = _looks_like_html(downloaded)
    _forget(downloaded)
    where = "pinned" if release else f"recorded at its first download in {_recorded_path()}"
    hint = " (the server sent an HTML page, not the file)" if html else ""
    raise SledgeError(
        f"checksum mismatch for {url}: expected sha256 {expected} ({where}), got {actual}{hint}; the "
        f"download was deleted from the cache, run again to download it again (see {DATASETS_DOC})"
    )


def _looks_like_html(path: str) -> bool:
    with open(path, "rb") as data:
        start = data.read(512).lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _forget(downloaded: str) -> None:
    """Remove a cached download and its metadata (nothing was extracted from it: checks come first)."""
    for suffix in ("", ".json", ".lock"):
        Path(downloaded + suffix).unlink(missing_ok=True)
    for key in [key for key in _VERIFIED if key[0] == os.path.realpath(downloaded)]:
        del _VERIFIED[key]


def _recorded_path() -> Path:
    return Path(file_utils.CACHE_DIRECTORY) / RECORDED


def _recorded() -> dict[str, str]:
    path = _recorded_path()
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise SledgeError(f"{path}: not a JSON object of URL -> sha256 ({error}); delete it") from None
