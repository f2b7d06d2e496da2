"""Pearson's and Spearman's correlation of predicted scores with gold scores, over a whole dataset."""

import torch
import torch.distributed as dist
from allennlp.training.metrics import Metric
from scipy import stats


class Correlation(Metric):
    """
    Keeps every (prediction, gold) pair seen since the last reset and returns Pearson's r and
    Spearman's rho of all of them (scipy's), 0 while fewer than 2 pairs or a constant side. In
    distributed training every worker's pairs are gathered first.
    """

    def __init__(self) -> None:
        self.predictions: list[torch.Tensor] = []
        self.gold: list[torch.Tensor] = []

    def __call__(self, predictions: torch.Tensor, gold_labels: torch.Tensor, mask=None) -> None:
        self.predictions.append(predictions.detach().reshape(-1).double().cpu())
        self.gold.append(gold_labels.detach().reshape(-1).double().cpu())

    def get_metric(self, reset: bool = False) -> dict[str, float]:
        predictions = torch.cat(self.predictions) if self.predictions else torch.zeros(0, dtype=torch.float64)
        gold = torch.cat(self.gold) if self.gold else torch.zeros(0, dtype=torch.float64)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:  # all workers
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (predictions, gold))
            predictions = torch.cat([pair[0] for pair in gathered])
            gold = torch.cat([pair[1] for pair in gathered])
        predictions, gold = predictions.numpy(), gold.numpy()
        result = {"pearson": 0.0, "spearman": 0.0}
        if len(gold) >= 2 and predictions.std() > 0 and gold.std() > 0:
            result = {"pearson": float(stats.pearsonr(predictions, gold)[0]),
                      "spearman": float(stats.spearmanr(predictions, gold)[0])}
        if reset:
            self.reset()
        return result

    def reset(self) -> None:
        self.predictions, self.gold = [], []
