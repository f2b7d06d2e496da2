"""Claims across training seeds: mean and spread of accuracies, whether a speed-up holds for every seed."""

import statistics


def aggregate(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for a single value), min and max of per-seed values."""
    if not values:
        raise ValueError("no values to aggregate")
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def fastest_within(curve: list[dict], target_accuracy: float, standard_seconds: float) -> dict | None:
    """
    The fastest setting (lowest measured batch-1 time) of one curve whose accuracy is at least
    `target_accuracy`, with its speed-up over a standard model measured at `standard_seconds` per
    instance; None if no setting reaches the target.
    """
    reaching = [row for row in curve if row["accuracy"] >= target_accuracy]
    if not reaching:
        return None
    pick = min(reaching, key=lambda row: row["seconds_per_instance"])
    return {**pick, "speedup": standard_seconds / pick["seconds_per_instance"]}


def claim(
    curves: dict[str, list[dict]],
    standard_accuracies: list[float],
    standard_seconds: float,
    points: float = 0.5,
    target_speedup: float | None = None,
) -> dict:
    """
    For each seed's curve: the fastest setting within `points` accuracy points of the MEAN standard
    accuracy over seeds, and its speed-up; whether every seed reaches `target_speedup` (where given).
    """
    target = statistics.fmean(standard_accuracies) - points / 100
    picks = {seed: fastest_within(curve, target, standard_seconds) for seed, curve in curves.items()}
    speedups = [pick["speedup"] for pick in picks.values() if pick is not None]
    every_seed = len(speedups) == len(picks)
    return {
        "target_accuracy": target,
        "per_seed": {
            seed: None
            if pick is None
            else {"value": pick.get("value"), "accuracy": pick["accuracy"], "speedup": pick["speedup"]}
            for seed, pick in picks.items()
        },
        "speedup": aggregate(speedups) if speedups else None,
        "within_for_every_seed": every_seed,
        "holds_for_every_seed": None
        if target_speedup is None
        else every_seed and min(speedups) >= target_speedup,
    }
