"""int8 early exit: quantized batched == quantized batch 1, through the runner, AllenNLP and the sweep."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.ao.nn.quantized import dynamic

from conftest import ROOT, SENTENCES, TEST, allennlp, mixed_batch, predict_lines, tiny_multi_exit
from sledge.errors import SledgeError
from sledge.nn import (
    ConfidencePolicy,
    LearnedPolicy,
    MultiExitClassifier,
    PatiencePolicy,
    early_exit,
    full_pass_views,
    quantize_int8,
    quantize_int8_rows,
    simulate_exits,
)
from sledge.nn.quantize import FullRangeLinear, full_range_is_exact


def quantized_model(head: str = "linear") -> MultiExitClassifier:
    return quantize_int8(tiny_multi_exit(head=head, lte=True))


def test_every_linear_layer_is_quantized():
    model = quantized_model()
    linear = [m for m in model.modules() if type(m) is torch.nn.Linear]
    quantized = [m for m in model.modules() if isinstance(m, dynamic.Linear)]
    # 6 per layer, BERT's (unused) pooler, the 4 heads, the LTE module
    assert not linear and len(quantized) == 6 * 6 + 1 + 4 + 1
    weight = model.exits[0].classifier.weight()  # one scale per output channel, not one per matrix
    assert weight.qscheme() == torch.per_channel_affine
    assert weight.q_per_channel_scales().numel() == weight.size(0) > 1


TOP_OF_RANGE = """
import torch
from sledge.nn.quantize import FullRangeLinear, full_range_is_exact, quantize_int8
layer = torch.nn.Linear(256, 1)
torch.nn.init.ones_(layer.weight)
torch.nn.init.zeros_(layer.bias)
quantized = quantize_int8(torch.nn.Sequential(layer))
inputs = torch.ones(3, 256)
inputs[:, 0] = 0.0  # every other input quantizes to the top of the range, every product 255 x 127
try:
    quantize_int8(torch.nn.Sequential(torch.nn.Linear(4, 1)), full_range=True)
    refused = False
except ValueError:
    refused = True
print(full_range_is_exact(), isinstance(quantized[0], FullRangeLinear), refused,
      quantized(inputs)[:, 0].tolist())
