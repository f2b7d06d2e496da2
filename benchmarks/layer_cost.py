"""
What merging rows into one layer call saves on this machine: the time of ONE encoder layer of the AG
News serving model for groups of 1 to 32 real evaluation texts (right-padded, as the schedulers batch
them), medians over repeats. Continuous batching pays off where a layer's time per row falls with the
group's size (per padded token: merging rows of different lengths adds padding). Writes
benchmarks/results/serving/layer_cost.{json,md}.

    .venv/bin/python benchmarks/layer_cost.py [--repeats 30]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run as bench  # noqa: E402
import serve_load  # noqa: E402

from sledge.commands.common import load_sledge_archive  # noqa: E402
from sledge.serving.engine import Engine  # noqa: E402

SIZES = [1, 2, 4, 8, 16, 32]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="sledge-lte", help="folder under runs/benchmarks/agnews")
    parser.add_argument("--layer", type=int, default=2, help="which encoder layer (0-based) to time")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/serving")
    args = parser.parse_args()
    os.chdir(bench.ROOT)
    archive = serve_load.WORK / args.model / "calibrated.tar.gz"
    engine = Engine(load_sledge_archive(str(archive)))
    encoder = engine.core.encoder
    rows = [engine.encode({"sentence": text}) for text in serve_load.texts()[: max(SIZES)]]
    results = []
    with torch.no_grad():
        for size in SIZES:
            ids, mask, types = engine.batch(rows[:size])
            hidden, layer_mask = encoder.embed(ids, mask, types)  # embed returns the mask `layer` takes
            for _ in range(3):  # warm-up
                encoder.layer(args.layer, hidden, layer_mask)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                encoder.layer(args.layer, hidden, layer_mask)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            results.append(
                {"rows": size, "width": ids.size(1), "ms": median * 1000, "ms_per_row": median * 1000 / size}
            )
            print(json.dumps(results[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layer_cost.json").write_text(json.dumps({"machine": bench.machine(), "rows": results}, indent=2))
    lines = [
        "# One encoder layer's time against the rows it runs (AG News serving model, this machine)",
        "",
        f"Machine: {bench.machine()}. Reproduce: `.venv/bin/python benchmarks/layer_cost.py --repeats "
        f"{args.repeats}` (layer {args.layer} of `runs/benchmarks/agnews/{args.model}/calibrated.tar.gz`, "
        "the first AG News evaluation texts, medians).",
        "",
        "| rows | padded width | ms per call | ms per row | µs per padded token |",
        "|---:|---:|---:|---:|---:|",
        *(
            f"| {r['rows']} | {r['width']} | {r['ms']:.2f} | {r['ms_per_row']:.2f} | "
            f"{1000 * r['ms'] / (r['rows'] * r['width']):.1f} |"
            for r in results
        ),
        "",
    ]
    (out / "layer_cost.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
