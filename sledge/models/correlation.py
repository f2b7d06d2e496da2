"""Pearson's and Spearman's correlation of predicted scores with gold scores, over a whole dataset."""

import torch
from allennlp.training.metrics import Metric
from scipy import stats


class Correlation(Metric):
    """
    Keeps every (prediction, gold) pair seen since the last reset and returns Pearson's r and
    Spearman's rho of all of them (scipy's), 0 while fewer than 2 pairs or a constant side.
    """

    def __init__(self) -> None:
        self.predictions: list[torch.Tensor] = []
        self.gold: list[torch.Tensor] = []

    def __call__(self, predictions: torch.Tensor, gold_labels: torch.Tensor, mask=None) -> None:
        self.predictions.append(predictions.detach().reshape(-1).double().cpu())
        self.gold.append(gold_labels.detach().reshape(-1).double().cpu())

    def get_metric(self, reset: bool = False) -> dict[str, float]:
        predictions = torch.cat(self.predictions).numpy() if self.predictions else []
        gold = torch.cat(self.gold).numpy() if self.gold else []
        result = {"pearson": 0.0, "spearman": 0.0}
        if len(gold) >= 2 and predictions.std() > 0 and gold.std() > 0:
            result = {"pearson": float(stats.pearsonr(predictions, gold)[0]),
                      "spearman": float(stats.spearmanr(predictions, gold)[0])}
        if reset:
            self.reset()
        return result

    def reset(self) -> None:
        self.predictions, self.gold = [], []
