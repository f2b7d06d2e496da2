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
    overrides: str = "",
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
    the cluster's CPUs (GPUs with `cuda_device` >= 0) allow) each load the model once, with
    `cpus_per_actor` CPUs (torch threads) each, or one GPU each when `cuda_device` >= 0. `on_part` is
    called with each part's result as it finishes.
    """
    started = time.perf_counter()
    try:
        import ray.data  # noqa: F401
    except ImportError:
        raise SledgeError("scoring runs on Ray, which is not installed: pip install 'sledge[ray]'") from None
    if output_format not in EXTENSIONS:
        raise SledgeError(f"--output-format must be one of {', '.join(EXTENSIONS)}, got {output_format!r}")
    for option, value in (("--batch-size", batch_size), ("--rows-per-part", rows_per_part)):
        if value < 1:
            raise SledgeError(f"{option} must be at least 1, got {value}")
    if actors is not None and actors < 1:
        raise SledgeError(f"--actors must be at least 1, got {actors}")
    if cpus_per_actor <= 0:
        raise SledgeError(f"--cpus-per-actor must be positive, got {cpus_per_actor}")
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
        load_start = time.perf_counter()
        check = _check_json(archive_file, overrides)
        driver_load_seconds = time.perf_counter() - load_start
        plan_start = time.perf_counter()
        manifest = _resumed(folder, settings, files)
        if manifest is None:
            manifest = _plan(folder, settings, files, check, rows_per_part, skip_bad_rows)
        plan_seconds = time.perf_counter() - plan_start
        parts = [Part(**part) for part in manifest["parts"]]
        remove_partials(folder)
        done = {}
        for part in parts:
            found = verify_part(folder / (part.name + EXTENSIONS[output_format]), output_format, part.good)
            if found is not None:
                done[part.name] = found
        pending = [part for part in parts if part.name not in done]
        run: dict[str, Any] = {"results": [], "ray_start_seconds": None, "seconds": 0.0, "actors": 0}
        if pending:
            run = _run_parts(
                pending, archive_file, overrides, batch_size, folder, output_format, actors,
                cpus_per_actor, cuda_device, ray_address, progress, on_part,
            )
        summary = _summary(manifest, done, run, started, driver_load_seconds, plan_seconds)
        write_atomically(folder / SUMMARY, (json.dumps(summary, indent=2) + "\n").encode())
    return summary


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
            raise SledgeError(f"--output-dir {folder} holds part files but no {MANIFEST}; give another folder")
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
        listed = "\n  ".join(where(row) for row in bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        if len(bad) == 1:
            raise SledgeError(f"{where(bad[0])} (nothing was scored; --skip-bad-rows scores the rest)")
        raise SledgeError(
            f"{len(bad)} bad rows, nothing was scored (--skip-bad-rows scores the rest):\n  {listed}{more}"
        )
    if not any(plan.rows for plan in plans):
        raise SledgeError(f"no input rows: {', '.join(files)} {'is' if len(files) == 1 else 'are'} empty")
    parts = parts_of(plans, rows_per_part)
    if skip_bad:
        with replaced_on_success(folder / BAD_ROWS) as file:
            file.writelines(json.dumps(row) + "\n" for row in bad)
    manifest = {
        "settings": settings,
        "inputs": [{**identity(plan.path), "format": plan.format, "rows": plan.rows, "bad_rows": len(plan.bad)}
                   for plan in plans],
        "bad_rows": bad[:MAX_LISTED],
        "parts": [asdict(part) for part in parts],
    }
    write_atomically(folder / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return manifest


def _run_parts(
    pending: list[Part],
    archive_file: str,
    overrides: str | dict,
    batch_size: int,
    folder: Path,
    output_format: str,
    actors: int | None,
    cpus_per_actor: float,
    cuda_device: int,
    ray_address: str | None,
    progress: bool,
    on_part: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    """Score the pending parts on a Ray Data actor pool; each part's result as its actor answered."""
    import ray
    import ray.data
    from tqdm import tqdm

    from sledge.scoring.scorer import PartScorer

    start = time.perf_counter()
    ours = not ray.is_initialized()
    if ours:
        options = {"address": ray_address} if ray_address else {"address": "local", "include_dashboard": False}
        ray.init(**options, logging_level=logging.WARNING)
    ray_start_seconds = time.perf_counter() - start
    try:
        actors = actors or _default_actors(cpus_per_actor, cuda_device >= 0)
        _check_resources(actors, cpus_per_actor, cuda_device >= 0, ours and not ray_address)
        _quiet_ray_data()
        dataset = ray.data.from_items(
            [{"part": json.dumps(asdict(part))} for part in pending], override_num_blocks=len(pending)
        ).map_batches(
            PartScorer,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor,
            num_gpus=1 if cuda_device >= 0 else None,
            runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning,ignore::DeprecationWarning"}},
            fn_constructor_kwargs={
                "archive_file": os.path.abspath(archive_file),
                "overrides": overrides,
                "batch_size": batch_size,
                "cuda": cuda_device >= 0,
                "threads": max(1, int(cpus_per_actor)),
                "output_dir": str(folder.absolute()),
                "output_format": output_format,
            },
        )
        results = []
        execution_start = time.time()
        bar = tqdm(total=sum(part.good for part in pending), unit=" rows", desc="score", disable=not progress)
        rows = iter(dataset.iter_rows())
        try:
            for row in rows:
                result = json.loads(row["result"])
                result["done_at"] = time.time()
                results.append(result)
                bar.update(result["rows"])
                if on_part is not None:
                    on_part(result)
        finally:
            bar.close()
            getattr(rows, "close", lambda: None)()
        return {
            "results": results,
            "ray_start_seconds": ray_start_seconds,
            "execution_start": execution_start,
            "seconds": time.time() - execution_start,
            "actors": actors,
        }
    finally:
        if ours:
            ray.shutdown()


