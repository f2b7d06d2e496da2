"""
Early exit on ONNX Runtime, and int8 whose answers do not depend on the batch (issue 29): the side-by-side
table, batch invariance on the whole evaluation sets, and what each int8 option costs in accuracy.

For SST-2 (the configs' seed and seeds 1 and 2) and AG News (the configs' seed; `--agnews-seeds` for
more), MiniLM-L6, the configs' sledge model (exits 0, 1, 3, 5) and the standard model (one exit on
layer 5), trained as int8.py trains them (models already under runs/benchmarks/ are reused):

1. `allennlp calibrate` (temperatures, and the static int8 scales of `int8-static`);
2. ONE `allennlp sweep` per dataset: every sledge model and standard on torch and on onnxruntime, at
   fp32 and int8 (per-token scales), batch 1 and batch 32, side by side, the standard on ORT int8 as
   the reference line of the plot;
3. batch invariance: every sledge model under every backend x precision (int8-static too) predicts the
   whole evaluation set at batch 1, at batch 32 in file order and at batch 32 sorted by length, at
   thresholds 0.9 and 1; predictions (exit and label) are compared line by line, and ORT fp32 against
   torch fp32;
4. the int8 options against fp32, every seed: accuracy at threshold 1 and of each exit, and agreement
   with fp32, for `int8` (per token), `int8-static` (calibrated scales) and `int8-dynamic` (PyTorch's,
   per batch, at batch 32 in file order);

and writes benchmarks/results/backends/{sst2,agnews}/ and report.md: the issue's table with sledge's rows
over the seeds and the targets checked.

    .venv/bin/python benchmarks/backends.py [--datasets sst2 agnews] [--report-only]
    .venv/bin/python benchmarks/backends.py --accuracy-only     # steps 1, 3, 4: no timing (a busy machine)
    .venv/bin/python benchmarks/backends.py --sweep-only        # then step 2 alone, on a quiet machine

`--train-overrides`, `--data` and `--limit` run the whole pipeline at a tiny scale (see benchmarks/README).
"""

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import int8  # noqa: E402
import policies  # noqa: E402
import run as bench  # noqa: E402
from seeds import aggregate, fastest_within  # noqa: E402

