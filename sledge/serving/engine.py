"""What the server needs of a model: validated, tokenized inputs in; the Predictor's JSON out."""

import torch
from allennlp.models.archival import Archive

from sledge.dataset_readers.base import Encoded
from sledge.nn import Cascade, EarlyExitOutput, ExitPolicy, early_exit
from sledge.predictors import SledgePredictor

__all__ = ["Encoded", "Engine"]


class Engine:
    """
    A loaded sledge archive (multi-exit model or cascade) for serving: `encode` validates an instance
    (the Predictor's rules: `sentence`, or `premise` and `hypothesis`, non-empty strings) and tokenizes
    it as the model's reader does (texts longer than the reader's `max_length` are truncated, and the
    output says so); `run` is the batched early-exit runner; `output` formats one row as `allennlp
    predict` does.

    Parameters
    ----------
    archive : `Archive`
        A loaded sledge archive (`sledge.commands.common.load_sledge_archive`).
    """

    def __init__(self, archive: Archive) -> None:
        self.model = archive.model.eval()
        self.core = self.model.core
        self.predictor = SledgePredictor(self.model, archive.validation_dataset_reader)
        self.reader = archive.validation_dataset_reader
        self.tokenizer = self.reader.tokenizer
        self.policy: ExitPolicy = self.model.exit_policy
        self.layers = list(self.core.layer_indices)
        self.labels = (
            None
            if self.core.regression
            else [
                self.model.vocab.get_token_from_index(i, self.model.label_namespace)
                for i in range(self.core.num_labels)
            ]
        )

    def encode(self, instance: dict) -> Encoded:
        """
        Validate and tokenize one instance; a `SledgeError` names the key that is wrong. The reader's
        `encode` calls the fast tokenizer's backend once and directly (the wrapper, called twice per
        request, took a third of the event loop's busy time under load).
        """
        text, pair = self.predictor.check_json(instance)
        return self.reader.encode(text, pair)

    def batch(self, rows: list[Encoded]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded (input_ids, attention_mask, token_type_ids)."""
        width = max(len(row.input_ids) for row in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        types = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.input_ids)
            ids[i, :n], mask[i, :n], types[i, :n] = (
                torch.tensor(row.input_ids),
                1,
                torch.tensor(row.token_type_ids),
            )
        return ids, mask, types

    def run(self, rows: list[Encoded], settings: list[float | None]) -> EarlyExitOutput:
        """The batched early-exit runner on `rows`, each at its own setting (None: the policy's own)."""
        ids, mask, types = self.batch(rows)
        values = torch.tensor([self.policy.value() if s is None else s for s in settings], dtype=torch.float)
        with torch.no_grad():
            return early_exit(self.core, ids, mask, types, policy=self.policy, row_settings=values)

    def output(
        self,
        exit_index: int,
        logits: torch.Tensor,
        probs: torch.Tensor | None,
        certainty: torch.Tensor | None,
        truncated: bool,
    ) -> dict:
        """One row as `allennlp predict` writes it, plus `truncated`."""
        result: dict = {"exit_layer": self.layers[exit_index], "exit_index": exit_index}
        if probs is None:
            result["score"] = float(logits[0])
        else:
            result.update(
                label=self.labels[int(probs.argmax())], probs=probs.tolist(), confidence=float(probs.max())
            )
        if certainty is not None:
            result["certainty"] = float(certainty)
        if isinstance(self.core, Cascade):
            result["exit_model"] = exit_index
        result["truncated"] = truncated
        return result
