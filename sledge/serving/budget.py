"""Choosing the threshold from a target instead of a number: an accuracy budget, a latency budget, online."""

import json
import random
from collections import deque
from pathlib import Path

from sledge.errors import SledgeError
from sledge.nn import POLICIES, ExitPolicy


def sweep_rows(sweep_json: str, policy: str | None = None) -> list[dict]:
    """The curve rows of a sweep.json (of `policy`, or of its only policy), with their setting values."""
    try:
        rows = json.loads(Path(sweep_json).read_text())["rows"]
    except (OSError, ValueError, KeyError) as error:
        raise SledgeError(f"{sweep_json}: not a sweep.json written by allennlp sweep ({error})") from None
    curve = [row for row in rows if row["kind"] == "sledge"]
    labels = sorted({row.get("policy", "confidence") for row in curve})
    if policy is None and len(labels) > 1:
        raise SledgeError(f"{sweep_json} holds several policies ({', '.join(labels)}); say which")
    wanted = policy or (labels[0] if labels else None)
    chosen = [row for row in curve if row.get("policy", "confidence") == wanted]
    if not chosen:
        raise SledgeError(f"{sweep_json} has no curve of policy {wanted!r}")
    return chosen


def _metric(row: dict) -> float:
    return row["pearson"] if "pearson" in row else row["accuracy"]


def _value(row: dict) -> float:
    return row.get("value", row.get("threshold"))


def for_accuracy_drop(rows: list[dict], points: float) -> dict:
    """
    The fastest setting whose score (accuracy, or Pearson's r) is within `points` points of the
    score of the slowest setting (no early exit): the 'lowest threshold within' the budget.
    """
    if points < 0:
        raise SledgeError(f"--max-accuracy-drop must be >= 0, got {points}")
    reference = max(rows, key=lambda row: (row["average_exit_layer"], _value(row)))
    allowed = [row for row in rows if _metric(row) >= _metric(reference) - points / 100]
    return min(allowed, key=lambda row: (row["average_exit_layer"], row.get("seconds_per_instance", 0.0)))


def for_latency(rows: list[dict], budget_ms: float) -> dict:
    """The setting with the best score among those whose measured batch-1 time fits `budget_ms`."""
    fitting = [
        row
        for row in rows
        if "seconds_per_instance" in row and row["seconds_per_instance"] * 1000 <= budget_ms
    ]
    if not fitting:
        fastest = min(rows, key=lambda row: row.get("seconds_per_instance", float("inf")))
        raise SledgeError(
            f"--latency-budget-ms {budget_ms:g}: no setting is that fast; the fastest measured is "
            f"{fastest.get('seconds_per_instance', float('nan')) * 1000:.2f} ms per instance"
        )
    return max(fitting, key=lambda row: (_metric(row), -row["seconds_per_instance"]))


class BudgetPolicy:
    """
    The exit policy whose setting a target chooses from a sweep (`allennlp sweep`'s sweep.json):
    `{"type": "budget", "sweep": "runs/x/sweep/sweep.json", "max_accuracy_drop": 0.5}` takes the
    fastest setting within 0.5 points of no early exit; `"latency_budget_ms": 10` the most accurate
    setting measured at most 10 ms per instance at batch 1. `policy` names the sweep's curve when it
    has several. Building it returns the chosen policy itself (e.g. a `ConfidencePolicy`).

    Parameters
    ----------
    sweep : `str`
        A sweep.json of this model.
    max_accuracy_drop : `float`, optional
        In points (0.5: half a point of accuracy, or of Pearson's r x 100).
    latency_budget_ms : `float`, optional
        Milliseconds per instance at batch 1, as the sweep measured them.
    policy : `str`, optional
        The sweep's curve to choose from.
    """

    def __new__(
        cls,
        sweep: str,
        max_accuracy_drop: float | None = None,
        latency_budget_ms: float | None = None,
        policy: str | None = None,
    ) -> ExitPolicy:  # type: ignore[misc]
        return choose(sweep_rows(sweep, policy), max_accuracy_drop, latency_budget_ms)


def choose(rows: list[dict], max_accuracy_drop: float | None, latency_budget_ms: float | None) -> ExitPolicy:
    """The policy and setting of the row that the (one) target picks."""
    if (max_accuracy_drop is None) == (latency_budget_ms is None):
        raise SledgeError("give one target: max_accuracy_drop or latency_budget_ms")
    row = (
        for_accuracy_drop(rows, max_accuracy_drop)
        if latency_budget_ms is None
        else for_latency(rows, latency_budget_ms)
    )
    name = row.get("policy", "confidence").split(", ")[-1].split(" (")[0]
    calibrated = "(uncalibrated)" not in row.get("policy", "")
    policy = POLICIES[name](calibrated=False) if not calibrated else POLICIES[name]()
    return policy.with_setting(_value(row))


class OnlineThreshold:
    """
    Online mode: a `share` of the instances is also run to the last exit; the agreement of the early
    answers with the last exit's over the last `window` of them is the live estimate, and every
    `every` samples the threshold moves by `step`: up when the estimate is below `target`, down when
    it is above `target` + `slack`. The estimate and the threshold are exported in /metrics.

    Parameters
    ----------
    threshold : `float`
        Where it starts.
    target : `float`
        The agreement to keep, in (0, 1].
    share : `float`
        The share of instances also run to the last exit, in (0, 1].
    step, window, every, slack, seed
        As above; `seed` seeds the sampling.
    """

    def __init__(
        self,
        threshold: float,
        target: float,
        share: float,
        step: float = 0.01,
        window: int = 200,
        every: int = 20,
        slack: float = 0.01,
        seed: int = 0,
    ) -> None:
        if not 0 < target <= 1 or not 0 < share <= 1:
            raise SledgeError("--online-agreement-target and --online-share must lie in (0, 1]")
        self.threshold, self.target, self.share = threshold, target, share
        self.step, self.every, self.slack = step, every, slack
        self.recent: deque[bool] = deque(maxlen=window)
        self.seen = 0
        self.random = random.Random(seed)

    def sample(self) -> bool:
        """Whether to run this instance to the last exit too."""
        return self.random.random() < self.share

    def record(self, agree: bool) -> None:
        self.recent.append(agree)
        self.seen += 1
        if self.seen % self.every == 0:
            estimate = self.agreement()
            if estimate < self.target:
                self.threshold = min(1.0, self.threshold + self.step)
            elif estimate > self.target + self.slack:
                self.threshold = max(0.0, self.threshold - self.step)

    def agreement(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 1.0
