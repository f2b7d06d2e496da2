"""The benchmarks' aggregation over training seeds, on constructed numbers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from seeds import aggregate, claim, fastest_within  # noqa: E402


def test_aggregate_gives_the_mean_and_the_sample_standard_deviation():
    result = aggregate([0.88, 0.89, 0.90])
    assert result["mean"] == pytest.approx(0.89)
    assert result["std"] == pytest.approx(0.01)  # sqrt(((-0.01)^2 + 0 + 0.01^2) / 2)
    assert (result["min"], result["max"], result["n"]) == (0.88, 0.90, 3)
    assert aggregate([0.5])["std"] == 0.0
    with pytest.raises(ValueError):
        aggregate([])


def row(value, accuracy, ms):
    return {"value": value, "accuracy": accuracy, "seconds_per_instance": ms / 1000}


def test_the_fastest_setting_within_the_target():
    curve = [row(0.6, 0.85, 5.0), row(0.8, 0.885, 8.0), row(0.9, 0.889, 10.0), row(1.0, 0.89, 30.0)]
    pick = fastest_within(curve, 0.885, standard_seconds=0.030)
    assert pick["value"] == 0.8 and pick["speedup"] == pytest.approx(3.75)
    assert fastest_within(curve, 0.95, 0.030) is None


def test_a_claim_holds_only_if_every_seed_reaches_it():
    standards = [0.890, 0.886, 0.894]  # mean 0.890: the target is 0.885
    curves = {
        "a": [row(0.7, 0.886, 9.0), row(1.0, 0.89, 30.0)],  # 30 / 9 = 3.33x
        "b": [row(0.7, 0.880, 7.0), row(0.8, 0.885, 12.0), row(1.0, 0.89, 30.0)],  # 2.5x
        "c": [row(0.7, 0.887, 8.0), row(1.0, 0.89, 30.0)],  # 3.75x
    }
    result = claim(curves, standards, standard_seconds=0.030, points=0.5, target_speedup=3.0)
    assert result["target_accuracy"] == pytest.approx(0.885)
    assert [result["per_seed"][seed]["speedup"] for seed in "abc"] == pytest.approx([30 / 9, 2.5, 3.75])
    assert result["holds_for_every_seed"] is False and result["within_for_every_seed"] is True
    assert result["speedup"]["mean"] == pytest.approx((30 / 9 + 2.5 + 3.75) / 3)
    assert claim(curves, standards, 0.030, target_speedup=2.5)["holds_for_every_seed"] is True
    far = claim({"a": [row(1.0, 0.80, 30.0)]}, standards, 0.030, target_speedup=1.0)
    assert far["per_seed"]["a"] is None and far["holds_for_every_seed"] is False
