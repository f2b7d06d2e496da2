"""The difficulty analyses' maths on constructed inputs, against values worked out by hand."""

import math

import numpy as np
import pytest

from sledge.nn.difficulty import difficulty_tables, per_label_f1, spearman


def test_spearman_without_ties():
    # Ranks equal the values; d = (-1, 1, -1, 1, 0), rho = 1 - 6 * 4 / (5 * 24) = 0.8.
    assert spearman(np.array([1, 2, 3, 4, 5]), np.array([2, 1, 4, 3, 5])) == pytest.approx(0.8)


def test_spearman_with_ties_uses_average_ranks():
    # x ranks (1, 2.5, 2.5, 4); Pearson of the ranks = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(math.sqrt(0.9))
    assert spearman(np.array([3, 2, 1]), np.array([1, 2, 3])) == pytest.approx(-1.0)


def test_per_label_f1():
    predicted, gold = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 1, 1, 2, 0])
    # label 0: tp 1, fp 1, fn 1 -> 0.5; label 1: tp 2, fn 1 -> 0.8; label 2: tp 1, fp 1 -> 2/3.
    assert per_label_f1(predicted, gold, 3) == pytest.approx([0.5, 0.8, 2 / 3])
    assert per_label_f1(np.array([0, 0]), np.array([0, 0]), 2) == pytest.approx([1.0, 0.0])


def test_difficulty_tables_on_a_constructed_case():
    # Two exits, four instances, two labels. Exit 0 confidences 0.95, 0.6, 0.92, 0.55; exit 1 agrees
    # with exit 0 on instances 0 and 2 only.
    probs = np.array([
        [[0.95, 0.05], [0.6, 0.4], [0.08, 0.92], [0.55, 0.45]],
        [[0.97, 0.03], [0.2, 0.8], [0.01, 0.99], [0.3, 0.7]],
    ])
    gold = np.array([0, 1, 1, 0])
    lengths = np.array([5, 20, 8, 30])
    tables = difficulty_tables(probs, gold, lengths, high=0.9)
    assert tables["consistent_share"] == 0.5
    # Exit 0's confidence falls as length grows: ranks (4, 2, 3, 1) against (1, 3, 2, 4) -> rho = -1.
    assert tables["rho_length"][0] == pytest.approx(-1.0)
    # Consistency (1, 0, 1, 0) against exit 0's confidence: rank correlation sqrt(0.8) = 0.894.
    assert tables["rho_consistency"][0] == pytest.approx(2 / math.sqrt(5))
    # Exit 0, gold 0: confidences 0.95 and 0.55 -> half >= 0.9; gold 1: 0.6 and 0.92 -> half.
    assert tables["high_confidence_share"][0] == [0.5, 0.5]
    assert tables["average_confidence"][0] == pytest.approx([0.75, 0.76])
    # Exit 1 predicts (0, 1, 1, 1): label 0 F1 = 2/3, label 1 F1 = 0.8.
    assert tables["f1"][1] == pytest.approx([2 / 3, 0.8])
