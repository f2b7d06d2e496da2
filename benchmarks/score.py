"""
Bulk scoring: `allennlp predict --batch-size 32` against `allennlp score` (Ray Data) with 1 and 2 actors.

The corpus (default 100,000 rows of JSON lines, `{"sentence": ...}`) is built from the texts on this
machine: the GLUE SST-2 phrases (`glue_SST-2/train.tsv`, `dev.tsv`, `test.tsv`: 67,349 + 872 + 1,821),
the SST-2 sentences of Schwartz et al. (`stsa.binary.train/dev/test`: 6,920 + 872 + 1,821) and AG News
(`ag_news/test.csv` and `partial_train_head580/train.csv`: title and description joined as the
`ag_news` reader joins them: 7,600 + 580), 87,836 non-empty texts in all; they are shuffled (seed 2020) and
repeated from the start until the corpus has `--rows` rows, then cut into `--files` files for
`score` (and written whole once more for `predict`, which reads one file). Repeats cost the model the
same work as new texts (nothing is cached), and the mix keeps the lengths of real inputs: short SST-2
phrases and sentences and longer news texts.

Each run is a fresh process of the command line, timed from outside (wall clock); one after another:
1. `predict` on the first `--batch-size` rows: its fixed cost (imports, model load);
2. `predict` on the whole corpus: rows/s = rows / (wall - that fixed cost); peak memory of the process;
3. `score` for each of `--configs` (`AxC`: A actors of C CPUs and torch threads each; default `1x2`
   (one actor using both cores, as predict does), `1x1` and `2x1`), each into a fresh folder: wall
   clock, and from its summary.json Ray's start-up, the actors' model load time, when each was ready
   and its memory, and rows/s from the first actor ready to the last part (`after ready`, the
   throughput without start-up) and over the whole scoring (`all`, start-up included).
Every score run's rows are checked against predict's, row by row (label and exit layer).

    .venv/bin/python benchmarks/score.py                       # runs/demo/calibrated.tar.gz (make demo)
    .venv/bin/python benchmarks/score.py --archive A.tar.gz --rows 100000 --configs 1x2 1x1 2x1

Writes results.json and report.md to `--out` (default benchmarks/results/score); the corpus and the
outputs go to `--work` (default runs/score-bench).
"""

import argparse
import csv
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
ALLENNLP = str(Path(sys.executable).parent / "allennlp")


