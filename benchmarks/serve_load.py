"""
Load test of `allennlp serve`: an open-loop generator (Poisson arrivals, async HTTP client) against the real
server process, on AG News evaluation texts (the split of `run.py`), this machine.

(a) the standard model (threshold 1, dynamic batching); (b) sledge (`--sledge`: the MiniLM configs'
detached model of benchmarks/heads.py, or the same with the LTE module of benchmarks/policies.py) at the
lowest threshold within 0.5 points of the standard's accuracy, dynamic batching; (c) the same with
layer-level continuous batching (the server's defaults: late rows first while no more than one
call's rows are in flight, `--deadline-ms 100`); (d) the same without (`--deadline-ms 0`). (The
third run's (e), `--max-skips 2`, is in benchmarks/results/serving/max-skips.) The
servers run side by side (an idle one waits on its empty queue). Each server's saturation throughput
is measured first (a closed loop of 64 concurrent clients); then every load, from light to 2x the
standard's saturation, is offered to each server in turn, so that configurations are compared
minutes apart on this shared machine. Per run: throughput, p50/p95/p99 latency, and
sent = answered + rejected, 5xx counted. Writes benchmarks/results/serving/ (results.json,
report.md, latency.png, throughput.png).

    .venv/bin/python benchmarks/serve_load.py [--seconds 20] [--loads 0.25 0.5 1 2] [--sledge sledge-lte]
"""

import argparse
import asyncio
import csv
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402

ROOT = bench.ROOT
WORK = Path("runs/benchmarks/agnews")
HEADS_SWEEP = Path("benchmarks/results/heads/agnews/sweep.json")
POLICIES_SWEEP = Path("benchmarks/results/policies/agnews/sweep.json")
NO_DEADLINE = ["--deadline-ms", "0"]
DEFAULT_LOADS = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0]


def texts() -> list[str]:
    """The AG News evaluation texts, as the reader builds them (title, a space, description)."""
    with open(WORK.parent / "data" / "ag_news" / "eval.csv", newline="", encoding="utf-8") as file:
        return [f"{title} {description}".replace("\\$", "$") for _, title, description in csv.reader(file)]


