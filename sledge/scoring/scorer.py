"""
What the Ray actors of `allennlp score` and `score_dataset` run: a sledge archive loaded once, as
`allennlp predict` loads it, and rows scored through its Predictor in batches of similar length.
"""

import json
import os
import resource
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sledge.errors import SledgeError
from sledge.scoring.inputs import Part, checked, read_part
from sledge.scoring.outputs import EXTENSIONS, write_part

# The keys of a prediction, in the order `allennlp predict` writes them, then `truncated` (as serve's).
KEYS = ("label", "probs", "score", "exit_layer", "exit_index", "exit_model", "confidence", "certainty")


class Scorer:
    """
    A sledge archive loaded as `allennlp predict` loads it (`load_archive` with the overrides, then
    the archive's default Predictor, `sledge`), scoring rows of the Predictor's JSON: the rows are
    ordered by token length and cut into batches of `batch_size`, so a batch has little padding, and
    each batch goes through `Predictor.predict_batch_json`, the call `allennlp predict --batch-size`
    makes; the outputs come back in the rows' order. Each output also says whether its text was cut
    to the reader's `max_length` (`truncated`, as `allennlp serve` answers).

    Parameters
    ----------
    archive_file : `str`
        A sledge model.tar.gz (or serialization folder), readable where the actor runs.
    overrides : `str | dict`, optional (default = `""`)
        As `allennlp predict -o` takes them, e.g. `'{"model.confidence_threshold": 0.9}'`.
    batch_size : `int`, optional (default = `32`)
        Rows per model call.
    cuda : `bool`, optional (default = `False`)
        Run on the GPU Ray gives the actor (it sees it as device 0).
    threads : `int`, optional (default = `None`)
        Torch's intra-op threads (`torch.set_num_threads`); None leaves torch's default.
    """

    def __init__(
        self,
        archive_file: str,
        overrides: str | dict = "",
        batch_size: int = 32,
        cuda: bool = False,
        threads: int | None = None,
    ) -> None:
        import torch

        from sledge.models.sledge_cascade import SledgeCascade

        start = time.perf_counter()
        if threads:
            torch.set_num_threads(threads)
        archive, self.predictor = load_predictor(archive_file, 0 if cuda else -1, overrides)
        self.reader = archive.validation_dataset_reader
        self.batch_size = batch_size
        core = archive.model.core
        present = {
            "label": not core.regression,
            "probs": not core.regression,
            "confidence": not core.regression,
            "score": core.regression,
            "exit_model": isinstance(archive.model, SledgeCascade),
            "certainty": core.lte is not None,
        }
        self.keys = [key for key in KEYS if present.get(key, True)] + ["truncated"]
        self.load_seconds = time.perf_counter() - start
        self.ready_at = time.time()
        self.rss_after_load_mb = _peak_rss_mb()

    def problem(self, fields: dict[str, Any] | None) -> str | None:
        """None if the Predictor takes `fields`, else why not (the key and what is wrong)."""
        return checked(fields, self.predictor.check_json)

    def score(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The predictions of `rows` (each one the Predictor takes), in their order."""
        lengths = [self._length(row) for row in rows]
        order = sorted(range(len(rows)), key=lengths.__getitem__)
        outputs: list[dict[str, Any]] = [{} for _ in rows]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, output in zip(batch, self.predictor.predict_batch_json([rows[i] for i in batch])):
                output.setdefault("truncated", lengths[i] > self.reader.max_length)
                outputs[i] = {key: output.get(key) for key in self.keys}
        return outputs

    def _length(self, row: dict[str, Any]) -> int:
        """The row's number of tokens, before the reader cuts it to `max_length`."""
        text, pair = self.predictor.check_json(row)
        return len(self.reader.tokenizer(text, pair, verbose=False)["input_ids"])

    def actor(self) -> dict[str, Any]:
        """Who scored: process, host, load time, memory."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "load_seconds": self.load_seconds,
            "ready_at": self.ready_at,
            "rss_after_load_mb": self.rss_after_load_mb,
            "peak_rss_mb": _peak_rss_mb(),
        }


class PartScorer(Scorer):
    """
    The actor of `allennlp score`: called by Ray Data with parts (a `part` column of JSON-encoded
    `Part`s), it reads each part's rows from its input file, scores the good ones (a bad row is one
    the Predictor refuses; planning listed it) and writes the part's output file (temporary name,
    then renamed), and answers one JSON line per part: rows, seconds, exit layers, the actor.

    Parameters
    ----------
    output_dir : `str`
        Where the part files go.
    output_format : `str`
        `parquet` or `jsonl`.
    **kwargs
        `Scorer`'s.
    """

    def __init__(self, output_dir: str, output_format: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_dir = Path(output_dir)
        self.output_format = output_format

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        return {"result": [json.dumps(self.run(Part(**json.loads(part)))) for part in batch["part"]]}

    def run(self, part: Part) -> dict[str, Any]:
        start = time.perf_counter()
        places, rows = [], []
        for record in read_part(part):
            if record.problem is None and self.problem(record.fields) is None:
                places.append({"file": part.file, "row": record.row, "line": record.line})
                rows.append(record.fields)
        if len(rows) != part.good:
            raise RuntimeError(
                f"{part.file} changed since it was planned: rows {part.start}..{part.stop - 1} hold "
                f"{len(rows)} good rows, not {part.good}"
            )
        outputs = [{**place, **output} for place, output in zip(places, self.score(rows))]
        path = self.output_dir / (part.name + EXTENSIONS[self.output_format])
        write_part(path, outputs, self.output_format, ["file", "row", "line", *self.keys])
        return {
            "part": part.name,
            "rows": len(outputs),
            "seconds": time.perf_counter() - start,
            "exit_layers": Counter(output["exit_layer"] for output in outputs),
            "truncated": sum(bool(output["truncated"]) for output in outputs),
            **self.actor(),
        }


class RowScorer(Scorer):
    """
    The actor of `score_dataset`: called by Ray Data with batches of rows (pyarrow tables) holding the
    Predictor's keys as columns, it answers the same rows with the prediction's columns added (see
    `Scorer`) and `error`: null for a scored row; for a row the Predictor refuses, what is wrong
    (and the prediction's columns are null).

    Parameters
    ----------
    **kwargs
        `Scorer`'s.
    """

    def __call__(self, batch):
        import pyarrow as pa

        from sledge.scoring.outputs import schema

        rows = batch.to_pylist()
        problems = [self.problem(row) for row in rows]
        good = [i for i, problem in enumerate(problems) if problem is None]
        scored = dict(zip(good, self.score([rows[i] for i in good])))
        for field in schema([*self.keys, "error"]):
            if field.name == "error":
                values = problems
            else:
                values = [scored[i][field.name] if i in scored else None for i in range(len(rows))]
            batch = batch.append_column(field, pa.array(values, field.type))
        return batch


def load_predictor(archive_file: str, cuda_device: int = -1, overrides: str | dict = "") -> tuple:
    """The archive and its Predictor, loaded as `allennlp predict` loads them (`load_archive` with the
    overrides, then `Predictor.from_archive`); a clear error if the file is not a sledge archive."""
    from allennlp.common.checks import check_for_gpu
    from allennlp.models.archival import load_archive
    from allennlp.predictors import Predictor

    from sledge.models.sledge_classifier import SledgeClassifier

    check_for_gpu(cuda_device)
    archive = load_archive(archive_file, cuda_device=cuda_device, overrides=overrides)
    if not isinstance(archive.model, SledgeClassifier):
        raise SledgeError(f"{archive_file} holds a {type(archive.model).__name__}, not a sledge model")
    return archive, Predictor.from_archive(archive)


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
