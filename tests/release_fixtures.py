"""
Fixture releases: tiny archives in each public release's exact layout (member names, folder nesting,
compression), served from a loopback HTTP server (127.0.0.1) at the same paths as the real URLs, so
that the configs' data paths are read end to end through `cached_path` without the internet.
"""

import gzip
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DATA = FIXTURES / "data"
E2E = FIXTURES / "e2e"


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _imdb_split() -> dict[str, bytes]:
    """One aclImdb split folder's files: the fixture reviews, `unsup/` and the files the reader ignores."""
    split = DATA / "aclImdb" / "train"
    files = sorted(path for path in split.rglob("*") if path.is_file())
    return {str(path.relative_to(split)): path.read_bytes() for path in files}


# Each release: (URL, archive kind, {member: bytes}). Kinds: "tar.gz", "zip", "file" (a plain file).
# Folders are written as their own members where the real archives have them.
def release_contents() -> dict[str, tuple[str, dict[str, bytes]]]:
    ag_train = _read(DATA / "ag_news" / "test.csv")
    imdb = {
        f"aclImdb/{split}/{name}": data for split in ("train", "test") for name, data in _imdb_split().items()
    }
    snli = _read(DATA / "snli" / "snli_1.0_dev.jsonl")
    mnli = _read(DATA / "mnli" / "multinli_1.0_dev_matched.jsonl")
    return {
        "https://drive.google.com/uc?export=download&id=0Bz8a_Dbh9QhbUDNpeUdjb0wxRms": ("tar.gz", {
            "ag_news_csv/": b"",
            "ag_news_csv/classes.txt": _read(DATA / "ag_news" / "classes.txt"),
            "ag_news_csv/readme.txt": b"AG's News Topic Classification Dataset (fixture)\n",
            "ag_news_csv/test.csv": ag_train,
            "ag_news_csv/train.csv": ag_train,
        }),
        "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/train.csv": (
            "file", {"": ag_train}),
        "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/test.csv": (
            "file", {"": ag_train}),
        "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz": ("tar.gz", {
            "aclImdb/": b"", "aclImdb/README": b"Large Movie Review Dataset v1.0 (fixture)\n",
            "aclImdb/imdb.vocab": b"the\nmovie\n", **imdb,
        }),
        "https://nlp.stanford.edu/projects/snli/snli_1.0.zip": ("zip", {
            "snli_1.0/": b"", "snli_1.0/README.txt": b"SNLI 1.0 (fixture)\n",
            "snli_1.0/snli_1.0_dev.jsonl": snli, "snli_1.0/snli_1.0_test.jsonl": snli,
            "snli_1.0/snli_1.0_train.jsonl": snli,
            "__MACOSX/snli_1.0/._snli_1.0_dev.jsonl": b"\x00\x05\x16\x07",
        }),
        "https://cims.nyu.edu/~sbowman/multinli/multinli_1.0.zip": ("zip", {
            "multinli_1.0/": b"", "multinli_1.0/README.txt": b"MultiNLI 1.0 (fixture)\n",
            "multinli_1.0/multinli_1.0_dev_matched.jsonl": mnli,
            "multinli_1.0/multinli_1.0_dev_mismatched.jsonl": mnli,
            "multinli_1.0/multinli_1.0_train.jsonl": mnli,
            "__MACOSX/multinli_1.0/._multinli_1.0_train.jsonl": b"\x00\x05\x16\x07",
        }),
        "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/RTE.zip": ("zip", {
            "RTE/": b"", "RTE/test.jsonl": _read(DATA / "rte" / "test.jsonl"),
            "RTE/train.jsonl": _read(DATA / "rte" / "train.jsonl"),
            "RTE/val.jsonl": _read(DATA / "rte" / "train.jsonl"),
        }),
        "http://ixa2.si.ehu.es/stswiki/images/4/48/Stsbenchmark.tar.gz": ("tar.gz", {
            "stsbenchmark/": b"", "stsbenchmark/readme.txt": b"STS Benchmark (fixture)\n",
            "stsbenchmark/sts-test.csv": _read(E2E / "stsb.test"),
            "stsbenchmark/correlation.pl": b"#!/usr/bin/perl\n",
            "stsbenchmark/LICENSE.txt": b"(fixture)\n",
            "stsbenchmark/sts-dev.csv": _read(E2E / "stsb.test"),
            "stsbenchmark/sts-train.csv": _read(E2E / "stsb.train"),
        }),
        "https://zenodo.org/record/2787612/files/SICK.zip?download=1": ("zip", {
            "SICK.txt": _read(DATA / "sick" / "SICK.txt"),
        }),
    }


def pack(kind: str, members: dict[str, bytes]) -> bytes:
    """The bytes of an archive of `kind` holding `members` (a name ending in '/' is a folder)."""
    buffer = io.BytesIO()
    if kind == "file":
        return members[""]
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                archive.writestr(zipfile.ZipInfo(name, date_time=(2015, 8, 1, 0, 0, 0)), data)
        return buffer.getvalue()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime = 1438387200
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)  # the same bytes on every call


class Server:
    """A loopback HTTP server of byte strings by URL path (the query is ignored, as static hosts do)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()  # paths whose body is cut in half (the full length announced)
        self.requests: list[str] = []
        files, cut, requests = self.files, self.cut, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(body=True)

            def _answer(self, body: bool) -> None:
                path = urlsplit(self.path).path
                requests.append(f"{self.command} {path}")
                if path not in files:
                    self.send_error(404)
                    return
                data = files[path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data[: len(data) // 2] if path in cut else data)
                    if path in cut:
                        self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, public_url: str) -> str:
        """The loopback URL that serves what `public_url` names (same path and query)."""
        parts = urlsplit(public_url)
        return self.base + parts.path + (f"?{parts.query}" if parts.query else "")

    def serve(self, public_url: str, data: bytes) -> str:
        self.files[urlsplit(public_url).path] = data
        return self.url(public_url)


@contextmanager
def release_server() -> Iterator[Server]:
    """Every fixture release served at its public URL's path on 127.0.0.1 (port chosen by the system)."""
    server = Server()
    for public_url, (kind, members) in release_contents().items():
        server.serve(public_url, pack(kind, members))
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def loopback_data_path(server: Server, data_path: str) -> str:
    """A config's data path (`URL!member#split`) with its URL moved to the loopback server."""
    url, bang, rest = data_path.partition("!")
    return server.url(url) + bang + rest
