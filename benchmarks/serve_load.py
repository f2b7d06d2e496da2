"""
Load test of `allennlp serve`: an open-loop generator (Poisson arrivals, async HTTP client) against the real
server process, on AG News evaluation texts (the split of `run.py`), this machine.

(a) the standard model (threshold 1, dynamic batching); (b) sledge (`--sledge`: the MiniLM configs'
detached model of benchmarks/heads.py, or the same with the LTE module of benchmarks/policies.py) at the
lowest threshold within 0.5 points of the standard's accuracy, dynamic batching; (c) the same with
layer-level continuous batching (the server's defaults: in effect the oldest group's layer first,
`--max-skips 1`; late rows first while no more than one call's rows are in flight, `--deadline-ms
100`); (d) the layer with the most rows waiting first, so that rows catch up (`--deadline-ms 0
--max-skips 6`); and with `--variant OPTIONS`, (e), (f), ...: more continuous servers with those
options of `allennlp serve`. The servers run side by side (an idle one waits on its empty queue).
Each server's saturation throughput is measured first (a closed loop of 64 concurrent clients);
then every load, from light to 4x the standard's saturation (above every sledge server's), is offered
to each server in turn, so that configurations are compared minutes apart on this shared machine.
Per run: throughput, p50/p95/p99 latency (from each request's scheduled arrival), sent = answered +
rejected, 5xx counted, how late the generator sent requests, and the cores the server and the
generator used. Writes benchmarks/results/serving/ (results.json, report.md, latency.png,
throughput.png).

    .venv/bin/python benchmarks/serve_load.py [--seconds 20] [--loads 0.25 0.5 1 2] [--sledge sledge-lte]
        [--variant '--max-skips 1']
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
CATCH_UP = ["--deadline-ms", "0", "--max-skips", "6"]
DEFAULT_LOADS = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]


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
        self,
        archive: Path,
        scheduler: str,
        threshold: float | None,
        batch_size: int,
        options: list[str],
        cpus: set[int] | None = None,
    ) -> None:
        """`cpus`: the cores the server may use (by default all), and as many torch threads."""
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
        env = dict(os.environ)
        if cpus is not None:
            command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]
            env["OMP_NUM_THREADS"] = str(len(cpus))
        self.log = open(f"/tmp/sledge-serve-{self.port}.log", "w")
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
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


class Client:
    """
    The load generator's HTTP/1.1 client: keep-alive connections, the last freed reused first, O(1) per
    request. (httpx 0.28's pool, httpcore 1.0, walks its connections for every queued request and every
    release: with hundreds of requests pending under overload the generator itself fell behind, sending
    late and slowly, so that the server's queue never filled; the runs before this client used it.)
    """

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port, self.timeout = host, int(port), timeout
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, payload: dict) -> int:
        """POST JSON; the response's status (its body is read and dropped). A kept-alive connection the
        server closed meanwhile is replaced once; no answer within `timeout` seconds raises TimeoutError."""
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        reused = bool(self.idle)
        reader, writer = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(head + body)
            response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout)
        except (OSError, asyncio.IncompleteReadError) as error:  # TimeoutError is an OSError
            writer.close()
            if reused and not isinstance(error, TimeoutError):
                return await self.post(path, payload)
            raise
        lines = response.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").strip() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return int(lines[0].split()[1])

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def open_loop(url: str, pool: list[str], rate: float, seconds: float, seed: int) -> dict:
    """
    Poisson arrivals at `rate` per second for `seconds`; every request is awaited to its end. Latency
    counts from the request's scheduled arrival, so a generator that falls behind adds to it rather than
    hiding it; how late requests were sent is reported (`send_lag_*`).
    """
    rng = random.Random(seed)
    results: list[tuple[int, float]] = []
    lags: list[float] = []
    client = Client(url)

    async def one(text: str, scheduled: float) -> None:
        lags.append(time.perf_counter() - scheduled)
        try:
            status = await client.post("/predict", {"sentence": text})
        except (OSError, asyncio.IncompleteReadError):
            status = -1
        results.append((status, time.perf_counter() - scheduled))

    tasks, start, at = [], time.perf_counter(), 0.0
    while at < seconds:
        at += rng.expovariate(rate)
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(rng.choice(pool), start + at)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    client.close()
    lags.sort()
    return {
        **summary(results, len(tasks), elapsed, rate),
        "send_lag_p50_ms": lags[len(lags) // 2] * 1000,
        "send_lag_max_ms": lags[-1] * 1000,
    }


async def closed_loop(url: str, pool: list[str], clients: int, seconds: float) -> tuple[int, float]:
    """Saturation: `clients` clients each sending the next request when the last is answered; the requests
    answered (200) and the seconds it took."""
    done = 0
    client = Client(url)
    stop = time.perf_counter() + seconds

    async def worker(seed: int) -> None:
        nonlocal done
        rng = random.Random(seed)
        while time.perf_counter() < stop:
            status = await client.post("/predict", {"sentence": rng.choice(pool)})
            done += status == 200  # after the await: `done += await ...` would read `done` before it

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    client.close()
    return done, time.perf_counter() - start


def measured(server: "Server", loop) -> tuple[object, dict]:
    """Run the coroutine `loop`; its result and the cores the server and the load generator used meanwhile."""
    before, server_before, start = os.times(), server.cpu_seconds(), time.perf_counter()
    result = asyncio.run(loop)
    after, server_after, elapsed = os.times(), server.cpu_seconds(), time.perf_counter() - start
    return result, {
        "generator_cores": (after.user + after.system - before.user - before.system) / elapsed,
        "server_cores": (server_after - server_before) / elapsed,
    }


def saturation(server: "Server", pool: list[str], seconds: float, clients: int = 64) -> dict:
    """A server's saturation throughput (closed loop) and the cores the server and the generator used."""
    (answered, elapsed), cores = measured(server, closed_loop(server.url, pool, clients, seconds))
    return {"clients": clients, "answered_per_second": answered / elapsed, **cores}


def percentile(ordered: list[float], q: float) -> float:
    """The `q` quantile of sorted, non-empty `ordered`: the value with a share q of the others below it."""
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float | None, digits: int = 1) -> str:
    """A report cell: milliseconds, or "-" where nothing was measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def summary(results: list[tuple[int, float]], sent: int, elapsed: float, rate: float) -> dict:
    """Counts by status (200 answered, 503 rejected, other 5xx server errors) and the answered latencies."""
    ok = sorted(latency for status, latency in results if status == 200)

    def quantile_ms(q: float) -> float | None:
        return percentile(ok, q) * 1000 if ok else None

    statuses = [status for status, _ in results]
    return {
        "offered_per_second": rate,
        "sent": sent,
        "answered": statuses.count(200),
        "rejected": statuses.count(503),
        "server_errors": sum(1 for s in statuses if 500 <= s < 600 and s != 503),
        "other": sum(1 for s in statuses if s not in (200, 503) and not 500 <= s < 600),
        "throughput_per_second": statuses.count(200) / elapsed,
        "p50_ms": quantile_ms(0.5),
        "p95_ms": quantile_ms(0.95),
        "p99_ms": quantile_ms(0.99),
        "mean_ms": statistics.fmean(ok) * 1000 if ok else None,
        "latencies_ms": [round(latency * 1000, 2) for latency in ok],  # answered requests', sorted
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


def options(results: dict) -> str:
    """The command's options that differ from the defaults: ` --loads ...` and each ` --variant '...'`."""
    factors = sorted({run["load_factor"] for runs in results["runs"].values() for run in runs})
    loads = "" if factors == DEFAULT_LOADS else " --loads " + " ".join(f"{factor:g}" for factor in factors)
    return loads + "".join(f" --variant '{variant}'" for variant in results.get("variants", []))