"""


@pytest.mark.parametrize("instructions", [None, "AVX2"])
def test_activations_use_8_bits_only_where_the_kernels_do_not_saturate(instructions):
    # fbgemm's AVX2 kernels sum pairs of int8 products in 16 bits, which full-range activations
    # overflow (the answer comes out about halved); its VNNI kernels do not. FBGEMM_ENABLE_INSTRUCTIONS
    # makes this process's kernels AVX2's whatever the CPU, so the fallback is tested on every machine.
    environment = {key: value for key, value in os.environ.items() if key != "FBGEMM_ENABLE_INSTRUCTIONS"}
    environment.update({"FBGEMM_ENABLE_INSTRUCTIONS": instructions} if instructions else {})
    result = subprocess.run([sys.executable, "-c", TOP_OF_RANGE], capture_output=True, text=True, check=True,
                            env=environment)
    exact, full_range, refused, answers = result.stdout.split(maxsplit=3)
    assert exact == full_range != refused  # 8-bit activations exactly where they are exact
    if instructions == "AVX2":
        assert exact == "False"
    assert all(abs(answer - 255.0) < 2.0 for answer in json.loads(answers))  # never a saturated answer


def test_full_range_layers_where_exact():
    model = quantized_model()
    layers = [m for m in model.modules() if isinstance(m, dynamic.Linear)]
    assert all(isinstance(m, FullRangeLinear) == full_range_is_exact() for m in layers)
    seven_bits = quantize_int8(tiny_multi_exit(), full_range=False)  # asked for: PyTorch's default layer
    assert not any(isinstance(m, FullRangeLinear) for m in seven_bits.modules())


def test_int8_answers_are_the_same_at_batch_1_batched_and_simulated(trained_run, tmp_path, monkeypatch):
    """The promise of docs/backends.md (int8, per-token activation scales: the runner, compaction and every
    policy work unchanged, and batched answers equal batch 1), on real answers at fixed settings, every
    row, no tolerance. (Issue 29 made it hold: PyTorch's dynamic int8, `quantize_int8`, scales by the whole
    batch's range and fails it; see test_backends.py's control.)"""
    wrong = []
    for head in ("linear", "attention"):
        model = quantize_int8_rows(tiny_multi_exit(head=head, lte=True))
        ids, mask, types = mixed_batch(seed=2)
        with torch.no_grad():
            logits, certainties = (torch.stack(values) for values in model.forward_all(ids, mask, types))
        views = full_pass_views(model, logits, certainties)
        for policy in (ConfidencePolicy(0.7), ConfidencePolicy(0.9), LearnedPolicy(0.5), PatiencePolicy(1)):
            batched = early_exit(model, ids, mask, types, policy=policy)
            if not torch.equal(batched.exit_index, simulate_exits(policy, views)):
                wrong.append(f"{head} {policy!r}: batched exits differ from the full pass's")
            for row in range(len(ids)):
                n = int(mask[row].sum())
                one = early_exit(model, ids[row : row + 1, :n], mask[row : row + 1, :n], policy=policy)
                if (int(one.exit_index), int(one.logits.argmax())) != (int(batched.exit_index[row]),
                                                                       int(batched.logits[row].argmax())):
                    wrong.append(f"{head} {policy!r} row {row}: batch 1 and batch 32 differ")
    monkeypatch.chdir(ROOT)
    for threshold in (0.7, 0.9):
        override = json.dumps({"model.quantize": "int8", "model.confidence_threshold": threshold})
        one = predict(trained_run["archive"], tmp_path / "one.jsonl", "-o", override)
        many = predict(trained_run["archive"], tmp_path / "many.jsonl", "-o", override, "--batch-size", "32")
        for index, (a, b) in enumerate(zip(one, many)):
            if (a["exit_layer"], a["label"]) != (b["exit_layer"], b["label"]):
                wrong.append(
                    f"allennlp predict, threshold {threshold}, sentence {index}: batch 1 and 32 differ")
    assert not wrong, "\n".join(wrong)


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def predict(archive, output, *options):
    return predict_lines(archive, SENTENCES, output, *options)


def test_quantize_is_set_at_inference_the_allennlp_way(trained_run, tmp_path):
    override = json.dumps({"model.quantize": "int8", "model.confidence_threshold": 0.6})
    one = predict(trained_run["archive"], tmp_path / "one.jsonl", "-o", override)
    fp32 = predict(trained_run["archive"], tmp_path / "fp32.jsonl", "-o",
                   json.dumps({"model.confidence_threshold": 0.6}))
    assert [row["probs"] for row in fp32] != [row["probs"] for row in one]  # int8 really ran
    # (batch 1 against batched under int8: test_int8_answers_are_the_same_at_batch_1_batched_and_simulated)
    output = tmp_path / "metrics.json"
    allennlp("evaluate", str(trained_run["archive"]), str(TEST), "--include-package", "sledge",
             "--output-file", str(output), "-o", json.dumps({"model.quantize": "int8"}))
    assert 0.0 <= json.loads(output.read_text())["accuracy"] <= 1.0
    with pytest.raises(SledgeError, match="model.quantize must be null or one of int8, .*, got 'int4'"):
        predict(trained_run["archive"], tmp_path / "bad.jsonl", "-o", json.dumps({"model.quantize": "int4"}))


def test_the_sweep_measures_fp32_and_int8_and_plain_huggingface_in_one_run(
    trained_run, single_exit_runs, tmp_path
):
    output = tmp_path / "sweep"
    allennlp("sweep", str(trained_run["archive"]), str(TEST), "--output-dir", str(output), "--repeats", "1",
             "--thresholds", "0", "1", "--precision", "fp32", "int8", "--baseline",
             f"standard={single_exit_runs[5]}", "--hf-reference", "standard", "--batch-size", "4")
    report = json.loads((output / "sweep.json").read_text())
    names = {row["name"] for row in report["rows"]}
    assert {"sledge:confidence@0", "sledge:confidence@1", "sledge int8:confidence@0", "standard",
            "standard int8", "standard (HuggingFace)", "standard int8 (HuggingFace)"} <= names
    references = [row for row in report["rows"] if row["kind"] == "reference"]
    assert references[0]["agreement_with_baseline"] == 1.0  # plain HF predicts what the baseline does
    assert set(report["info"]["exit_metrics"]) == {"sledge", "sledge int8"}
    assert all(len(exits) == 4 for exits in report["info"]["exit_metrics"].values())
    standard = next(row for row in report["rows"] if row["name"] == "standard")
    assert standard["relative_time"] == 1.0 and standard["precision"] == "fp32"
