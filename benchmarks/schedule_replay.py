"""
The serving schedulers without HTTP: the same Poisson arrivals (AG News evaluation texts, the split of
`run.py`) fed straight into `DynamicScheduler` and `ContinuousScheduler` in this process, so that what
the schedulers do is measured apart from the server's event loop, the HTTP client and JSON.

Each request is one text, tokenized before the run (the server tokenizes in its event loop); the
main thread submits it at its scheduled time, and its latency counts from then to its answer. Each
load is offered to each configuration in turn (the same arrival times and texts for all), once per
arrival sequence (`--seeds`), so configurations are compared seconds apart. Per run: answered/s,
p50/p95/p99 latency, rejected (queue full, the server's 503), server errors (a failed batch, the
server's 500), as `serve_load.summary` counts them, model calls and the mean rows per call (for
continuous, per layer call); then each configuration's p99 against dynamic batching's on the same
arrivals. Writes report.md and results.json to --out.

    .venv/bin/python benchmarks/schedule_replay.py [--rates 66.5 100 133 200] [--seconds 20]
        [--seeds 0 1 2] [--variant '--max-skips 3 --deadline-ms 25']
"""

import argparse
import json
import queue
import random
import shlex
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_load  # noqa: E402
from serve_load import ms, percentile  # noqa: E402

from sledge.commands.arguments import non_negative_float, positive_int  # noqa: E402
from sledge.commands.common import load_sledge_archive  # noqa: E402
from sledge.serving.continuous import DEADLINE_MS, MAX_SKIPS, ContinuousScheduler  # noqa: E402
from sledge.serving.dynamic import DynamicScheduler  # noqa: E402
from sledge.serving.engine import Engine  # noqa: E402
from sledge.serving.metrics import ServingMetrics  # noqa: E402
from sledge.serving.scheduler import Job  # noqa: E402

ARCHIVE = serve_load.WORK / "sledge-lte" / "calibrated.tar.gz"
STANDARD_SATURATION = 66.5  # answered/s of the standard server, serving run 11 (benchmarks/results/serving)


def configurations(variants: list[str]) -> list[tuple[str, type, dict]]:
    """(label, scheduler class, options): dynamic, continuous with the server's defaults, the variants."""
    configs = [
        ("dynamic", DynamicScheduler, {}),
        ("continuous", ContinuousScheduler, {"deadline_ms": DEADLINE_MS, "max_skips": MAX_SKIPS}),
    ]
    for text in variants:
        parser = argparse.ArgumentParser(prog="--variant")
        parser.add_argument("--deadline-ms", type=non_negative_float, default=DEADLINE_MS)
        parser.add_argument("--max-skips", type=positive_int, default=MAX_SKIPS)
        options = parser.parse_args(shlex.split(text))
        configs.append(
            (f"continuous {text}", ContinuousScheduler,
             {"deadline_ms": options.deadline_ms, "max_skips": options.max_skips})
        )
    return configs


def replay(engine: Engine, scheduler_class: type, options: dict, arrivals: list[tuple[float, object]],
           window: float, batch_size: int, max_wait_ms: float, queue_size: int) -> dict:
    """
    Feed `arrivals` ((seconds from start, encoded text), drawn over `window` seconds) to a fresh
    scheduler; latency and counts.
    """
    metrics = ServingMetrics(engine.layers)
    scheduler = scheduler_class(engine, batch_size, max_wait_ms, queue_size, metrics, None, **options)
    outcomes: list[tuple[int, float]] = []  # (the server's status, latency), as serve_load.summary takes
    lock = threading.Lock()
    scheduler.start()
    start = time.perf_counter()
    for at, encoded in arrivals:
        delay = start + at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        job = Job([encoded], [None])
        scheduled = start + at

        def done(future, scheduled=scheduled) -> None:
            with lock:  # a failed batch is the server's 500
                outcomes.append((200 if future.exception() is None else 500, time.perf_counter() - scheduled))

        try:
            scheduler.submit(job)
        except queue.Full:  # the server's 503
            outcomes.append((503, 0.0))
            continue
        job.future.add_done_callback(done)
    scheduler.stop()  # answers everything accepted first
    run = serve_load.summary(outcomes, len(arrivals), time.perf_counter() - start, len(arrivals) / window)
    registry = metrics.registry
    calls = registry.get_sample_value("sledge_batch_rows_count") or 0
    rows = registry.get_sample_value("sledge_batch_rows_sum") or 0
    exit_layers = registry.get_sample_value("sledge_exit_layer_sum") or 0
    return {
        **run,
        "model_calls": int(calls),
        "rows_per_call": rows / calls if calls else 0.0,
        "mean_exit_layer": exit_layers / max(1, run["answered"]),
    }


