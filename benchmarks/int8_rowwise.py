"""
What batch-invariant torch int8 costs: the model under `model.quantize` int8 (or int8-static) on the torch
backend, timed per instance at batch 1 and batch 32 with its attention, pooling and attention heads run
row by row (as sledge runs them, so batched logits equal batch 1's to the last bit) against the same
model with them batched over the padding (as before issue 29's fix: its `RowwiseAttention` blocks
taken out, which the torch backend reads as "batch everything"), in the same process, interleaved,
medians of --repeats passes over a seeded sample of the evaluation file (the one `allennlp sweep` times).
Also counts, on that sample, the rows whose logits at batch 32 are not bit for bit those at batch 1
under each. Writes benchmarks/results/backends/int8_rowwise.{json,md}.

    .venv/bin/python benchmarks/int8_rowwise.py ARCHIVE EVAL_FILE [--threshold 0.85] [--precision int8]
"""

import argparse
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
from sledge.nn import ConfidencePolicy, all_exits, early_exit  # noqa: E402
from sledge.nn.quantize import runs_row_by_row  # noqa: E402

OUT = Path("benchmarks/results/backends")
SIZES = (1, 32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("archive")
    parser.add_argument("eval_file")
    parser.add_argument("--threshold", type=float, default=0.85)
    parser.add_argument("--precision", default="int8", choices=["int8", "int8-static"])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    loaded = load_sledge_archive(args.archive, overrides={"model.quantize": args.precision})
    core = loaded.model.core
    instances = read_labelled(loaded, args.eval_file)
    sample = timing_sample(instances, args.instances)
    chosen = [instances[i] for i in sample]
    batches = {size: tensor_batches(chosen, loaded, size, torch.device("cpu")) for size in SIZES}
    blocks = core.encoder.attention_blocks()
    wrapped = [getattr(parent, name) for parent, name, _ in blocks]
    policy = ConfidencePolicy(args.threshold)

    def use(rowwise: bool) -> None:  # without its RowwiseAttention blocks the torch backend batches all
        for (parent, name, _), block in zip(blocks, wrapped):
            setattr(parent, name, block if rowwise else block.inner)
        assert runs_row_by_row(core) == rowwise

    @torch.no_grad()
    def per_instance_ms(size: int) -> float:
        start = time.perf_counter()
        for batch in batches[size]:
            early_exit(core, *inputs_of(batch), policy=policy)
        return (time.perf_counter() - start) / len(chosen) * 1000

    @torch.no_grad()
    def logits(size: int) -> torch.Tensor:
        return torch.cat([torch.stack(all_exits(core, *inputs_of(batch))[0], dim=1)
                          for batch in batches[size]])

    settings = {"row by row": True, "batched": False}
    times: dict[str, dict[int, list[float]]] = {name: {size: [] for size in SIZES} for name in settings}
    differing = {}
    for name, rowwise in settings.items():
        use(rowwise)
        differing[name] = int((logits(1) != logits(32)).flatten(1).any(dim=1).sum())
    for _ in range(args.repeats):
        for name, rowwise in settings.items():
            use(rowwise)
            for size in SIZES:
                times[name][size].append(per_instance_ms(size))
    use(True)
    result = {
        "machine": bench.machine(),
        "archive": args.archive,
        "eval_file": args.eval_file,
        "precision": args.precision,
        "threshold": args.threshold,
        "instances": len(chosen),
        "repeats": args.repeats,
        "ms_per_instance": {name: {size: statistics.median(values) for size, values in by.items()}
                            for name, by in times.items()},
        "raw_ms": times,
        "rows_not_bit_equal_batch_32": differing,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_rowwise.json").write_text(json.dumps(result, indent=1))
    ms = result["ms_per_instance"]
    lines = [
        "# Batch-invariant torch int8: what running attention and pooling row by row costs",
        "",
        f"Machine: {result['machine']}. Reproduce: `.venv/bin/python benchmarks/int8_rowwise.py "
        f"{args.archive} {args.eval_file} --threshold {args.threshold:g} --precision {args.precision}`.",
        "",
        f"{len(chosen)} instances of `{args.eval_file}` (seeded sample), torch {args.precision}, threshold "
        f"{args.threshold:g}, ms an instance, median of {args.repeats} interleaved passes; rows whose exits' "
        "logits at batch 32 (this sample in file order) are not bit for bit those at batch 1.",
        "",
        "| attention, pooling, attention heads | batch 1 ms | batch 32 ms | rows not bit-equal at batch 32 |",
        "|---|---|---|---|",
    ]
    for name in settings:
        lines.append(
            f"| {name} | {ms[name][1]:.2f} | {ms[name][32]:.2f} | {differing[name]} of {len(chosen)} |"
        )
    lines += [
        "",
        f"Row by row / batched: {ms['row by row'][1] / ms['batched'][1]:.2f}x the time at batch 1, "
        f"{ms['row by row'][32] / ms['batched'][32]:.2f}x at batch 32.",
        "",
    ]
    (out / "int8_rowwise.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
