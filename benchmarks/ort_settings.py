"""
The onnxruntime backend's settings, timed side by side: graph optimisation level (disable, basic, extended,
all) x IO binding (off, on) x spinning thread pools (off, on), at fp32 and int8, early exit at batch 1 and
batch 32 on the same sample, every setting interleaved in each repeat (median of --repeats after a
warm-up). The backend's defaults (`sledge.nn.OnnxRuntimeBackend`: optimization "all", io_binding off,
spinning off) should follow what this measures. Writes benchmarks/results/backends/ort_settings.{json,md}.

    .venv/bin/python benchmarks/ort_settings.py ARCHIVE EVAL_FILE [--threshold 0.9] [--instances 300]
"""

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402

from sledge.commands.common import (  # noqa: E402
    inputs_of,
    load_sledge_archive,
    read_labelled,
    tensor_batches,
    timing_sample,
)
from sledge.nn import ConfidencePolicy, early_exit  # noqa: E402

LEVELS = ["disable", "basic", "extended", "all"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive")
    parser.add_argument("eval_file")
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--out", default="benchmarks/results/backends")
    args = parser.parse_args()
    policy = ConfidencePolicy(args.threshold)
    jobs = {}
    for precision, level, binding, spinning in itertools.product(
        args.precisions, LEVELS, (False, True), (False, True)
    ):
        options = {"optimization": level, "io_binding": binding, "spinning": spinning}
        overrides = {
            "model.backend": "onnxruntime",
            "model.backend_options": options,
            "model.quantize": None if precision == "fp32" else precision,
        }
        loaded = load_sledge_archive(args.archive, overrides=overrides)
        if not jobs:
            instances = read_labelled(loaded, args.eval_file)
            sample = timing_sample(instances, args.instances)
            chosen = [instances[i] for i in sample]
        name = f"{precision} optimization={level} io_binding={binding} spinning={spinning}"
        batches = {size: tensor_batches(chosen, loaded, size, torch.device("cpu")) for size in (1, 32)}
        jobs[name] = (loaded.model.core, batches)

    def once(core, batches) -> float:
        start = time.perf_counter()
        for batch in batches:
            early_exit(core, *inputs_of(batch), policy=policy)
        return time.perf_counter() - start

    for core, batches in jobs.values():  # warm-up (every piece's session starts here)
        for size in (1, 32):
            once(core, batches[size][: max(1, len(batches[size]) // 10)])
    times = {name: {1: [], 32: []} for name in jobs}
    for _ in range(args.repeats):
        for name, (core, batches) in jobs.items():
            for size in (1, 32):
                times[name][size].append(once(core, batches[size]))
    n = len(chosen)
    rows = [
        {
            "setting": name,
            "ms_per_instance_batch_1": 1000 * statistics.median(times[name][1]) / n,
            "instances_per_second_batch_32": n / statistics.median(times[name][32]),
        }
        for name in jobs
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "archive": args.archive,
        "data": args.eval_file,
        "instances": n,
        "threshold": args.threshold,
        "repeats": args.repeats,
        "machine": bench.machine(),
    }
    (out / "ort_settings.json").write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    lines = [
        "# onnxruntime backend settings",
        "",
        f"{json.dumps(info)}",
        "",
        "| setting | batch 1 ms | batch 32 instances/s |",
        "|---|---|---|",
    ]
    lines += [
        f"| {r['setting']} | {r['ms_per_instance_batch_1']:.2f} | {r['instances_per_second_batch_32']:.1f} |"
        for r in rows
    ]
    (out / "ort_settings.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