def variant_label(index: int, options: str) -> str:
    return f"({chr(ord('e') + index)}) sledge, continuous, {options}"


def report(results: dict, out: Path) -> None:
    lines = [
        "# Serving early exit: load test, AG News, this machine",
        "",
        f"Machine: {bench.machine()}. The load generator (asyncio, a keep-alive HTTP/1.1 client of its own; "
        "see `Client`) runs on the same 2 cores as the server, so absolute figures include its cost; every "
        "configuration is measured the same way. The "
        "servers run side by side (an idle one waits on its empty queue) and each load is offered to each "
        "server in turn, so configurations are compared minutes apart.",
        "",
        "Continuous batching (see the README): (c) has the server's defaults (a group passed over once "
        "runs next, `--max-skips 1`, so in effect the oldest group's layer runs next; the groups in flight "
        "for 100 ms or longer first while no more than one call's rows are in flight, `--deadline-ms 100`); "
        "(d) runs the layer with the most rows waiting, so that shallow rows catch up with deep ones, and a "
        "group passed over 6 times next (`--deadline-ms 0 --max-skips 6`). Both take, when more rows "
        "wait for a layer than one call takes, the oldest row and the rows nearest its length."
        + "".join(
            f" {variant_label(i, v).partition(' ')[0]} is (c) with `{v}`."
            for i, v in enumerate(results.get("variants", []))
        ),
        "",
        f"Reproduce: `.venv/bin/python benchmarks/serve_load.py --seconds {results['seconds']} "
        f"--sledge {results['sledge']}{options(results)}` (with `--out` for another folder).",
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
        "Open loop (Poisson arrivals at a multiple of the standard's saturation). Latency counts from each "
        "request's scheduled arrival; send lag: how late the generator sent it (median / most); cores: "
        "the CPU the server and the generator used per second of the run:",
        "",
        "![latency](latency.png) ![throughput](throughput.png)",
        "",
        "| configuration | offered/s | answered/s | p50 ms | p95 ms | p99 ms | sent | answered | rejected "
        "| 5xx | send lag ms | server / generator cores |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config, runs in results["runs"].items():
        for run in runs:
            cells = [ms(run[k]) for k in ("p50_ms", "p95_ms", "p99_ms")]
            lines.append(
                f"| {config} | {run['offered_per_second']:.1f} | {run['throughput_per_second']:.1f} | "
                + " | ".join(cells)
                + f" | {run['sent']} | {run['answered']} | {run['rejected']} | {run['server_errors']} | "
                f"{run['send_lag_p50_ms']:.1f} / {run['send_lag_max_ms']:.0f} | "
                f"{run['server_cores']:.2f} / {run['generator_cores']:.2f} |"
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
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="one more sledge server, continuous, with these options of allennlp serve (e.g. "
        "'--max-skips 1'); repeatable",
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
        "(d) sledge, continuous, catch-up rule": (archive, "continuous", threshold, CATCH_UP),
        **{
            variant_label(i, variant): (archive, "continuous", threshold, variant.split())
            for i, variant in enumerate(args.variant)
        },
    }
    results = {
        "seconds": args.seconds,
        "sledge": args.sledge,
        "threshold": threshold,
        "accuracy": accuracy,
        "variants": args.variant,
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
                offered = open_loop(server.url, pool, factor * standard, args.seconds, int(factor * 100))
                run, cores = measured(server, offered)
                run.update(cores, load_factor=factor)
                del run["latencies_ms"]  # the percentiles above are kept; serve_pooled.py keeps these
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