ROOT = bench.ROOT
DATASETS = ["sst2", "agnews"]
OUT = "benchmarks/results/backends"
THRESHOLDS = [0.0, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0]
COMBINATIONS = [("torch", "fp32"), ("torch", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
# Batch invariance also under the static scales (the sledge archives are calibrated; the standards not).
INVARIANCE = [*COMBINATIONS, ("torch", "int8-static"), ("onnxruntime", "int8-static")]
INT8_OPTIONS = ["int8", "int8-static", "int8-dynamic"]
# The targets, at the lowest threshold within 0.5 points of the mean standard (torch fp32).
TARGETS = {
    "sst2": {"ort_int8_standard_b1": 1.5, "ort_int8_standard_b32": 1.5, "torch_fp32_standard_b1": 4.0},
    "agnews": {"ort_int8_standard_b1": 2.5},
}


def seeds_of(dataset: str, args: argparse.Namespace) -> list:
    seeds = int8.SEEDS if dataset == "sst2" else int8.SEEDS[: args.agnews_seeds]
    return seeds[: args.seeds] if args.seeds else seeds


def train_and_calibrate(dataset: str, data: dict, work: Path, out: Path, args) -> dict[str, dict]:
    """{seed: {"sledge": calibrated archive, "standard": archive}}, training what is missing."""
    extra = {**int8.sledge_overrides(dataset, args), **json.loads(args.train_overrides)}
    models = {}
    for seed in seeds_of(dataset, args):
        sledge, standard = int8.names(seed, args.sledge)
        seed_extra = {**int8.seed_overrides(seed), **json.loads(args.train_overrides)}
        policies.train(sledge, [0, 1, 3, 5], data, work, {**extra, **int8.seed_overrides(seed)}, args.retrain)
        policies.train(standard, [5], data, work, seed_extra, args.retrain)
        calibrated = work / sledge / "calibrated.tar.gz"
        if not calibrated.exists() or args.retrain:
            bench.run(
                [
                    str(bench.BIN / "allennlp"),
                    "calibrate",
                    str(work / sledge / "model.tar.gz"),
                    data["dev"],
                    "--output-file",
                    str(calibrated),
                ],
                out / f"calibrate-{sledge}.log",
            )
        models[str(seed)] = {"sledge": str(calibrated), "standard": str(work / standard / "model.tar.gz")}
    return models


def sweep(dataset: str, data: dict, models: dict, out: Path, args) -> None:
    first, *others = models
    command = [
        str(bench.BIN / "allennlp"),
        "sweep",
        models[first]["sledge"],
        data["eval"],
        "--output-dir",
        str(out),
        "--name",
        f"sledge-s{first}",
        *[f"--also=sledge-s{seed}={models[seed]['sledge']}" for seed in others],
        *[
            f"--baseline={int8.standard_label(seed)}={models[str(seed)]['standard']}"
            for seed in seeds_of(dataset, args)
        ],
        "--backend",
        "torch",
        "onnxruntime",
        "--precision",
        "fp32",
        "int8",
        "--reference-line",
        "standard onnxruntime int8",
        "--thresholds",
        *map(str, THRESHOLDS),
        "--repeats",
        str(args.repeats),
        "--timing-instances",
        str(args.timing_instances),
    ]
    bench.run(command, out / "sweep.log")


def predictions(archive: str, eval_file: str, overrides: dict, threshold: float, limit: int | None) -> dict:
    """Exit and label of every instance at batch 1, batch 32 in file order and batch 32 sorted by length."""
    import torch

    from sledge.commands.common import inputs_of, load_sledge_archive, read_labelled, tensor_batches
    from sledge.nn import ConfidencePolicy, early_exit

    loaded = load_sledge_archive(archive, overrides=overrides)
    instances = read_labelled(loaded, eval_file)[:limit]
    policy = ConfidencePolicy(threshold)
    lengths = [len(instance["tokens"]) for instance in instances]
    by_length = sorted(range(len(instances)), key=lambda i: lengths[i])
    runs = {}
    for name, order, size in (
        ("batch 1", None, 1),
        ("batch 32", None, 32),
        ("batch 32 sorted", by_length, 32),
    ):
        chosen = instances if order is None else [instances[i] for i in order]
        answers = []
        for batch in tensor_batches(chosen, loaded, size, torch.device("cpu")):
            result = early_exit(loaded.model.core, *inputs_of(batch), policy=policy)
            answers += list(zip(result.exit_index.tolist(), result.logits.argmax(dim=-1).tolist()))
        if order is not None:
            answers = [answer for _, answer in sorted(zip(order, answers))]
        runs[name] = answers
    gold = [int(instance["label"]._label_id) for instance in instances]
    return {"runs": runs, "gold": gold}


def invariance(models: dict, eval_file: str, limit: int | None) -> list[dict]:
    """Step 3: batch 1 against batch 32 (file order, sorted): every model, backend, precision, threshold."""
    rows = []
    for seed, archives in models.items():
        for threshold in (0.9, 1.0):
            reference = None
            for backend, precision in INVARIANCE:
                overrides = {
                    "model.backend": backend,
                    "model.quantize": None if precision == "fp32" else precision,
                }
                result = predictions(archives["sledge"], eval_file, overrides, threshold, limit)
                one = result["runs"]["batch 1"]
                row = {
                    "seed": seed,
                    "threshold": threshold,
                    "backend": backend,
                    "precision": precision,
                    "instances": len(one),
                    "accuracy_batch_1": statistics.fmean(a[1] == g for a, g in zip(one, result["gold"])),
                }
                for name in ("batch 32", "batch 32 sorted"):
                    row[f"differ_{name.replace(' ', '_')}"] = sum(
                        a != b for a, b in zip(one, result["runs"][name])
                    )
                if (backend, precision) == ("torch", "fp32"):
                    reference = one
                elif precision == "fp32":
                    row["differ_from_torch_fp32"] = sum(a != b for a, b in zip(one, reference))
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def int8_options(models: dict, eval_file: str, limit: int | None) -> list[dict]:
    """Step 4: each int8 option's accuracy at threshold 1 and per exit, and its agreement with fp32."""
    import torch

    from sledge.commands.common import full_pass, load_sledge_archive, read_labelled, tensor_batches

    rows = []
    for seed, archives in models.items():
        fp32 = None
        for option in ["fp32", *INT8_OPTIONS]:
            loaded = load_sledge_archive(
                archives["sledge"], overrides={"model.quantize": None if option == "fp32" else option}
            )
            instances = read_labelled(loaded, eval_file)[:limit]
            logits, _, labels = full_pass(
                loaded.model, tensor_batches(instances, loaded, 32, torch.device("cpu"))
            )
            predicted = logits.argmax(dim=-1)  # (exits, N)
            fp32 = predicted if fp32 is None else fp32
            row = {
                "seed": seed,
                "option": option,
                "exit_accuracies": (predicted == labels).float().mean(dim=1).tolist(),
                "agreement_with_fp32": (predicted == fp32).float().mean(dim=1).tolist(),
            }
            row["accuracy_threshold_1"] = row["exit_accuracies"][-1]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def summarise(dataset: str, out: Path) -> dict:
    """The issue's table rows and its targets, from the sweep (where run) and the accuracy results."""
    summary: dict = {}
    accuracy = json.loads((out / "accuracy.json").read_text())
    options = {}
    for option in ["fp32", *INT8_OPTIONS]:
        chosen = [row for row in accuracy["int8_options"] if row["option"] == option]
        options[option] = {
            "threshold_1": aggregate([row["accuracy_threshold_1"] for row in chosen]),
            "agreement_with_fp32_last_exit": aggregate([row["agreement_with_fp32"][-1] for row in chosen]),
        }
    fp32 = options["fp32"]["threshold_1"]["mean"]
    for option in INT8_OPTIONS:
        options[option]["cost_points"] = 100 * (fp32 - options[option]["threshold_1"]["mean"])
    summary["int8_options"] = options
    summary["invariance"] = accuracy["invariance"]
    if not (out / "sweep.json").exists():
        return summary
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    by_name = {row["name"]: row for row in rows}
    standards = [row for row in rows if row["kind"] == "baseline" and row["name"].startswith("standard")]
    torch_fp32 = by_name["standard"]
    mean_standard = statistics.fmean(row["accuracy"] for row in standards if row["name"].split()[1:] == [])
    table = []
    for backend, precision in COMBINATIONS:
        suffix = "".join(f" {p}" for p in (backend, precision) if p not in ("torch", "fp32"))
        standard = by_name[f"standard{suffix}"]
        table.append(
            {
                "runtime": f"{backend} {precision}",
                "setting": "standard (threshold 1)",
                "accuracy": standard["accuracy"],
                "ms_batch_1": 1000 * standard["seconds_per_instance"],
                "speedup_batch_1": torch_fp32["seconds_per_instance"] / standard["seconds_per_instance"],
                "speedup_batch_32": standard["instances_per_second"] / torch_fp32["instances_per_second"],
            }
        )
        curves = {
            row["model"]: []
            for row in rows
            if row["kind"] == "sledge" and row["model"].split()[1:] == suffix.split()
        }
        for row in rows:
            if row["kind"] == "sledge" and row["model"] in curves:
                curves[row["model"]].append(row)
        picked = []
        for model, curve in curves.items():
            pick = fastest_within(curve, mean_standard - 0.005, torch_fp32["seconds_per_instance"])
            if pick is None:
                table.append({"runtime": f"{backend} {precision}", "setting": f"{model}: none within 0.5 pt"})
                continue
            ort_int8 = by_name["standard onnxruntime int8"]
            picked.append(
                {
                    "runtime": f"{backend} {precision}",
                    "setting": f"{model} threshold {pick['value']:g}",
                    "accuracy": pick["accuracy"],
                    "ms_batch_1": 1000 * pick["seconds_per_instance"],
                    "speedup_batch_1": pick["speedup"],
                    "speedup_batch_32": pick["instances_per_second"] / torch_fp32["instances_per_second"],
                    "vs_ort_int8_standard_b1": ort_int8["seconds_per_instance"]
                    / pick["seconds_per_instance"],
                    "vs_ort_int8_standard_b32": pick["instances_per_second"]
                    / ort_int8["instances_per_second"],
                }
            )
            table.append(picked[-1])
        if len(curves) > 1 and len(picked) == len(curves):  # the seeds' mean: what the targets read
            numbers = [key for key in picked[0] if key not in ("runtime", "setting")]
            table.append(
                {
                    "runtime": f"{backend} {precision}",
                    "setting": f"**sledge, mean of the {len(picked)} seeds**",
                    **{key: statistics.fmean(row[key] for row in picked) for key in numbers},
                }
            )
    summary.update(mean_standard_accuracy=mean_standard, table=table)
    return summary


def report(summaries: dict[str, dict], out: Path, args: argparse.Namespace) -> None:
    lines = [
        "# Early exit on ONNX Runtime, batch-invariant int8",
        "",
        f"Machine: {bench.machine()}.",
        "",
        "Reproduce: `.venv/bin/python benchmarks/backends.py` (see its docstring). Speed-ups against the "
        "torch fp32 standard of the configs' seed (batch 1; throughput at batch 32); sledge at the "
        "lowest threshold within 0.5 points of the mean standard accuracy over seeds. Timings come from "
        "the last `--sweep-only` run, accuracy and batch invariance from the last `--accuracy-only` run "
        "(each dataset's `sweep.json` and `accuracy.json`).",
        "",
    ]
    for dataset, summary in summaries.items():
        lines += [f"## {dataset}", ""]
        if "table" in summary:
            lines += [
                f"![backends]({dataset}/sweep.png)",
                "",
                "| runtime | setting | accuracy | batch 1 ms | speed-up b1 | speed-up b32 "
                "| vs ORT int8 standard b1 / b32 |",
                "|---|---|---|---|---|---|---|",
            ]
            for row in summary["table"]:
                if "accuracy" not in row:
                    lines.append(f"| {row['runtime']} | {row['setting']} | | | | | |")
                    continue
                versus = (
                    f"{row['vs_ort_int8_standard_b1']:.2f}x / {row['vs_ort_int8_standard_b32']:.2f}x"
                    if "vs_ort_int8_standard_b1" in row
                    else ""
                )
                lines.append(
                    f"| {row['runtime']} | {row['setting']} | {row['accuracy']:.4f} | "
                    f"{row['ms_batch_1']:.2f} | {row['speedup_batch_1']:.2f}x | "
                    f"{row['speedup_batch_32']:.2f}x | {versus} |"
                )
            lines += ["", f"Targets: {json.dumps(TARGETS[dataset])}", ""]
        lines += [
            "int8 options against fp32 (threshold 1, mean over seeds; agreement of the last exit):",
            "",
            "| option | accuracy | cost (points) | agreement with fp32 |",
            "|---|---|---|---|",
        ]
        for option, result in summary["int8_options"].items():
            cost = f"{result['cost_points']:.2f}" if "cost_points" in result else "-"
            lines.append(
                f"| {option} | {result['threshold_1']['mean']:.4f} ± {result['threshold_1']['std']:.4f} | "
                f"{cost} | {result['agreement_with_fp32_last_exit']['mean']:.4f} |"
            )
        lines += [
            "",
            "Batch invariance (predictions differing from batch 1, of all instances):",
            "",
            "| seed | threshold | backend | precision | batch 32 | batch 32 sorted | vs torch fp32 |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in summary["invariance"]:
            lines.append(
                f"| {row['seed']} | {row['threshold']:g} | {row['backend']} | {row['precision']} | "
                f"{row['differ_batch_32']} | {row['differ_batch_32_sorted']} | "
                f"{row.get('differ_from_torch_fp32', '-')} |"
            )
        lines.append("")
    (out / "report.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--work", default="runs/benchmarks")
    parser.add_argument("--out", default=OUT)
    parser.add_argument("--sledge", default="distilled-attention", choices=list(int8.COMBINATIONS))
    parser.add_argument(
        "--sledge-overrides", default="{}", help="further overrides of the sledge model (JSON)"
    )
    parser.add_argument("--agnews-seeds", type=int, default=1, choices=[1, 2, 3])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-instances", type=int, default=300)
    parser.add_argument("--accuracy-only", action="store_true", help="no sweep (no timing): steps 1, 3, 4")
    parser.add_argument("--sweep-only", action="store_true", help="step 2 only, after an --accuracy-only run")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument(
        "--train-overrides", default="{}", help="overrides of every training (JSON; tiny runs)"
    )
    parser.add_argument(
        "--data", default=None, help="JSON {train, dev, eval} replacing every dataset's files"
    )
    parser.add_argument("--seeds", type=int, default=None, help="only the first N seeds of each dataset")
    parser.add_argument("--limit", type=int, default=None, help="steps 3 and 4 on the first N instances only")
    args = parser.parse_args()
    os.chdir(ROOT)
    work, out = Path(args.work), Path(args.out)
    data = policies.datasets(work)
    for dataset in args.datasets:
        target = out / dataset
        if not args.report_only:
            target.mkdir(parents=True, exist_ok=True)
            files = {**data[dataset], **(json.loads(args.data) if args.data else {})}
            models = train_and_calibrate(dataset, files, work / dataset, target, args)
            if not args.accuracy_only:
                sweep(dataset, files, models, target, args)
            if args.sweep_only:
                continue
            results = {
                "invariance": invariance(models, files["eval"], args.limit),
                "int8_options": int8_options(models, files["eval"], args.limit),
            }
            (target / "accuracy.json").write_text(json.dumps(results, indent=1))
    done = [d for d in DATASETS if (out / d / "accuracy.json").exists()]
    summaries = {d: summarise(d, out / d) for d in done}
    (out / "summary.json").write_text(json.dumps(summaries, indent=1))
    report(summaries, out, args)


if __name__ == "__main__":
    main()