def report(results: dict, out: Path, command: str) -> None:
    lines = [
        "# The serving schedulers replayed without HTTP (AG News, this machine)",
        "",
        f"Model: `{results['archive']}` at threshold {results['threshold']}. Same Poisson arrivals "
        "(seeded) for every configuration; texts tokenized before the run; latency from each request's "
        "scheduled arrival to its answer; each load offered to each configuration in turn. Rows per call: "
        "the mean rows of a model call (dynamic: a batch; continuous: one layer call).",
        "",
        f"Reproduce: `{command}`",
        "",
        "| configuration | seed | offered/s | answered/s | p50 ms | p95 ms | p99 ms | rejected | calls "
        "| rows per call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in results["runs"].items():
        for run in runs:
            lines.append(
                f"| {label} | {run['seed']} | {run['offered_per_second']:.1f} | "
                f"{run['throughput_per_second']:.1f} | "
                f"{ms(run['p50_ms'])} | {ms(run['p95_ms'])} | {ms(run['p99_ms'])} | {run['rejected']} | "
                f"{run['model_calls']} | {run['rows_per_call']:.1f} |"
            )
    lines += ["", "Each configuration's p99 against dynamic batching's on the same arrivals (seed):", ""]
    dynamic = {(run["seed"], run["rate"]): run for run in results["runs"]["dynamic"]}
    lines += [
        "| configuration | offered/s | seeds with p99 at most dynamic's | p99 ms, each seed (dynamic's) |",
        "|---|---:|---:|---|",
    ]
    for label, runs in results["runs"].items():
        if label == "dynamic":
            continue
        for rate in sorted({run["rate"] for run in runs}):
            pairs = [(run, dynamic[run["seed"], rate]) for run in runs if run["rate"] == rate]
            wins = sum(None not in (run["p99_ms"], base["p99_ms"]) and run["p99_ms"] <= base["p99_ms"]
                       for run, base in pairs)
            each = ", ".join(f"{ms(run['p99_ms'], 0)} ({ms(base['p99_ms'], 0)})" for run, base in pairs)
            lines.append(f"| {label} | {rate:.1f} | {wins} of {len(pairs)} | {each} |")
    if len(dynamic) > len({rate for _, rate in dynamic}):  # more than one arrival sequence
        lines += pooled(results)
    (out / "report.md").write_text("\n".join(lines) + "\n")


def quantile(values: list[float], q: float) -> float:
    return percentile(sorted(values), q)


def pooled(results: dict, resamples: int = 2000) -> list[str]:
    """
    Every arrival sequence's latencies pooled per configuration and load: p50 and p99, and the ratio of
    each configuration's p99 to dynamic batching's with a 90% interval from resampling the arrival
    sequences (with replacement, the same ones for both).
    """
    rng = random.Random(0)
    lines = [
        "",
        "Pooled over the arrival sequences (a request's latency counts once, whichever sequence it came "
        "from); p99 ratio to dynamic's, with a 90% interval from resampling the sequences "
        f"({resamples} resamples, paired):",
        "",
        "| configuration | offered/s | requests | p50 ms | p99 ms | p99 / dynamic's p99 (90% interval) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    dynamic = {(run["seed"], run["rate"]): run["latencies_ms"] for run in results["runs"]["dynamic"]}
    for label, runs in results["runs"].items():
        for rate in sorted({run["rate"] for run in runs}):
            mine = {run["seed"]: run["latencies_ms"] for run in runs if run["rate"] == rate}
            seeds = sorted(mine)
            every = [value for seed in seeds for value in mine[seed]]
            base = [value for seed in seeds for value in dynamic[seed, rate]]
            if not every or not base:  # nothing answered: no latency to compare
                continue
            p50, p99 = quantile(every, 0.5), quantile(every, 0.99)
            row = f"| {label} | {rate:.1f} | {len(every)} | {p50:.1f} | {p99:.1f} |"
            if label == "dynamic":
                lines.append(row + " |")
                continue
            ratios = []
            for _ in range(resamples):
                drawn = [rng.choice(seeds) for _ in seeds]
                ours = [value for seed in drawn for value in mine[seed]]
                theirs = [value for seed in drawn for value in dynamic[seed, rate]]
                ratios.append(quantile(ours, 0.99) / quantile(theirs, 0.99))
            ratio = quantile(every, 0.99) / quantile(base, 0.99)
            lines.append(row + f" {ratio:.2f} ({quantile(ratios, 0.05):.2f}-{quantile(ratios, 0.95):.2f}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--threshold", type=float, help="default: the load test's (within 0.5 points)")
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[f * STANDARD_SATURATION for f in (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--variant", action="append", default=[], help="continuous options, as for serve")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--queue-size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one arrival sequence each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving/replay"))
    args = parser.parse_args()
    threshold = args.threshold
    if threshold is None:
        threshold, _ = serve_load.sledge_threshold(serve_load.POLICIES_SWEEP, "sledge-lte")
    if not args.archive.exists():
        raise SystemExit(f"{args.archive}: not found (benchmarks/serve_load.py trains it)")
    engine = Engine(load_sledge_archive(str(args.archive)))
    engine.policy = engine.policy.with_setting(threshold)
    pool = [engine.encode({"sentence": text}) for text in serve_load.texts()]
    configs = configurations(args.variant)
    results = {"archive": str(args.archive), "threshold": threshold, "runs": {c[0]: [] for c in configs}}
    for seed in args.seeds:
        for rate in args.rates:
            rng = random.Random(seed)
            arrivals, at = [], rng.expovariate(rate)
            while at < args.seconds:
                arrivals.append((at, rng.choice(pool)))
                at += rng.expovariate(rate)
            for label, scheduler_class, options in configs:
                run = replay(engine, scheduler_class, options, arrivals, args.seconds, args.batch_size,
                             args.max_wait_ms, args.queue_size)
                run.update(seed=seed, rate=rate)
                results["runs"][label].append(run)
                print(f"{label:40s} seed {seed} {rate:6.1f}/s answered {run['throughput_per_second']:6.1f}/s "
                      f"p50 {ms(run['p50_ms'])} p99 {ms(run['p99_ms'])} ms rejected {run['rejected']} "
                      f"5xx {run['server_errors']} "
                      f"rows/call {run['rows_per_call']:.1f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results) + "\n")  # compact: every latency is kept
    report(results, args.out, ".venv/bin/python benchmarks/schedule_replay.py " + shlex.join(sys.argv[1:]))


if __name__ == "__main__":
    main()
