"""The paper's difficulty analyses (Schwartz et al. 2020, section 5): confidence against length,
consistency across exits, and labels."""

import numpy as np
from scipy.stats import rankdata


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties get their average rank)."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def per_label_f1(predicted: np.ndarray, gold: np.ndarray, num_labels: int) -> np.ndarray:
    """F1 of each label (0 where it is never predicted nor gold)."""
    f1 = np.zeros(num_labels)
    for label in range(num_labels):
        tp = np.sum((predicted == label) & (gold == label))
        fp = np.sum((predicted == label) & (gold != label))
        fn = np.sum((predicted != label) & (gold == label))
        f1[label] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return f1


def difficulty_tables(probs: np.ndarray, gold: np.ndarray, lengths: np.ndarray, high: float = 0.9) -> dict:
    """
    `probs[j, i]`: calibrated class probabilities of exit j for instance i; `gold[i]` its label;
    `lengths[i]` its length in tokens. Per exit: Spearman's rho of its confidence with length and
    with consistency (every exit predicts the same label); per gold label and exit, the share of
    instances predicted with confidence >= `high` and the average confidence; per label and exit, F1.
    """
    num_exits, _, num_labels = probs.shape
    confidence = probs.max(axis=-1)  # (exits, N)
    predicted = probs.argmax(axis=-1)
    consistent = (predicted == predicted[0]).all(axis=0).astype(float)
    return {
        "rho_length": [spearman(confidence[j], lengths) for j in range(num_exits)],
        "rho_consistency": [spearman(confidence[j], consistent) for j in range(num_exits)],
        "consistent_share": float(consistent.mean()),
        "high_confidence_share": [
            [float((confidence[j][gold == label] >= high).mean()) if (gold == label).any() else 0.0
             for label in range(num_labels)]
            for j in range(num_exits)
        ],
        "average_confidence": [
            [float(confidence[j][gold == label].mean()) if (gold == label).any() else 0.0
             for label in range(num_labels)]
            for j in range(num_exits)
        ],
        "f1": [per_label_f1(predicted[j], gold, num_labels).tolist() for j in range(num_exits)],
    }


def difficulty_inversion_score(confidence: np.ndarray, easy: np.ndarray) -> float:
    """
    CascadeBERT's DIS: 1 minus the share of (easy, hard) pairs whose confidence order is inverted,
    i.e. where the hard instance gets the strictly higher confidence. 1: confidence ranks every easy
    instance above every hard one; about 0.5: no better than chance. NaN without both kinds.
    """
    confidence, easy = np.asarray(confidence, dtype=float), np.asarray(easy, dtype=bool)
    easy_confidence = np.sort(confidence[easy])
    hard_confidence = confidence[~easy]
    if not len(easy_confidence) or not len(hard_confidence):
        return float("nan")
    # For each hard instance, the easy ones it outranks: easy confidences strictly below its own.
    inverted = np.searchsorted(easy_confidence, hard_confidence, side="left").sum()
    return float(1.0 - inverted / (len(easy_confidence) * len(hard_confidence)))