def sledge_threshold(sweep: Path, model: str) -> tuple[float, dict]:
    """The lowest confidence threshold of `model` (a name in the sweep, or its only multi-exit model) within
    0.5 points of the standard, from a committed sweep."""
    rows = json.loads(sweep.read_text())["rows"]
    standard = next(row for row in rows if row["name"] == "standard")
    models = {row["model"] for row in rows if row["kind"] == "sledge"}
    curve = [
        row
        for row in rows
        if row["kind"] == "sledge"
        and (row["model"] == model or models == {"sledge"})
        and row["policy"].rpartition(", ")[2] == "confidence"
    ]
    if not curve:
        raise SystemExit(f"{sweep}: no calibrated confidence curve of {model!r}")
    within = [row for row in curve if row["accuracy"] >= standard["accuracy"] - 0.005]
    pick = min(within, key=lambda row: row["value"])
    return pick["value"], {
        "sweep": str(sweep),
        "sledge_accuracy": pick["accuracy"],
        "standard_accuracy": standard["accuracy"],
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(
        self, archive: Path, scheduler: str, threshold: float | None, batch_size: int, options: list[str]
    ) -> None:
        self.port = free_port()
        command = [
            str(bench.BIN / "allennlp"),
            "serve",
            str(archive),
            "--port",
            str(self.port),
            "--scheduler",
            scheduler,
            "--batch-size",
            str(batch_size),
            "--queue-size",
            "256",
            *options,
        ]
        if threshold is not None:
            command += ["--confidence-threshold", str(threshold)]
        self.log = open(f"/tmp/sledge-serve-{self.port}.log", "w")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(1200):
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the server did not start; see {self.log.name}")

    def cpu_seconds(self) -> float:
        """The server process's user and system CPU time so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        self.log.close()
        return code


async def open_loop(url: str, pool: list[str], rate: float, seconds: float, seed: int) -> dict:
    """Poisson arrivals at `rate` per second for `seconds`; every request is awaited to its end."""
    rng = random.Random(seed)
    results: list[tuple[int, float]] = []
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(text: str) -> None:
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}/predict", json={"sentence": text})
                results.append((response.status_code, time.perf_counter() - start))
            except httpx.TransportError:
                results.append((-1, time.perf_counter() - start))

        tasks, start, at = [], time.perf_counter(), 0.0
        while at < seconds:
            at += rng.expovariate(rate)
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(rng.choice(pool))))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return summary(results, len(tasks), elapsed, rate)


async def closed_loop(url: str, pool: list[str], clients: int, seconds: float) -> float:
    """Saturation: `clients` clients each sending the next request when the last is answered; answers/s."""
    done = 0
    async with httpx.AsyncClient(timeout=120) as client:
        stop = time.perf_counter() + seconds

        async def worker(seed: int) -> None:
            nonlocal done
            rng = random.Random(seed)
            while time.perf_counter() < stop:
                response = await client.post(f"{url}/predict", json={"sentence": rng.choice(pool)})
                done += response.status_code == 200

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        return done / (time.perf_counter() - start)


def saturation(server: "Server", pool: list[str], seconds: float, clients: int = 64) -> dict:
    """A server's saturation throughput (closed loop) and the cores the server and the generator used."""
    before, server_before, start = os.times(), server.cpu_seconds(), time.perf_counter()
    answered = asyncio.run(closed_loop(server.url, pool, clients, seconds))
    after, server_after, elapsed = os.times(), server.cpu_seconds(), time.perf_counter() - start
    return {
        "clients": clients,
        "answered_per_second": answered,
        "generator_cores": (after.user + after.system - before.user - before.system) / elapsed,
        "server_cores": (server_after - server_before) / elapsed,
    }


def summary(results: list[tuple[int, float]], sent: int, elapsed: float, rate: float) -> dict:
    ok = sorted(latency for status, latency in results if status == 200)

    def percentile(q: float) -> float | None:
        return None if not ok else ok[min(len(ok) - 1, int(q * len(ok)))] * 1000

    statuses = [status for status, _ in results]
    return {
        "offered_per_second": rate,
        "sent": sent,
        "answered": statuses.count(200),
        "rejected": statuses.count(503),
        "server_errors": sum(1 for s in statuses if 500 <= s < 600 and s != 503),
        "other": sum(1 for s in statuses if s not in (200, 503) and not 500 <= s < 600),
        "throughput_per_second": statuses.count(200) / elapsed,
        "p50_ms": percentile(0.5),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "mean_ms": statistics.fmean(ok) * 1000 if ok else None,
    }


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, keys, label in (
        ("latency.png", ("p50_ms", "p99_ms"), "latency (ms)"),
        ("throughput.png", ("throughput_per_second",), "answered per second"),
    ):
        figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=120)
        for config, runs in results["runs"].items():
            loads = [run["offered_per_second"] for run in runs]
            for key, style in zip(keys, ("o-", "s--")):
                axes.plot(loads, [run[key] for run in runs], style, label=f"{config} {key}")
        axes.set_xlabel("offered load (requests per second, Poisson)")
        axes.set_ylabel(label)
        if "latency" in name:
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
        axes.set_title("allennlp serve on AG News, this 2-core machine")
        figure.tight_layout()
        figure.savefig(out / name)
        plt.close(figure)


def loads_option(results: dict) -> str:
    """` --loads ...` where the run offered other loads than the default's, else nothing."""
    factors = sorted({run["load_factor"] for runs in results["runs"].values() for run in runs})
    return "" if factors == DEFAULT_LOADS else " --loads " + " ".join(f"{factor:g}" for factor in factors)