def texts() -> list[str]:
    """Every text of the SST-2 and AG News files named in the module's docstring, in file order."""
    found: list[str] = []
    glue = DATA / "sst2" / "glue_SST-2"
    for name, column in (("train.tsv", 0), ("dev.tsv", 0), ("test.tsv", 1)):
        with open(glue / name, encoding="utf-8") as file:
            rows = list(csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
        found += [row[column].strip() for row in rows[1:]]
    for name in ("stsa.binary.train", "stsa.binary.dev", "stsa.binary.test"):
        lines = (DATA / "sst2" / name).read_text(encoding="utf-8").splitlines()
        found += [line.split(" ", 1)[1].strip() for line in lines]
    for path in (DATA / "ag_news" / "test.csv", DATA / "ag_news" / "partial_train_head580" / "train.csv"):
        with open(path, encoding="utf-8", newline="") as file:
            rows = list(csv.reader(file))
        found += [f"{title} {description}".replace("\\$", "$") for _, title, description in rows]
    return [text for text in found if text]


def build_corpus(work: Path, rows: int, files: int) -> tuple[list[str], str, int]:
    """The score inputs, the predict input and the number of distinct texts (kept if already built)."""
    pool = texts()
    random.Random(2020).shuffle(pool)
    corpus = [pool[i % len(pool)] for i in range(rows)]
    folder = work / f"corpus-{rows}-{files}"
    inputs = [str(folder / f"corpus-{k:03d}.jsonl") for k in range(files)]
    whole = str(folder / "all.jsonl")
    if not Path(whole).exists():
        folder.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps({"sentence": text}) + "\n" for text in corpus]
        size = -(-rows // files)
        for k, path in enumerate(inputs):
            Path(path).write_text("".join(lines[k * size : (k + 1) * size]), encoding="utf-8")
        Path(whole + ".partial").write_text("".join(lines), encoding="utf-8")
        os.replace(whole + ".partial", whole)
    return inputs, whole, len(pool)


def timed(command: list[str]) -> dict:
    """Run `command`; its wall-clock seconds and the peak resident memory of its main process."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "output": output}


def predictions(path: Path) -> list[tuple[str, int]]:
    """(label, exit layer) of every row of predict's output file or score's output folder, in order."""
    if path.is_file():
        return [(row["label"], row["exit_layer"]) for row in map(json.loads, path.open(encoding="utf-8"))]
    import pyarrow.parquet as pq

    rows = [row for part in sorted(path.glob("part-*.parquet")) for row in pq.read_table(part).to_pylist()]
    rows.sort(key=lambda row: (row["file"], row["row"]))  # the files' names sort in corpus order
    return [(row["label"], row["exit_layer"]) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archive", default="runs/demo/calibrated.tar.gz", help="a sledge archive")
    parser.add_argument("--threshold", type=float, default=0.9, help="model.confidence_threshold")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=4, help="input files of score")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rows-per-part", type=int, default=4096)
    parser.add_argument("--configs", nargs="+", default=["1x2", "1x1", "2x1"], help="AxC: A actors of C CPUs")
    parser.add_argument("--work", default="runs/score-bench")
    parser.add_argument("--out", default="benchmarks/results/score")
    args = parser.parse_args()
    archive = ROOT / args.archive
    if not archive.exists():
        raise SystemExit(f"{archive} does not exist: train it with `make demo` or give --archive")
    work, out = ROOT / args.work, ROOT / args.out
    inputs, whole, distinct = build_corpus(work, args.rows, args.files)
    overrides = json.dumps({"model.confidence_threshold": args.threshold})
    common = ["--batch-size", str(args.batch_size), "-o", overrides]
    predict = [ALLENNLP, "predict", str(archive), "--include-package", "sledge", "--silent", *common]
    results: dict = {"rows": args.rows, "distinct_texts": distinct, "threshold": args.threshold,
                     "batch_size": args.batch_size, "rows_per_part": args.rows_per_part,
                     "archive": args.archive, "cores": os.cpu_count(), "runs": {}}

    head = work / "head.jsonl"
    head.write_text("".join(Path(whole).open(encoding="utf-8").readlines()[: args.batch_size]))
    fixed = timed([*predict, str(head), "--output-file", str(work / "head.out.jsonl")])
    print(f"predict, {args.batch_size} rows: {fixed['seconds']:.1f} s (imports and model load)", flush=True)
    run = timed([*predict, whole, "--output-file", str(work / "predict.jsonl")])
    steady = args.rows / (run["seconds"] - fixed["seconds"])
    results["runs"]["predict"] = {"wall_seconds": run["seconds"], "fixed_seconds": fixed["seconds"],
                                  "rows_per_second": steady, "peak_rss_mb": run["peak_rss_mb"]}
    print(f"predict: {run['seconds']:.1f} s, {steady:.1f} rows/s after start-up", flush=True)
    reference = predictions(work / "predict.jsonl")

    for config in args.configs:
        actors, cpus = (int(n) for n in config.split("x"))
        folder = work / f"score-{config}"
        shutil.rmtree(folder, ignore_errors=True)
        run = timed([ALLENNLP, "score", str(archive), *inputs, "--output-dir", str(folder), *common,
                     "--rows-per-part", str(args.rows_per_part), "--actors", str(actors),
                     "--cpus-per-actor", str(cpus), "--silent"])
        summary = json.loads((folder / "summary.json").read_text())
        found = predictions(folder)
        agree = sum(a == b for a, b in zip(found, reference)) / len(reference)
        kept = ("ray_start_seconds", "driver_load_seconds", "plan_seconds", "seconds", "rows_per_second",
                "rows_per_second_after_ready", "actor_processes", "exit_shares")
        results["runs"][f"score {config}"] = {
            "actors": actors, "cpus_per_actor": cpus, "wall_seconds": run["seconds"],
            "driver_peak_rss_mb": run["peak_rss_mb"], "rows": len(found), "agreement_with_predict": agree,
            **{key: summary[key] for key in kept},
        }
        print(f"score {config}: {run['seconds']:.1f} s, {summary['rows_per_second_after_ready']} rows/s "
              f"after ready, Ray start-up {summary['ray_start_seconds']} s, agreement {agree:.4f}",
              flush=True)

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "report.md").write_text(report(results))
    print(report(results))


def report(results: dict) -> str:
    """The table of results.json, and the issue's two ratios."""
    runs = results["runs"]
    predict = runs["predict"]
    lines = [
        f"# Bulk scoring: predict against score ({results['rows']:,} rows, {results['distinct_texts']:,} "
        f"distinct texts, threshold {results['threshold']}, batch {results['batch_size']}, "
        f"{results['cores']} cores)",
        "",
        "| run | wall s | Ray start s | actors ready after s | model load s | peak RSS MB | "
        "rows/s after ready | rows/s all | vs predict | agreement |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| predict --batch-size {results['batch_size']} | {predict['wall_seconds']:.1f} | - | "
        f"{predict['fixed_seconds']:.1f} (a {results['batch_size']}-row run) | - | "
        f"{predict['peak_rss_mb']:.0f} | {predict['rows_per_second']:.1f} | "
        f"{results['rows'] / predict['wall_seconds']:.1f} | 1.00 | - |",
    ]
    speed = {}
    for name, run in runs.items():
        if name == "predict":
            continue
        actors = run["actor_processes"]
        ready = "/".join(f"{actor['ready_after_seconds']:.1f}" for actor in actors)
        load = "/".join(f"{actor['load_seconds']:.1f}" for actor in actors)
        memory = "/".join(f"{actor['peak_rss_mb']:.0f}" for actor in actors)
        speed[name] = after = run["rows_per_second_after_ready"]
        lines.append(
            f"| {name} | {run['wall_seconds']:.1f} | {run['ray_start_seconds']:.1f} | {ready} | {load} | "
            f"{memory} (driver {run['driver_peak_rss_mb']:.0f}) | {after:.1f} | "
            f"{run['rows_per_second']:.1f} | {after / predict['rows_per_second']:.2f} | "
            f"{run['agreement_with_predict']:.4f} |"
        )
    lines.append("")
    if "score 1x2" in speed:
        ratio = speed["score 1x2"] / predict["rows_per_second"]
        lines.append(f"- score, 1 actor of 2 threads / predict: {ratio:.2f} (target >= 0.90)")
    for one in ("score 1x1", "score 1x2"):
        if "score 2x1" in speed and one in speed:
            ratio = speed["score 2x1"] / speed[one]
            lines.append(f"- score, 2 actors of 1 thread / {one[6:]}: {ratio:.2f} (target >= 1.6 where one "
                         "actor does not already use both cores)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
