"""
The driver of `allennlp score`: check and plan the inputs, resume what an earlier run finished, score
the other parts on a Ray Data actor pool, summarise.

The output folder holds:
- `manifest.json`: the run's settings (archive, overrides, part size, format, bad-row rule), its
  inputs' identity (path, size, modification time) and its parts. A run in a folder that has one
  resumes it, and must have the same settings and inputs (else an error says which differs).
- `part-NNNNN.parquet` (or `.jsonl`): the outputs of part NNNNN, one row per good input row, each
  written under a temporary name and renamed when complete. A resumed run keeps every part file
  that holds the rows it must hold and scores the others again; temporary files left by an
  interrupted run are removed.
- `bad_rows.jsonl` (with `skip_bad_rows`): the rows the Predictor refuses, with file, row, line and
  the problem. Every input row is in exactly one part file or there.
- `summary.json`: rows, rows/s, exit shares, actors, errors (written at the end of every run).
"""

import fcntl
import json
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_dir, replaced_on_success, write_atomically
from sledge.scoring.inputs import FilePlan, Part, expand, identity, parts_of, plan_file, where
from sledge.scoring.outputs import EXTENSIONS, remove_partials, verify_part

MANIFEST, SUMMARY, BAD_ROWS, LOCK = "manifest.json", "summary.json", "bad_rows.jsonl", ".lock"
MAX_LISTED = 20  # bad rows named in an error or the summary


