"""
Stronger shallow exits: self-distillation and richer exit heads, on real data.

For SST-2 and AG News (the splits of `run.py`), train the sledge model (exits 0, 1, 3, 5; MiniLM-L6,
2 epochs) with each (training strategy, exit head) combination below, calibrate each on dev, and sweep
their confidence curves in ONE `allennlp sweep` run (`--also`) with the efficient and standard
baselines, so every time is measured side by side. Then time each head type's exit against one
transformer layer at batch 1 and 32 (`head_cost`). Writes benchmarks/results/heads/.

    .venv/bin/python benchmarks/heads.py                 # both datasets
    .venv/bin/python benchmarks/heads.py --train-only    # train what is missing, sweep nothing
    .venv/bin/python benchmarks/heads.py --report-only

Models already trained are reused unless --retrain; the baselines are run.py's.
"""

import argparse
import functools
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policies  # noqa: E402  (benchmarks/policies.py: data, training, paths)
import run as bench  # noqa: E402

ROOT = bench.ROOT
DETACHED = bench.STRATEGIES["detached"]
DISTILLED = {**DETACHED, "model.training_strategy": {"type": "distilled"}}
COMBINATIONS = {
    "detached-linear": DETACHED,  # today's model: the MiniLM configs as they were
    "distilled-linear": DISTILLED,
    "distilled-mlp": {**DISTILLED, "model.exit_head": {"type": "mlp"}},
    "distilled-attention": {**DISTILLED, "model.exit_head": {"type": "attention"}},
}
PER_DATASET = {
    "sst2": list(COMBINATIONS),
    "agnews": ["detached-linear", "distilled-linear", "distilled-attention"],
}


def train_all(dataset: str, data: dict, work: Path, retrain: bool) -> dict:
    trained = {
        name: policies.train(name, layers, data, work, {}, retrain)
        for name, layers in policies.BASELINES.items()
    }
    for name in PER_DATASET[dataset]:
        trained[name] = policies.train(name, [0, 1, 3, 5], data, work, COMBINATIONS[name], retrain)
    return trained


def benchmark(dataset: str, data: dict, work: Path, out: Path, args: argparse.Namespace) -> None:
    work, out = work / dataset, out / dataset
    out.mkdir(parents=True, exist_ok=True)
    trained = train_all(dataset, data, work, args.retrain)
    (out / "trained.json").write_text(json.dumps(trained, indent=2))
    allennlp = str(bench.BIN / "allennlp")
    calibrated = {}
    for name in PER_DATASET[dataset]:
        calibrated[name] = work / name / "calibrated.tar.gz"
        bench.run(
            [
                allennlp,
                "calibrate",
                str(work / name / "model.tar.gz"),
                data["dev"],
                "--output-file",
                str(calibrated[name]),
            ],
            out / f"calibrate-{name}.log",
        )
    first, *others = PER_DATASET[dataset]
    bench.run(
        [
            allennlp,
            "sweep",
            str(calibrated[first]),
            data["eval"],
            "--output-dir",
            str(out),
            "--name",
            first,
            *[f"--also={name}={calibrated[name]}" for name in others],
            *[f"--baseline={name}={work / name / 'model.tar.gz'}" for name in policies.BASELINES],
            "--repeats",
            str(args.repeats),
            "--timing-instances",
            str(args.timing_instances),
        ],
        work / "heads-sweep.log",
    )


def head_cost(repeats: int = 30) -> dict:
    """Each head type's exit (the encoder's states to logits) against one MiniLM-L6 layer, batch 1 and 32."""
    import torch

    from sledge.nn import EXIT_HEADS, LayerwiseEncoder, MultiExitClassifier

    torch.manual_seed(0)
    encoder = LayerwiseEncoder("sentence-transformers/all-MiniLM-L6-v2")
    result = {"threads": torch.get_num_threads(), "repeats": repeats, "length": 32, "layers": {}, "heads": {}}
    models = {
        name: MultiExitClassifier(encoder, [0, 5], 2, pooling="mean", exit_head={"type": name}).eval()
        for name in EXIT_HEADS
    }
    for batch in (1, 32):
        ids = torch.randint(1000, 20000, (batch, 32))
        mask = torch.ones_like(ids)
        with torch.no_grad():
            hidden, additive = encoder.embed(ids, mask)
            hidden = encoder.layer(0, hidden, additive)
            jobs = {"layer": functools.partial(encoder.layer, 1, hidden, additive)}
            for name, model in models.items():
                jobs[name] = functools.partial(
                    exit_logits, model.exits[0], [model.pool(hidden, mask)], hidden, mask
                )
            times: dict[str, list[float]] = {name: [] for name in jobs}
            for _ in range(3):
                for job in jobs.values():
                    job()
            for _ in range(repeats):  # interleaved
                for name, job in jobs.items():
                    start = time.perf_counter()
                    job()
                    times[name].append(time.perf_counter() - start)
        layer = statistics.median(times["layer"])
        result["layers"][str(batch)] = layer
        for name in EXIT_HEADS:
            seconds = statistics.median(times[name])
            result["heads"].setdefault(name, {})[str(batch)] = {
                "seconds": seconds,
                "share_of_a_layer": seconds / layer,
            }
    return result


def exit_logits(head, pooled, hidden, mask):
    return head.classify(head.features(pooled, hidden, mask))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["sst2", "agnews"], choices=["sst2", "agnews"])
    parser.add_argument("--work", default="runs/benchmarks")
    parser.add_argument("--out", default="benchmarks/results/heads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-instances", type=int, default=300)
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = policies.datasets(work)
    for dataset in args.datasets:
        if args.train_only:
            train_all(dataset, data[dataset], work / dataset, args.retrain)
        elif not args.report_only:
            benchmark(dataset, data[dataset], work, out, args)
    if args.train_only:
        return
    if not args.report_only or not (out / "head_cost.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        (out / "head_cost.json").write_text(json.dumps(head_cost(), indent=2))
    report(out, args)


def report(out: Path, args: argparse.Namespace) -> None:
    raise NotImplementedError("written once the sweeps have run")


if __name__ == "__main__":
    main()
