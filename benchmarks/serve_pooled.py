"""
The tails of `allennlp serve`'s two schedulers through HTTP, pooled over several arrival sequences.

One load-test run's p99 rests on its 1% slowest requests, and runs of the same load differ as much as
the schedulers do (benchmarks/results/serving). Here two real server processes, sledge with dynamic and
with continuous batching (the server's defaults, the model and threshold of `serve_load.py`), get the
same seeded Poisson arrivals of AG News texts through `serve_load.py`'s client, each load once per
arrival sequence (`--seeds`), the servers in turn. The report has every run, then per load the pooled
p50 / p99 and continuous's p99 over dynamic's with a 90% interval from resampling the sequences (as
`schedule_replay.py`). Writes report.md and results.json (every answered request's latency) to --out.

    .venv/bin/python benchmarks/serve_pooled.py [--rates 49.9 66.5 99.75 133] [--seconds 15] [--seeds 0 1 2]
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_load  # noqa: E402
from schedule_replay import STANDARD_SATURATION, pooled  # noqa: E402
from serve_load import ms  # noqa: E402


def report(results: dict, out: Path, command: str) -> None:
    lines = [
        "# The serving schedulers through HTTP, pooled over arrival sequences (AG News, this machine)",
        "",
        f"Model: `{results['archive']}` at threshold {results['threshold']}; `allennlp serve` with "
        "`--scheduler dynamic` and `--scheduler continuous` (its defaults), side by side; the load "
        "generator of `serve_load.py` on the same 2 cores. Same Poisson arrivals (seeded) for both; "
        "latency from each request's scheduled arrival to its answer.",
        "",
        f"Reproduce: `{command}`",
        "",
        "| configuration | seed | offered/s | answered/s | p50 ms | p95 ms | p99 ms | sent | answered "
        "| rejected | 5xx | server / generator cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in results["runs"].items():
        for run in runs:
            lines.append(
                f"| {label} | {run['seed']} | {run['offered_per_second']:.1f} | "
                f"{run['throughput_per_second']:.1f} | {ms(run['p50_ms'])} | {ms(run['p95_ms'])} | "
                f"{ms(run['p99_ms'])} | {run['sent']} | {run['answered']} | {run['rejected']} | "
                f"{run['server_errors']} | {run['server_cores']:.2f} / {run['generator_cores']:.2f} |"
            )
    lines += pooled(results)
    lines.append(f"\nServers' exit codes after SIGTERM: {results['exit_codes']}.")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+",
                        default=[f * STANDARD_SATURATION for f in (0.75, 1.0, 1.5, 2.0)])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sledge", default="sledge-lte", help="as serve_load.py's")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving/pooled-http"))
    args = parser.parse_args()
    sweep = serve_load.POLICIES_SWEEP if args.sledge == "sledge-lte" else serve_load.HEADS_SWEEP
    threshold, _ = serve_load.sledge_threshold(sweep, args.sledge)
    archive = serve_load.WORK / args.sledge / "calibrated.tar.gz"
    if not archive.exists():
        raise SystemExit(f"{archive}: not found (benchmarks/serve_load.py trains it)")
    pool = serve_load.texts()
    results = {"archive": str(archive), "threshold": threshold, "runs": {"dynamic": [], "continuous": []}}
    servers = {}
    try:
        for label in results["runs"]:
            servers[label] = serve_load.Server(archive, label, threshold, 32, [])
        for seed in args.seeds:
            for rate in args.rates:
                for label, server in servers.items():
                    loop = serve_load.open_loop(server.url, pool, rate, args.seconds, seed)
                    run, cores = serve_load.measured(server, loop)
                    run.update(cores, seed=seed, rate=rate)
                    results["runs"][label].append(run)
                    print(f"{label:10s} seed {seed} {rate:6.1f}/s answered "
                          f"{run['throughput_per_second']:6.1f}/s p50 {ms(run['p50_ms'])} "
                          f"p99 {ms(run['p99_ms'])} ms rejected {run['rejected']} "
                          f"5xx {run['server_errors']}", flush=True)
    finally:
        results["exit_codes"] = {label: server.stop() for label, server in servers.items()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results) + "\n")
    report(results, args.out, ".venv/bin/python benchmarks/serve_pooled.py " + shlex.join(sys.argv[1:]))
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