def score_files(
    archive_file: str,
    inputs: list[str],
    output_dir: str,
    *,
    overrides: str | dict = "",
    batch_size: int = 32,
    output_format: str = "parquet",
    rows_per_part: int = 4096,
    skip_bad_rows: bool = False,
    actors: int | None = None,
    cpus_per_actor: float = 1,
    cuda_device: int = -1,
    ray_address: str | None = None,
    progress: bool = True,
    on_part: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """
    Score every row of `inputs` (files or globs of JSON lines, CSV or Parquet holding the Predictor's
    keys: `sentence`, or `premise` and `hypothesis`) with the sledge archive, writing part files to
    `output_dir` (see the module's docstring), and return the summary (also in `summary.json`).

    Every row is checked before anything is scored: a row the Predictor refuses stops the run before
    any work, with an error naming file and line (at most 20 listed), unless `skip_bad_rows` (then
    they are listed in `bad_rows.jsonl` and the rest is scored). Rerun with the same arguments after
    an interruption, it resumes. Ray: joins `ray_address` if given (or the Ray this process already
    runs), else starts a local Ray on all cores and stops it at the end. `actors` (default: as many as
    the cluster's CPUs, or GPUs with `cuda_device` >= 0, allow) each load the model once, with
    `cpus_per_actor` CPUs (and torch threads) each, or one GPU each when `cuda_device` >= 0. `on_part`
    is called with each part's result as it finishes.
    """
    started = time.perf_counter()
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise SledgeError("scoring runs on Ray, which is not installed: pip install 'sledge[ray]'") from None
    _check_options(output_format, batch_size, rows_per_part, actors, cpus_per_actor)
    check_input_path(archive_file, "archive_file")
    check_output_dir(output_dir, "--output-dir")
    files = expand(inputs)
    folder = Path(output_dir)
    settings = {
        "archive": identity(os.path.abspath(archive_file)),
        "overrides": _normalized(overrides),
        "rows_per_part": rows_per_part,
        "output_format": output_format,
        "skip_bad_rows": skip_bad_rows,
    }
    with _locked(folder):
        loaded = time.perf_counter()
        check = _check_json(archive_file, overrides)
        planned = time.perf_counter()
        manifest = _resumed(folder, settings, files) or _plan(
            folder, settings, files, check, rows_per_part, skip_bad_rows
        )
        timings = {"driver_load_seconds": planned - loaded, "plan_seconds": time.perf_counter() - planned}
        parts = [Part(**part) for part in manifest["parts"]]
        remove_partials(folder)
        done = {}
        for part in parts:
            found = verify_part(folder / (part.name + EXTENSIONS[output_format]), output_format, part.good)
            if found is not None:
                done[part.name] = found
        pending = [part for part in parts if part.name not in done]
        run = None
        if pending:
            constructor = {
                "archive_file": os.path.abspath(archive_file),
                "overrides": overrides,
                "batch_size": batch_size,
                "cuda": cuda_device >= 0,
                "threads": max(1, int(cpus_per_actor)),
                "output_dir": str(folder.absolute()),
                "output_format": output_format,
            }
            run = _run_parts(pending, constructor, actors, cpus_per_actor, ray_address, progress, on_part)
        timings["wall_seconds"] = time.perf_counter() - started
        summary = _summary(manifest, done, run, timings)
        write_atomically(folder / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _check_options(
    output_format: str, batch_size: int, rows_per_part: int, actors: int | None, cpus_per_actor: float
) -> None:
    if output_format not in EXTENSIONS:
        raise SledgeError(f"--output-format must be one of {', '.join(EXTENSIONS)}, got {output_format!r}")
    counts = (("--batch-size", batch_size), ("--rows-per-part", rows_per_part), ("--actors", actors))
    for option, value in counts:
        if value is not None and value < 1:
            raise SledgeError(f"{option} must be at least 1, got {value}")
    if cpus_per_actor <= 0:
        raise SledgeError(f"--cpus-per-actor must be positive, got {cpus_per_actor}")


def _normalized(overrides: str | dict) -> dict:
    """The overrides as a dict (JSON or Jsonnet text, as `-o` takes them)."""
    if isinstance(overrides, dict):
        return json.loads(json.dumps(overrides, sort_keys=True))
    from allennlp.common.params import parse_overrides

    try:
        return parse_overrides(overrides or "")
    except RuntimeError as error:
        raise SledgeError(f"-o/--overrides: not JSON or Jsonnet ({error})") from None


def _check_json(archive_file: str, overrides: str | dict) -> Callable[[dict], Any]:
    """The Predictor's `check_json`, from the archive loaded here once with the overrides (so a bad
    archive or override is an error before any work; the model is then dropped)."""
    from sledge.scoring.scorer import load_predictor

    return load_predictor(archive_file, -1, overrides)[1].check_json


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """The output folder (created if missing), held by this run alone; a folder this run created is
    removed again if the run wrote nothing to it."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / LOCK, "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SledgeError(f"--output-dir {folder}: another score run is writing there") from None
        yield
    finally:
        lock.close()
        if created and {entry.name for entry in os.scandir(folder)} == {LOCK}:
            os.remove(folder / LOCK)
            folder.rmdir()


def _resumed(folder: Path, settings: dict, files: list[str]) -> dict | None:
    """The manifest of the run in `folder` if there is one; an error if its settings or inputs differ."""
    path = folder / MANIFEST
    if not path.exists():
        if any(entry.name.startswith("part-") for entry in os.scandir(folder)):
            raise SledgeError(f"--output-dir {folder} holds part files but no {MANIFEST}; give another one")
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        old, inputs = manifest["settings"], manifest["inputs"]
    except (ValueError, KeyError, TypeError) as error:
        raise SledgeError(f"{path}: not a score manifest ({error}); give another --output-dir") from None
    advice = "rerun with the arguments of that run to resume it, or give another --output-dir"
    for key, value in settings.items():
        if old.get(key) != value:
            what = "archive file (path, size or modification time)" if key == "archive" else key
            raise SledgeError(
                f"--output-dir {folder} holds a score run with another {what}: {old.get(key)!r}, now "
                f"{value!r}; {advice}"
            )
    if [entry["path"] for entry in inputs] != files:
        raise SledgeError(f"--output-dir {folder} holds a score run of other inputs; {advice}")
    for entry in inputs:
        if {key: entry[key] for key in ("path", "size", "mtime_ns")} != identity(entry["path"]):
            raise SledgeError(
                f"input {entry['path']} changed (size or modification time) since the score run in "
                f"{folder} began; its parts would not match: give another --output-dir"
            )
    return manifest


def _plan(
    folder: Path, settings: dict, files: list[str], check: Callable, rows_per_part: int, skip_bad: bool
) -> dict:
    """Read and check every input row, cut the inputs into parts, write the manifest (and the bad
    rows); an error listing the bad rows if there are any and they are not to be skipped."""
    plans: list[FilePlan] = [plan_file(path, check, rows_per_part) for path in files]
    bad = [row for plan in plans for row in plan.bad]
    if bad and not skip_bad:
        if len(bad) == 1:
            raise SledgeError(f"{where(bad[0])} (nothing was scored; --skip-bad-rows scores the rest)")
        listed = "\n  ".join(where(row) for row in bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise SledgeError(
            f"{len(bad)} bad rows, nothing was scored (--skip-bad-rows scores the rest):\n  {listed}{more}"
        )
    if not any(plan.rows for plan in plans):
        raise SledgeError(f"no input rows: {', '.join(files)} {'is' if len(files) == 1 else 'are'} empty")
    if skip_bad:
        with replaced_on_success(folder / BAD_ROWS) as file:
            file.writelines(json.dumps(row) + "\n" for row in bad)
    inputs = [
        {**identity(plan.path), "format": plan.format, "rows": plan.rows, "bad_rows": len(plan.bad)}
        for plan in plans
    ]
    parts = [asdict(part) for part in parts_of(plans, rows_per_part)]
    manifest = {"settings": settings, "inputs": inputs, "bad_rows": bad[:MAX_LISTED], "parts": parts}
    write_atomically(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def _run_parts(
    pending: list[Part],
    constructor: dict[str, Any],
    actors: int | None,
    cpus_per_actor: float,
    ray_address: str | None,
    progress: bool,
    on_part: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Score the pending parts on a Ray Data actor pool of `PartScorer`s built with `constructor`;
    each part's result as its actor answered, and the times."""
    import ray
    import ray.data
    from tqdm import tqdm

    from sledge.scoring.scorer import PartScorer

    start = time.perf_counter()
    ours = not ray.is_initialized()
    if ours:
        local = {"address": "local", "include_dashboard": False}
        try:
            ray.init(**({"address": ray_address} if ray_address else local), logging_level=logging.WARNING)
        except Exception as error:  # Ray raises plain Exceptions and ConnectionErrors here
            what = f"join the Ray cluster at {ray_address}" if ray_address else "start a local Ray"
            raise SledgeError(f"could not {what}: {error}") from error
    ray_start_seconds = time.perf_counter() - start
    try:
        cuda = constructor["cuda"]
        actors = actors or _default_actors(cpus_per_actor, cuda)
        _check_resources(actors, cpus_per_actor, cuda, ours and not ray_address)
        _quiet_ray_data()
        dataset = ray.data.from_items(
            [{"part": json.dumps(asdict(part))} for part in pending], override_num_blocks=len(pending)
        ).map_batches(
            PartScorer,
            batch_size=1,  # one part a call: a retried call redoes one part
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=1 if cuda else None,
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning"}},
            fn_constructor_kwargs=constructor,
        )
        results = []
        execution_start = time.time()
        bar = tqdm(total=sum(part.good for part in pending), unit=" rows", desc="score", disable=not progress)
        rows = iter(dataset.iter_rows())
        try:
            for row in _failing_clearly(rows, constructor["output_dir"]):
                result = {**json.loads(row["result"]), "done_at": time.time()}
                results.append(result)
                bar.update(result["rows"])
                if on_part is not None:
                    on_part(result)
        finally:
            bar.close()
            getattr(rows, "close", lambda: None)()  # stops the actors at once if the loop was left early
        seconds = time.time() - execution_start
        return {"results": results, "ray_start_seconds": ray_start_seconds,
                "execution_start": execution_start, "seconds": seconds, "actors": actors}
    finally:
        if ours:
            ray.shutdown()


def _failing_clearly(rows: Iterator[dict], output_dir: str) -> Iterator[dict]:
    """`rows`; a failure inside Ray (an error in an actor, a lost cluster) as one `SledgeError` naming
    its cause, instead of Ray's traceback of its worker (its log keeps it)."""
    import ray.exceptions

    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except ray.exceptions.RayError as error:
            raise SledgeError(
                f"scoring stopped: {_cause(error)} (the finished parts are kept in {output_dir}: run the "
                "same command again to score the rest)"
            ) from error
        yield row


def _cause(error: Exception) -> str:
    """What went wrong in a Ray worker: the first 'SomeError: message' line of the worker's traceback
    that Ray's error carries (not Ray's own wrappers), else the error's first line."""
    for line in str(error).splitlines():
        found = re.match(r"((?:\w+\.)*\w+(?:Error|Exception)): (.+)", line.strip())
        if found and not found.group(1).startswith("ray."):
            return found.group(0)
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _default_actors(cpus_per_actor: float, cuda: bool) -> int:
    import ray

    resources = ray.cluster_resources()
    if cuda:
        return max(1, int(resources.get("GPU", 0)))
    return max(1, int(resources.get("CPU", 1) // cpus_per_actor))


def _check_resources(actors: int, cpus_per_actor: float, cuda: bool, local: bool) -> None:
    """The actors asked for fit the cluster: an error on the local Ray of this run (it cannot grow, so
    they would wait for ever), a warning on a cluster (it may grow)."""
    import ray

    resources = ray.cluster_resources()
    needs = [("CPUs", actors * cpus_per_actor, resources.get("CPU", 0))]
    if cuda:
        needs.append(("GPUs", actors, resources.get("GPU", 0)))
    for what, wanted, there in needs:
        if wanted > there:
            each = f"{cpus_per_actor:g} CPUs" + (" and a GPU" if cuda else "")
            message = f"{actors} actors of {each} need {wanted:g} {what}"
            if local:
                raise SledgeError(f"{message}; this machine's Ray has {there:g}")
            logging.getLogger(__name__).warning("%s; the Ray cluster has %g now", message, there)


def _quiet_ray_data() -> None:
    """One progress bar (ours, in rows): Ray Data's bars, its notice that they are off and its execution
    notices off."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _summary(manifest: dict, done: dict, run: dict | None, timings: dict[str, float]) -> dict[str, Any]:
    """What the run did: rows, speed, exit shares, actors, bad rows."""
    layers: Counter = Counter()
    truncated = 0
    for exit_layers, cut in done.values():
        layers += exit_layers
        truncated += cut
    results = run["results"] if run else []
    for result in results:
        layers += Counter({int(layer): count for layer, count in result["exit_layers"].items()})
        truncated += result["truncated"]
    rows = sum(part["good"] for part in manifest["parts"])
    scored = sum(result["rows"] for result in results)
    total = sum(layers.values())
    summary: dict[str, Any] = {
        "rows": rows,
        "bad_rows": sum(entry["bad_rows"] for entry in manifest["inputs"]),
        "inputs": len(manifest["inputs"]),
        "parts": len(manifest["parts"]),
        "parts_resumed": len(done),
        "rows_resumed": rows - scored,
        "rows_scored": scored,
        "seconds": None,
        "rows_per_second": None,
        "rows_per_second_after_ready": None,
        **{name: round(value, 3) for name, value in timings.items()},
        "ray_start_seconds": None,
        "actors": 0,
        "actor_processes": [],
        "exit_shares": {str(layer): round(layers[layer] / total, 6) for layer in sorted(layers)},
        "average_exit_layer": round(sum(k * n for k, n in layers.items()) / total, 4) if total else None,
        "truncated": truncated,
        "errors": manifest["bad_rows"],
        "settings": manifest["settings"],
    }
    if run:
        seconds = run["seconds"]
        # From the moment the first actor was ready to the last part: throughput without start-up.
        steady = max(result["done_at"] for result in results) - min(result["ready_at"] for result in results)
        summary.update(
            seconds=round(seconds, 3),
            rows_per_second=round(scored / seconds, 2),
            rows_per_second_after_ready=round(scored / steady, 2) if steady > 0 else None,
            ray_start_seconds=round(run["ray_start_seconds"], 3),
            actors=run["actors"],
            actor_processes=_actors(results, run["execution_start"]),
        )
    return summary


def _actors(results: list[dict[str, Any]], execution_start: float) -> list[dict[str, Any]]:
    """Per actor process: host, model load time, when it was ready, memory, parts and rows, busy time."""
    actors: dict[int, dict[str, Any]] = {}
    for result in results:
        actor = actors.setdefault(result["pid"], {
            "pid": result["pid"],
            "host": result["host"],
            "load_seconds": round(result["load_seconds"], 3),
            "ready_after_seconds": round(result["ready_at"] - execution_start, 3),
            "rss_after_load_mb": round(result["rss_after_load_mb"], 1),
            "parts": 0,
            "rows": 0,
            "busy_seconds": 0.0,
        })
        actor["parts"] += 1
        actor["rows"] += result["rows"]
        actor["busy_seconds"] += result["seconds"]
        actor["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    for actor in actors.values():
        actor["rows_per_busy_second"] = round(actor["rows"] / actor["busy_seconds"], 2)
        actor["busy_seconds"] = round(actor["busy_seconds"], 3)
    return list(actors.values())
