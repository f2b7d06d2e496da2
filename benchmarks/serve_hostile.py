"""
A normal client's latency while another client attacks `allennlp serve` (issue 28's target: its p99
within 2x of what it is on a server with no attacker).

One real server process (the sledge model and threshold of `serve_load.py`, the server's defaults:
continuous batching and every request limit). The victim sends seeded Poisson arrivals of AG News texts
at `--load` x the server's saturation throughput (measured first, closed loop), through `serve_load.py`'s
client; meanwhile an attacker in another process sends, back to back and as fast as the server lets
it (or `--pace` seconds after each answer: a client sending such a request now and then, not a flood):

- `body`: a 50 MB body (one sentence) with its Content-Length, sent to its end though the server
  answers 413 after the headers;
- `chunked`: the same 50 MB without a length (chunked transfer encoding);
- `instances`: one request of 20,000 instances;
- `largest`: the largest request within the limits (256 texts of 4,000 characters, just under 1 MiB),
  for reference: it is work the server accepts, not an attack it refuses.

Each phase (`none`, the victim alone, then each attack) runs `--seconds`, the whole cycle `--repeats`
times, with the same arrival sequences in every phase of a repeat; p50 / p99 are pooled over the repeats.
The report gives each attack's p99 over the `none` p99 (the target: at most 2), what the attacker got
(statuses), and the server's resident memory after each phase. Writes results.json and report.md to --out.

On one machine the attacker's own work (writing 50 MB bodies as fast as the kernel takes them) competes
for the cores with the server, which a remote attacker's would not. `--pin` separates the two: the
server gets core 0 alone (one torch thread), the victim's load generator and the attacker share the
other cores, in every phase; what is left is what the attacks cost the server itself.

    .venv/bin/python benchmarks/serve_hostile.py [--seconds 20] [--repeats 3] [--load 0.25] [--pin] [--pace S]
        [--attacks body chunked instances largest] [--archive A --threshold T --texts FILE]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402
import serve_load  # noqa: E402
from serve_load import ms, percentile  # noqa: E402

ROOT = bench.ROOT
ATTACKS = ["body", "chunked", "instances", "largest"]
LAYOUTS = {
    False: "The attacker runs in another process on the same cores as the server.",
    True: "Pinned (`--pin`): the server alone on core 0 with one torch thread; the victim's load generator "
    "and the attacker on the other cores.",
}
BODY_BYTES = 50_000_000


def attack_bodies(kind: str) -> tuple[bytes, bool]:
    """The attacker's request body and whether it goes without a Content-Length (chunked)."""
    if kind in ("body", "chunked"):
        text = b"good " * ((BODY_BYTES - 20) // 5)
        return b'{"sentence": "' + text + b'"}', kind == "chunked"
    if kind == "instances":
        return json.dumps([{"sentence": f"a good film {i}"} for i in range(20_000)]).encode(), False
    words = "the film was good and the acting was great but the plot "
    text = (words * (4000 // len(words) + 1))[:4000]
    return json.dumps([{"sentence": text}] * 256).encode(), False


async def attack_once(host: str, port: int, body: bytes, chunked: bool) -> int:
    """One attacking request, sent to its end even if the answer comes first (as a client that does not
    listen would): its status, -1 if the connection failed before an answer came."""
    reader, writer = await asyncio.open_connection(host, port)
    length = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
    try:
        writer.write(b"POST /predict HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s\r\n\r\n"
                     % (host.encode(), length))
        for start in range(0, len(body), 1 << 20):
            piece = body[start:start + (1 << 20)]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except OSError:
        pass  # the server closed the connection; its answer may still be there to read
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 300)
        return int(head.split()[1])
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return -1
    finally:
        writer.close()


def attacker(url: str, kind: str, pace: float, stop, statuses) -> None:
    """Attack until `stop` is set, `pace` seconds between one answer and the next request (0: back to
    back); each status goes to the shared list `statuses`."""
    host, _, port = url.removeprefix("http://").partition(":")
    body, chunked = attack_bodies(kind)

    async def loop() -> None:
        while not stop.is_set():
            statuses.append(await attack_once(host, int(port), body, chunked))
            await asyncio.sleep(pace)

    asyncio.run(loop())


def phase(server: serve_load.Server, pool: list[str], rate: float, seconds: float, seed: int, kind: str,
          pace: float, manager) -> dict:
    """The victim's run at `rate` with the attacker `kind` (or none) at work meanwhile."""
    stop, statuses = manager.Event(), manager.list()
    process = None
    if kind != "none":
        process = multiprocessing.Process(target=attacker, args=(server.url, kind, pace, stop, statuses))
        process.start()
    run, cores = serve_load.measured(server, serve_load.open_loop(server.url, pool, rate, seconds, seed))
    stop.set()
    if process is not None:
        process.join(600)
    attacked = list(statuses)
    return {**run, **cores, "attack": kind, "seed": seed, "server_rss_mb": rss_mb(server.process.pid),
            "attack_statuses": {str(s): attacked.count(s) for s in sorted(set(attacked))}}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def paced(pace: float) -> str:
    if not pace:
        return "The attacker sends its requests back to back, each as soon as the last was answered."
    return f"The attacker sends one request, then waits {pace:g} s after its answer before the next."


def report(results: dict, out: Path, command: str) -> None:
    pooled = results["pooled"]
    base = pooled["none"]["p99_ms"]
    lines = [
        f"# A normal client's latency while another attacks the server ({results['texts']}, this machine)",
        "",
        f"Model: `{results['archive']}` at threshold {results['threshold']}; `allennlp serve` with its "
        f"defaults. Victim: seeded Poisson arrivals at {results['rate']:.1f}/s ({results['load']:g} x the "
        f"server's saturation, {results['saturation']:.1f}/s), {results['seconds']:g} s per phase, "
        f"{results['repeats']} repeats, pooled. {LAYOUTS[results['pinned']]} {paced(results['pace'])}",
        "",
        f"Reproduce: `{command}`",
        "",
        "| attack | victim p50 ms | victim p99 ms | p99 / no attack | victim answered / sent "
        "| attacker got |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for kind, row in pooled.items():
        measured = kind != "none" and base is not None and row["p99_ms"] is not None
        ratio = f"{row['p99_ms'] / base:.2f}" if measured else "-"
        lines.append(
            f"| {kind} | {ms(row['p50_ms'])} | {ms(row['p99_ms'])} | {ratio} | {row['answered']} / "
            f"{row['sent']} | {row['attack_statuses'] or '-'} |"
        )
    lines += [
        "",
        "Every phase:",
        "",
        "| repeat | attack | p50 ms | p99 ms | answered/sent | server RSS MB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for run in results["runs"]:
        lines.append(f"| {run['repeat']} | {run['attack']} | {ms(run['p50_ms'])} | {ms(run['p99_ms'])} | "
                     f"{run['answered']}/{run['sent']} | {run['server_rss_mb']:.0f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=float, default=0.25, help="the victim's rate, x the saturation")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=ATTACKS)
    parser.add_argument("--archive", default=None, help="default: serve_load.py's sledge model")
    parser.add_argument("--threshold", type=float, default=None, help="with --archive")
    parser.add_argument("--texts", default=None, help="with --archive: a file of texts, one a line")
    parser.add_argument("--pin", action="store_true", help="the server alone on core 0 (see above)")
    parser.add_argument("--pace", type=float, default=0.0, help="seconds the attacker waits between requests")
    parser.add_argument("--out", default="benchmarks/results/serving/hostile")
    args = parser.parse_args()
    os.chdir(ROOT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.archive is None:
        archive = serve_load.WORK / "detached-linear" / "calibrated.tar.gz"
        threshold, _ = serve_load.sledge_threshold(serve_load.HEADS_SWEEP, "detached-linear")
        pool = serve_load.texts()
    else:
        archive, threshold = Path(args.archive), args.threshold
        lines = Path(args.texts).read_text(encoding="utf-8").splitlines()
        pool = [line.strip() for line in lines if line.strip()]
    server_cpus = None
    if args.pin:
        others = os.sched_getaffinity(0) - {0}
        if not others:
            raise SystemExit("--pin needs at least two cores")
        server_cpus = {0}
        os.sched_setaffinity(0, others)  # this process (the victim's generator) and the attacker it starts
    server = serve_load.Server(archive, "continuous", threshold, 32, [], server_cpus)
    results = {
        "archive": str(archive),
        "texts": "AG News texts" if args.texts is None else f"the texts of `{args.texts}`",
        "threshold": threshold,
        "seconds": args.seconds,
        "repeats": args.repeats,
        "load": args.load,
        "pinned": args.pin,
        "pace": args.pace,
        "runs": [],
    }
    try:
        results["saturation"] = serve_load.saturation(server, pool, args.seconds)["answered_per_second"]
        results["rate"] = args.load * results["saturation"]
        with multiprocessing.Manager() as manager:
            for repeat in range(args.repeats):
                for kind in ["none", *args.attacks]:
                    run = phase(server, pool, results["rate"], args.seconds, repeat, kind, args.pace, manager)
                    run["repeat"] = repeat
                    shown = {key: value for key, value in run.items() if key != "latencies_ms"}
                    print(kind, json.dumps(shown), flush=True)
                    results["runs"].append(run)
    finally:
        results["exit_code"] = server.stop()
    results["pooled"] = {}
    for kind in ["none", *args.attacks]:
        runs = [run for run in results["runs"] if run["attack"] == kind]
        latencies = sorted(latency for run in runs for latency in run["latencies_ms"])
        statuses: dict[str, int] = {}
        for run in runs:
            for status, count in run["attack_statuses"].items():
                statuses[status] = statuses.get(status, 0) + count
        results["pooled"][kind] = {
            "p50_ms": percentile(latencies, 0.5) if latencies else None,
            "p99_ms": percentile(latencies, 0.99) if latencies else None,
            "answered": sum(run["answered"] for run in runs),
            "sent": sum(run["sent"] for run in runs),
            "attack_statuses": statuses,
        }
    command = ".venv/bin/python benchmarks/serve_hostile.py " + shlex.join(sys.argv[1:])
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report(results, out, command.strip())
    for kind, row in results["pooled"].items():
        print(kind, "p50", ms(row["p50_ms"]), "p99", ms(row["p99_ms"]), "attacker", row["attack_statuses"])
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
