"""The AllenNLP Model `sledge_cascade`: a cascade of complete models (`sledge.nn.Cascade`) in one archive."""

from pathlib import Path
from typing import Any, Dict, Optional  # noqa: UP035 (AllenNLP reads typing's generics)

import torch
from allennlp.data import TextFieldTensors, Vocabulary
from allennlp.models import Model

from sledge.models.exit_policy import ExitPolicyRegistry
from sledge.models.sledge_classifier import SledgeClassifier, check_backend, check_quantize
from sledge.nn import Cascade, LayerwiseEncoder, MultiExitClassifier, resolve_backbone

MEMBER_KEYS = (
    "transformer_model",
    "layer_indices",
    "dropout",
    "pooling",
    "regression",
    "learn_to_exit",
    "exit_head",
)


def member_backbone(position: int) -> str:
    """The folder of an archive that holds member `position`'s backbone config and tokenizer."""
    return f"backbone-{position}"


@Model.register("sledge_cascade")
class SledgeCascade(SledgeClassifier):
    """
    A cascade of complete single-exit sledge models, smallest first (CascadeBERT, Li et al. 2021): an
    instance runs the first member, and runs the next one from scratch only if the exit policy (by
    default: calibrated confidence >= `confidence_threshold`) does not let it leave. Built from
    single-exit archives by `allennlp cascade`; calibrated, evaluated, predicted with and swept like a
    multi-exit model. Each exit is a member: `exit_index` (and `exit_model`) is the member that
    answered, `exit_layer` the layers run in total, minus one (members of 2 and 6 layers: 1 and 7).

    Parameters
    ----------
    vocab : `Vocabulary`
        The members' labels (they agree; `allennlp cascade` checks).
    members : `list[dict]`
        Each member's model parameters (`transformer_model`, `layer_indices` with one layer, `pooling`,
        `dropout`, `regression`, `learn_to_exit`, `exit_head`), smallest first. Member i's backbone
        config and tokenizer are read from the archive's `backbone-i/` folder.
    confidence_threshold : `float`, optional (default = `1.0`)
        As `sledge`'s: 0 always answers with the first member, 1 always runs the last.
    exit_policy : `ExitPolicyRegistry`, optional
        As `sledge`'s (`confidence`, `entropy`, `patience`; there is no LTE module).
    label_namespace : `str`, optional (default = `"labels"`)
        Vocabulary namespace of the labels.
    quantize : `str`, optional
        As `sledge`'s: `"int8"` quantizes every member's linear layers when loaded.
    backend : `str`, optional (default = `"torch"`)
        As `sledge`'s: every member runs on it.
    backend_options : `dict`, optional
        As `sledge`'s.
    serialization_dir : `str`, optional
        Given by AllenNLP: the extracted archive.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        members: list[dict[str, Any]],
        confidence_threshold: float = 1.0,
        exit_policy: Optional[ExitPolicyRegistry] = None,  # noqa: UP045 (AllenNLP reads typing.Optional)
        label_namespace: str = "labels",
        quantize: str | None = None,
        backend: str = "torch",
        backend_options: Optional[Dict[str, Any]] = None,  # noqa: UP006, UP045
        serialization_dir: str | None = None,
    ) -> None:  # no **kwargs: AllenNLP would then ask for the parameters of SledgeClassifier too
        Model.__init__(self, vocab, serialization_dir=serialization_dir)
        cores = []
        for position, member in enumerate(members):
            saved = (
                serialization_dir is not None
                and (Path(serialization_dir) / member_backbone(position)).is_dir()
            )
            path = (
                str(Path(serialization_dir) / member_backbone(position))
                if saved
                else resolve_backbone(member["transformer_model"])
            )
            regression = member.get("regression", False)
            cores.append(
                MultiExitClassifier(
                    LayerwiseEncoder(path, load_weights=not saved),
                    member["layer_indices"],
                    1 if regression else vocab.get_vocab_size(label_namespace),
                    member.get("dropout", 0.1),
                    member.get("pooling", "cls"),
                    regression,
                    member.get("learn_to_exit", False),
                    member.get("exit_head"),
                )
            )
        self._setup(Cascade(cores), confidence_threshold, exit_policy, None, label_namespace)
        self.quantize = check_quantize(quantize)
        self.backend, self.backend_options = check_backend(backend, backend_options)

    def forward(  # type: ignore[override]
        self,
        tokens: TextFieldTensors,
        label: torch.Tensor | None = None,
        metadata: list[dict[str, Any]] | None = None,
        difficulty: torch.Tensor | None = None,
        exit_setting: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        output = super().forward(tokens, label, metadata, difficulty, exit_setting)
        if "exit_index" in output:
            output["exit_model"] = output["exit_index"]
        return output
