"""Temperature scaling (Guo et al. 2017), its measures, and the oracle exit."""

import torch
import torch.nn.functional as F


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 100) -> float:
    """
    The temperature T > 0 maximising the log-likelihood of `labels` under softmax(logits / T),
    found by LBFGS on log T (so T stays positive). Dividing by T never changes an argmax.
    """
    logits, labels = logits.detach().float(), labels.detach().long()
    log_t = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of `labels` under softmax(logits / temperature)."""
    return float(F.cross_entropy(logits.float() / temperature, labels.long()))


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, num_bins: int = 15) -> float:
    """
    ECE (Naeini et al. 2015; Guo et al. 2017): instances binned by confidence (max probability) into
    `num_bins` equal-width bins of (0, 1]; the average over bins of |accuracy - mean confidence|,
    weighted by the share of instances in the bin.
    """
    confidence, predicted = probs.float().max(dim=-1)
    correct = (predicted == labels).float()
    bins = torch.clamp(torch.ceil(confidence * num_bins).long() - 1, 0, num_bins - 1)
    ece = torch.zeros(())
    for b in range(num_bins):
        in_bin = bins == b
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            ece += in_bin.float().mean() * gap
    return float(ece)


def oracle_exits(correct: torch.Tensor) -> torch.Tensor:
    """
    `correct[i, j]` says whether exit j predicts instance i's gold label. The oracle exit is the
    first correct exit, or the first exit if none is correct.
    """
    first_correct = correct.int().argmax(dim=1)  # argmax returns the first maximum
    return torch.where(correct.any(dim=1), first_correct, torch.zeros_like(first_correct))
