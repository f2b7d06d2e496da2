"""
CUDA check of the early-exit runner (`sledge.nn` only: torch + transformers, no AllenNLP).

Inputs (made here by `benchmarks/cuda_bundle.py` from a trained archive and a test file): a bundle
folder with `backbone/config.json`, `state.pt` (the model's state dict, fp16), `meta.json` (exit
layers, pooling, number of labels) and `data.pt` (token ids, masks, labels). On the GPU machine:

    python benchmarks/cuda_check.py BUNDLE_DIR OUT_DIR

It checks, on CUDA: the full pass against the CPU; batched early exit against batch 1 and against
the exits computed from one full pass; how many host synchronisations one batched run makes (per
exit, not per layer); and it times batch-1 and batch-32 early exit per threshold (medians of 5).
"""

import json
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

import torch

# Import sledge.nn without sledge/__init__.py (which registers the AllenNLP components).
_package = types.ModuleType("sledge")
_package.__path__ = [str(Path(__file__).resolve().parent.parent / "sledge")]
sys.modules["sledge"] = _package

from transformers import AutoConfig  # noqa: E402

from sledge.nn import LayerwiseEncoder, MultiExitClassifier, early_exit, exits_at_threshold  # noqa: E402


def build(bundle: Path) -> MultiExitClassifier:
    meta = json.loads((bundle / "meta.json").read_text())
    encoder = LayerwiseEncoder(config=AutoConfig.from_pretrained(bundle / "backbone"))
    model = MultiExitClassifier(encoder, meta["layer_indices"], meta["num_labels"], pooling=meta["pooling"])
    state = {k: v.float() for k, v in torch.load(bundle / "state.pt").items()}
    model.load_state_dict(state)
    return model.eval()


def batches(data: dict, size: int, device: torch.device, limit: int | None = None) -> list:
    ids, mask, types_ = data["input_ids"], data["attention_mask"], data["token_type_ids"]
    n = len(ids) if limit is None else min(limit, len(ids))
    out = []
    for start in range(0, n, size):
        width = int(mask[start : start + size].sum(1).max())
        out.append(tuple(t[start : start + size, :width].to(device) for t in (ids, mask, types_)))
    return out


@torch.no_grad()
def full_pass(model, data_batches) -> torch.Tensor:
    return torch.cat([torch.stack(model(*batch)).float().cpu() for batch in data_batches], dim=1)


def timed(model, data_batches, threshold: float, repeats: int = 5) -> float:
    for batch in data_batches[:10]:
        early_exit(model, *batch, threshold=threshold)
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in data_batches:
            early_exit(model, *batch, threshold=threshold)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(bundle: Path, out: Path) -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    cuda = torch.device("cuda")
    data = torch.load(bundle / "data.pt")
    report: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    cpu_model, model = build(bundle), build(bundle).to(cuda)
    report["temperatures"] = model.temperatures.tolist()
    layers = model.layer_indices

    logits_cpu = full_pass(cpu_model, batches(data, 64, torch.device("cpu")))
    logits = full_pass(model, batches(data, 64, cuda))
    report["full_pass_max_abs_diff_cuda_vs_cpu"] = float((logits - logits_cpu).abs().max())
    labels = data["labels"]
    probs = torch.softmax(logits / model.temperatures.cpu()[:, None, None], -1)
    confidences = probs.max(-1)[0].T
    correct = (logits.argmax(-1) == labels).T
    report["exit_accuracy"] = dict(zip(map(str, layers), correct.float().mean(0).tolist()))

    single = batches(data, 1, cuda, limit=500)
    batched, large = batches(data, 32, cuda), batches(data, 256, cuda)
    n_single = len(single)
    rows = []
    for threshold in (0.0, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0):
        expected = exits_at_threshold(confidences, threshold)
        near = ((confidences - threshold).abs() < 1e-4).any(1)
        got = torch.cat([early_exit(model, *b, threshold=threshold).exit_index.cpu() for b in batched])
        one = torch.cat([early_exit(model, *b, threshold=threshold).exit_index.cpu() for b in single])
        rows.append({
            "threshold": threshold,
            "accuracy": float(correct[torch.arange(len(expected)), expected].float().mean()),
            "average_exit_layer": float(torch.tensor(layers, dtype=torch.float)[expected].mean()),
            "batched_exits_equal_full_pass": float((got == expected)[~near].float().mean()),
            "batch1_exits_equal_batched": float((one == got[:n_single])[~near[:n_single]].float().mean()),
            "seconds_per_instance_batch1": timed(model, single, threshold) / n_single,
            "instances_per_second_batch32": len(labels) / timed(model, batched, threshold),
            "instances_per_second_batch256": len(labels) / timed(model, large, threshold),
        })
        print(json.dumps(rows[-1]))
    report["thresholds"] = rows

    # Host synchronisations of one batched run, counted by CUDA's sync debug mode.
    syncs = {}
    for threshold in (0.0, 0.9, 1.0):
        torch.cuda.set_sync_debug_mode("warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            early_exit(model, *batched[0], threshold=threshold)
        torch.cuda.set_sync_debug_mode("default")
        syncs[str(threshold)] = sum("synchroniz" in str(w.message) for w in caught)
    report["host_syncs_per_batched_run"] = syncs
    report["layers_run_at_threshold_1"] = layers[-1] + 1
    report["exits"] = len(layers)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cuda_check.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "thresholds"}, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
