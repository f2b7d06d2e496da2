"""Calibration: each exit's argmax is unchanged, its probabilities are softmax(logits / T) with T the
maximum-likelihood temperature (checked against an independent fit), the NLL does not rise; which exit
answers under a threshold can change, and does."""

import json
import tarfile

import numpy as np
import pytest
import torch

from conftest import (
    ROOT,
    SENTENCES,
    SWEEP_GRID,
    TEST,
    allennlp,
    independent_temperature,
    nll,
    predict_lines,
)
from sledge.commands.common import exit_logits, inputs_of, load_sledge_archive, read_labelled, tensor_batches
from sledge.nn import early_exit, fit_temperature


def test_calibration_recovers_a_known_temperature():
    generator = torch.Generator().manual_seed(0)
    logits = 3.0 * torch.randn(20000, 4, generator=generator)
    true_temperature = 2.5
    labels = torch.multinomial(torch.softmax(logits / true_temperature, -1), 1, generator=generator)[:, 0]
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    best = independent_temperature(logits, labels)
    assert fitted == pytest.approx(best, rel=1e-2) and nll(logits, labels, fitted) <= nll(logits, labels,
        best) + 1e-6


def full_pass(archive_file) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every exit's logits on TEST, (exits, N, labels), the gold labels (indices) and the archive's
    temperatures."""
    archive = load_sledge_archive(str(archive_file))
    instances = read_labelled(archive, str(TEST))
    logits, labels = exit_logits(archive.model, tensor_batches(instances, archive, 64, torch.device("cpu")))
    return logits, labels, archive.model.core.temperatures.clone()


def names(archive_file) -> list[str]:
    """The archive's labels in the order of its vocabulary (that of `probs`)."""
    with tarfile.open(archive_file) as tar:
        return tar.extractfile("vocabulary/labels.txt").read().decode().split()


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error over 15 equal bins of (0, 1], written here from its definition."""
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == labels
    total = 0.0
    for low in range(bins):
        inside = (confidence > low / bins) & (confidence <= (low + 1) / bins)
        if inside.any():
            total += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    return total


@pytest.fixture(scope="module")
def calibrated(trained_run, tmp_path_factory) -> dict:
    output = tmp_path_factory.mktemp("calibrated") / "calibrated.tar.gz"
    before = trained_run["archive"].read_bytes()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp("calibrate", str(trained_run["archive"]), str(TEST), "--output-file", str(output))
    assert trained_run["archive"].read_bytes() == before  # the input archive is untouched
    return {"archive": output, "work": output.parent}


def test_the_temperatures_are_the_maximum_likelihood_fit_and_lower_the_nll(trained_run, calibrated):
    logits, labels, ones = full_pass(trained_run["archive"])
    _, _, temperatures = full_pass(calibrated["archive"])
    assert torch.equal(ones, torch.ones(4))
    with tarfile.open(calibrated["archive"]) as tar:
        report = json.load(tar.extractfile("calibration.json"))
    for position, row in enumerate(report["exits"]):
        best, temperature = independent_temperature(logits[position], labels), float(temperatures[position])
        # sledge's LBFGS reaches the likelihood's maximum (the temperature itself to 1%: the likelihood is
        # flat around it, the more so the larger it is)
        assert nll(logits[position], labels, temperature) <= nll(logits[position], labels, best) + 1e-6
        assert temperature == pytest.approx(best, rel=1e-2)
        assert row["temperature"] == pytest.approx(temperature)
        assert row["nll_before"] == pytest.approx(nll(logits[position], labels), rel=1e-5)
        assert row["nll_after"] == pytest.approx(nll(logits[position], labels, temperature), rel=1e-5)
        assert row["nll_after"] <= row["nll_before"]
        probs = torch.softmax(logits[position].double() / temperatures[position], -1).numpy()
        assert row["ece_after"] == pytest.approx(ece(probs, labels.numpy()), abs=1e-5)
        assert row["ece_before"] == pytest.approx(ece(torch.softmax(logits[position].double(), -1).numpy(),
                                                      labels.numpy()), abs=1e-5)
    assert not torch.allclose(temperatures, ones, atol=0.05), "calibration should move the temperatures"


def test_every_exits_argmax_is_unchanged_and_its_probabilities_are_softmax_of_logits_over_t(
    trained_run, calibrated, tmp_path
):
    logits, _, _ = full_pass(trained_run["archive"])
    after, _, temperatures = full_pass(calibrated["archive"])
    label_of = names(trained_run["archive"])
    assert names(calibrated["archive"]) == label_of
    assert torch.equal(after.argmax(-1), logits.argmax(-1))  # every exit, every sentence
    for threshold, position in ((0.0, 0), (1.0, 3)):  # every row at the first exit, or at the last
        override = json.dumps({"model.confidence_threshold": threshold})
        for archive, temperature in ((trained_run["archive"], 1.0), (calibrated["archive"],
            temperatures[position])):
            rows = predict_lines(archive, SENTENCES, tmp_path / "out.jsonl", "-o", override)
            expected = torch.softmax(logits[position] / temperature, -1)
            assert [row["exit_index"] for row in rows] == [position] * len(rows)
            torch.testing.assert_close(torch.tensor([row["probs"] for row in rows]), expected, atol=1e-6,
                rtol=1e-5)
            argmax = logits[position].argmax(-1).tolist()
            assert [row["label"] for row in rows] == [label_of[i] for i in argmax]


def test_which_exit_answers_can_change_and_each_answer_is_its_exits_own(trained_run, calibrated, tmp_path):
    logits, _, _ = full_pass(trained_run["archive"])
    models = []
    for archive_file in (trained_run["archive"], calibrated["archive"]):
        archive = load_sledge_archive(str(archive_file))
        batch = tensor_batches(read_labelled(archive, str(TEST)), archive, 64, torch.device("cpu"))[0]
        models.append((archive.model.core, inputs_of(batch)))
    moved = 0
    for threshold in SWEEP_GRID[1:-1]:
        exits = []
        for core, inputs in models:
            result = early_exit(core, *inputs, threshold=threshold)
            confidence = torch.softmax(logits / core.temperatures[:, None, None], -1).max(-1)[0]  # (exits, N)
            for index in range(len(SENTENCES)):  # the first exit confident enough; its own logits
                leave = [j for j in range(3) if float(confidence[j, index]) >= threshold]
                assert int(result.exit_index[index]) == (leave[0] if leave else 3)
            taken = result.exit_index
            torch.testing.assert_close(result.logits, logits[taken, torch.arange(len(taken))], atol=1e-5,
                rtol=1e-4)
            exits.append(taken)
        moved += not torch.equal(*exits)
    assert moved >= 1, "calibration changed no row's exit at any threshold of the sweep's grid"
