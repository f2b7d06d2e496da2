"""
Where early exit's time goes on the onnxruntime backend at batch 1: each piece's session call (the
embeddings, each segment of layers, each exit head; conversion of its inputs and outputs included) timed
inside the runner as it runs, and the rest of the runner (the exit policy, bookkeeping, the final
softmax: "outside the sessions"), per instance, on a seeded sample of the evaluation file; medians of
--repeats passes (the last pass's call counts). What to make faster, read from measurements rather than
guessed. Writes benchmarks/results/backends/ort_breakdown.{json,md}.

    .venv/bin/python benchmarks/ort_breakdown.py ARCHIVE EVAL_FILE [--threshold 0.85] [--precision int8]
"""

import argparse
import collections
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
from sledge.nn import ConfidencePolicy, backend_of, early_exit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive")
    parser.add_argument("eval_file")
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--precision", default="int8", choices=["fp32", "int8", "int8-static"])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/backends")
    args = parser.parse_args()
    overrides = {
        "model.backend": "onnxruntime",
        "model.quantize": None if args.precision == "fp32" else args.precision,
    }
    loaded = load_sledge_archive(args.archive, overrides=overrides)
    core = loaded.model.core
    instances = read_labelled(loaded, args.eval_file)
    sample = timing_sample(instances, args.instances)
    batches = tensor_batches([instances[i] for i in sample], loaded, 1, torch.device("cpu"))
    backend = backend_of(core)  # its pieces already started and checked (the backend is eager)
    calls: dict[str, list[float]] = collections.defaultdict(list)
    call = backend._call

    def timed(session, feeds):
        start = time.perf_counter()
        outputs = call(session, feeds)
        seconds = time.perf_counter() - start
        calls[next(name for name, started in backend.sessions.items() if started is session)].append(seconds)
        return outputs

    backend._call = timed
    policy = ConfidencePolicy(args.threshold)
    passes = []
    for _ in range(args.repeats + 1):  # the first pass warms up
        calls.clear()
        exits: collections.Counter = collections.Counter()
        start = time.perf_counter()
        for batch in batches:
            exits[int(early_exit(core, *inputs_of(batch), policy=policy).exit_index)] += 1
        total = time.perf_counter() - start
        pieces = {name: sum(times) / len(batches) for name, times in calls.items()}
        passes.append({"total": total / len(batches), "pieces": pieces,
                       "counts": {name: len(times) for name, times in calls.items()}})
    passes = passes[1:]
    pieces = {
        name: statistics.median(p["pieces"].get(name, 0.0) for p in passes) for name in passes[-1]["pieces"]
    }
    total = statistics.median(p["total"] for p in passes)
    result = {
        "archive": args.archive,
        "eval_file": args.eval_file,
        "machine": bench.machine(),
        "backend": backend.describe(),
        "threshold": args.threshold,
        "instances": len(batches),
        "exits": dict(sorted(exits.items())),
        "ms_per_instance": 1000 * total,
        "ms_per_instance_by_piece": {name: 1000 * seconds for name, seconds in sorted(pieces.items())},
        "calls": passes[-1]["counts"],
        "ms_outside_the_sessions": 1000 * (total - sum(pieces.values())),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ort_breakdown.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# Where the time goes: early exit on onnxruntime at batch 1",
        "",
        f"Machine: {result['machine']}; {result['backend']}.",
        "",
        f"`{' '.join(['.venv/bin/python', 'benchmarks/ort_breakdown.py', *sys.argv[1:]])}`: "
        f"{len(batches)} instances of `{args.eval_file}` (seeded sample), threshold {args.threshold:g}, "
        f"medians of {args.repeats} passes after a warm-up; exits taken {result['exits']}.",
        "",
        "| piece | calls | ms per instance | share |",
        "|---|---|---|---|",
    ]
    whole = result["ms_per_instance"]
    for name, ms in result["ms_per_instance_by_piece"].items():
        lines.append(f"| {name} | {result['calls'][name]} | {ms:.3f} | {ms / whole:.0%} |")
    outside = result["ms_outside_the_sessions"]
    lines += [
        f"| outside the sessions (policy, bookkeeping) | | {outside:.3f} | {outside / whole:.0%} |",
        f"| **total** | | **{result['ms_per_instance']:.3f}** | |",
        "",
    ]
    (out / "ort_breakdown.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