def _default_actors(cpus_per_actor: float, cuda: bool) -> int:
    import ray

    resources = ray.cluster_resources()
    if cuda:
        return max(1, int(resources.get("GPU", 0)))
    return max(1, int(resources.get("CPU", 1) // cpus_per_actor))


def _check_resources(actors: int, cpus_per_actor: float, cuda: bool, local: bool) -> None:
    """On the local Ray of this run, which cannot grow: the actors asked for must fit, or they would
    wait for ever."""
    import ray

    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if actors * cpus_per_actor > cpus:
        message = f"--actors {actors} x --cpus-per-actor {cpus_per_actor:g} needs {actors * cpus_per_actor:g} CPUs"
        if local:
            raise SledgeError(f"{message}; this machine's Ray has {cpus:g}")
        logging.getLogger(__name__).warning("%s; the Ray cluster has %g now", message, cpus)
    if cuda and actors > gpus:
        message = f"--actors {actors} on GPUs needs {actors} GPUs"
        if local:
            raise SledgeError(f"{message}; this machine's Ray has {gpus:g}")
        logging.getLogger(__name__).warning("%s; the Ray cluster has %g now", message, gpus)


class _NoProgressBarNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Progress bars disabled" not in record.getMessage()


def _quiet_ray_data() -> None:
    """One progress bar (ours, in rows): Ray Data's bars and its execution notices off."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logger = logging.getLogger("ray.data")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(f, _NoProgressBarNotice) for f in logger.filters):
        logger.addFilter(_NoProgressBarNotice())


def _summary(
    manifest: dict, done: dict, run: dict, started: float, driver_load_seconds: float, plan_seconds: float
) -> dict[str, Any]:
    """What the run did: rows, speed, exit shares, actors, bad rows."""
    layers: Counter = Counter()
    truncated = 0
    for exit_layers, cut in done.values():
        layers += exit_layers
        truncated += cut
    results = run["results"]
    actors: dict[int, dict[str, Any]] = {}
    for result in results:
        layers += Counter({int(layer): count for layer, count in result["exit_layers"].items()})
        truncated += result["truncated"]
        actor = actors.setdefault(result["pid"], {
            "pid": result["pid"], "host": result["host"], "load_seconds": round(result["load_seconds"], 3),
            "ready_after_seconds": round(result["ready_at"] - run["execution_start"], 3),
            "rss_after_load_mb": round(result["rss_after_load_mb"], 1), "parts": 0, "rows": 0,
            "busy_seconds": 0.0,
        })
        actor["parts"] += 1
        actor["rows"] += result["rows"]
        actor["busy_seconds"] += result["seconds"]
        actor["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    rows = sum(part["good"] for part in manifest["parts"])
    scored = sum(result["rows"] for result in results)
    seconds = run["seconds"]
    ready = min((result["ready_at"] for result in results), default=None)
    last = max((result["done_at"] for result in results), default=None)
    total = sum(layers.values())
    bad = sum(entry["bad_rows"] for entry in manifest["inputs"])
    return {
        "rows": rows,
        "bad_rows": bad,
        "inputs": len(manifest["inputs"]),
        "parts": len(manifest["parts"]),
        "parts_resumed": len(done),
        "rows_resumed": rows - scored,
        "rows_scored": scored,
        "seconds": round(seconds, 3),
        "rows_per_second": round(scored / seconds, 2) if seconds else None,
        "rows_per_second_after_ready": round(scored / (last - ready), 2) if results and last > ready else None,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "ray_start_seconds": None if run["ray_start_seconds"] is None else round(run["ray_start_seconds"], 3),
        "driver_load_seconds": round(driver_load_seconds, 3),
        "plan_seconds": round(plan_seconds, 3),
        "actors": run["actors"],
        "actor_processes": [
            {**actor, "busy_seconds": round(actor["busy_seconds"], 3),
             "rows_per_busy_second": round(actor["rows"] / actor["busy_seconds"], 2)
             if actor["busy_seconds"] else None}
            for actor in actors.values()
        ],
        "exit_shares": {str(layer): round(layers[layer] / total, 6) for layer in sorted(layers)} if total else {},
        "average_exit_layer": round(sum(layer * n for layer, n in layers.items()) / total, 4) if total else None,
        "truncated": truncated,
        "errors": manifest["bad_rows"],
        "settings": manifest["settings"],
    }