def report(results: dict, out: Path) -> None:
    lines = [
        "# Serving early exit: load test, AG News, this machine",
        "",
        f"Machine: {bench.machine()}. The load generator (httpx, asyncio) runs on the same 2 cores as the "
        "server, so absolute figures include its cost; every configuration is measured the same way. The "
        "servers run side by side (an idle one waits on its empty queue) and each load is offered to each "
        "server in turn, so configurations are compared minutes apart.",
        "",
        "Continuous batching (see the README): (c) has the server's defaults (the groups in flight for "
        "100 ms or longer are served first while no more than one call's rows are in flight, "
        "`--deadline-ms 100`); (d) runs the layer with the most rows waiting at every load "
        "(`--deadline-ms 0`). Both take, when more rows wait for a layer than one call takes, the oldest "
        "row and the rows nearest its length.",
        "",
        f"Reproduce: `.venv/bin/python benchmarks/serve_load.py --seconds {results['seconds']} "
        f"--sledge {results['sledge']}{loads_option(results)}` (with `--out` for another folder).",
        "",
        f"sledge: `runs/benchmarks/agnews/{results['sledge']}/calibrated.tar.gz`, the lowest calibrated "
        f"confidence threshold within 0.5 points of the standard in `{results['accuracy']['sweep']}`: "
        f"{results['threshold']:g} (accuracy {results['accuracy']['sledge_accuracy']:.4f} "
        f"against the standard's {results['accuracy']['standard_accuracy']:.4f} on the evaluation split). "
        "",
        "Saturation: each server's throughput under a closed loop of 64 clients (each sends its next request "
        "when its last is answered), measured first on each server, one after the other; the standard's sets "
        "the offered loads of the open-loop runs below. Cores: the CPU time the server process and the load "
        "generator used, per second of the run (2 cores in all).",
        "",
        "| configuration | saturation answered/s | x standard | server cores | generator cores |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {config} | {sat['answered_per_second']:.1f} | "
            f"{sat['answered_per_second'] / results['standard_saturation']:.2f} | "
            f"{sat['server_cores']:.2f} | {sat['generator_cores']:.2f} |"
            for config, sat in results["saturation"].items()
        ),
        "",
        "Open loop (Poisson arrivals at a multiple of the standard's saturation):",
        "",
        "![latency](latency.png) ![throughput](throughput.png)",
        "",
        "| configuration | offered/s | answered/s | p50 ms | p95 ms | p99 ms | sent | answered | rejected "
        "| 5xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, runs in results["runs"].items():
        for run in runs:
            cells = [f"{run[k]:.1f}" if run[k] is not None else "-" for k in ("p50_ms", "p95_ms", "p99_ms")]
            lines.append(
                f"| {config} | {run['offered_per_second']:.1f} | {run['throughput_per_second']:.1f} | "
                + " | ".join(cells)
                + f" | {run['sent']} | {run['answered']} | {run['rejected']} | "
                f"{run['server_errors']} |"
            )
    lines.append("")
    (out / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each open-loop run")
    parser.add_argument(
        "--loads",
        type=float,
        nargs="+",
        default=DEFAULT_LOADS,
        help="offered loads, as multiples of the standard's saturation throughput",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--sledge",
        default="detached-linear",
        help="the sledge model's folder under runs/benchmarks/agnews (calibrated.tar.gz): detached-linear "
        "(benchmarks/heads.py, threshold from its sweep) or sledge-lte (benchmarks/policies.py, likewise)",
    )
    parser.add_argument("--out", default="benchmarks/results/serving")
    args = parser.parse_args()
    os.chdir(ROOT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pool = texts()
    sweep = POLICIES_SWEEP if args.sledge == "sledge-lte" else HEADS_SWEEP
    threshold, accuracy = sledge_threshold(sweep, args.sledge)
    archive = WORK / args.sledge / "calibrated.tar.gz"
    configs = {
        "(a) standard, threshold 1, dynamic": (WORK / "standard" / "model.tar.gz", "dynamic", None, []),
        "(b) sledge, dynamic": (archive, "dynamic", threshold, []),
        "(c) sledge, continuous": (archive, "continuous", threshold, []),
        "(d) sledge, continuous, no deadline": (archive, "continuous", threshold, NO_DEADLINE),
    }
    results = {
        "seconds": args.seconds,
        "sledge": args.sledge,
        "threshold": threshold,
        "accuracy": accuracy,
        "saturation": {},
        "runs": {},
    }
    servers = {}
    try:
        for config, (archive, scheduler, value, options) in configs.items():
            servers[config] = Server(archive, scheduler, value, args.batch_size, options)
        for config, server in servers.items():
            results["saturation"][config] = saturation(server, pool, args.seconds)
            print(config, "saturation", json.dumps(results["saturation"][config]), flush=True)
        standard = results["saturation"]["(a) standard, threshold 1, dynamic"]["answered_per_second"]
        results["standard_saturation"] = standard  # it sets the offered loads of every server
        for factor in args.loads:
            for config, server in servers.items():
                run = asyncio.run(
                    open_loop(server.url, pool, factor * standard, args.seconds, seed=int(factor * 100))
                )
                run["load_factor"] = factor
                print(config, json.dumps(run), flush=True)
                results["runs"].setdefault(config, []).append(run)
    finally:
        results["exit_codes"] = {config: server.stop() for config, server in servers.items()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plots(results, out)
    report(results, out)
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
