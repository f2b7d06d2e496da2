"""The Predictor `sledge`: early-exit classification of JSON lines."""

import math

import torch
from allennlp.common.util import JsonDict
from allennlp.data import Instance
from allennlp.data.fields import TensorField
from allennlp.predictors import Predictor

from sledge.errors import InvalidTextError, SledgeError, text_problem
from sledge.nn import check_threshold

THRESHOLD_KEY = "confidence_threshold"  # an instance's own threshold, as `allennlp serve` takes it


@Predictor.register("sledge")
class SledgePredictor(Predictor):
    """
    Early-exit prediction for a `sledge` model. Input lines are JSON: `{"sentence": ...}` for one
    text, `{"premise": ..., "hypothesis": ...}` for a pair. Each output of a classifier carries
    `label`, `probs` (calibrated class probabilities, in the order of the model's label vocabulary),
    `exit_layer` (0-based transformer layer of the exit taken), `exit_index` (its position among the
    exits) and `confidence` (the calibrated max probability); a regression model's carries `score`,
    `exit_layer` and `exit_index`; a model with the learning-to-exit module adds `certainty` (its
    prediction at the exit taken). Every output has `truncated`: true where the text (pair) was longer
    than the reader's `max_length` tokens and was cut to it, as `allennlp serve` answers; `truncated`
    and `predicted` count them (`allennlp predict` prints the counts at the end). With `--batch-size N`
    the instances of a batch leave the running batch as they exit.

    The threshold is the model's `confidence_threshold`: set it with
    `-o '{"model.confidence_threshold": 0.9}'`, or per call with `set_threshold`; another exit policy
    with `-o '{"model.exit_policy": {"type": "entropy", "threshold": 0.3}}'`. An instance may carry its
    own threshold under the key `confidence_threshold` (a number in [0, 1]), as with `allennlp serve`;
    with a policy that has no threshold (patience) that key is an error.

    Parameters
    ----------
    model : `Model`
        A `sledge` model.
    dataset_reader : `DatasetReader`
        A sledge reader (it tokenizes with the backbone's tokenizer).
    frozen : `bool`, optional (default = `True`)
        Put the model in evaluation mode.
    """

    def __init__(self, model, dataset_reader, frozen: bool = True) -> None:
        super().__init__(model, dataset_reader, frozen)
        self.predicted = 0  # outputs given
        self.truncated = 0  # of them, texts cut to the reader's max_length

    def set_threshold(self, threshold: float) -> None:
        """Change the threshold of the model's exit policy (confidence, entropy or learned)."""
        policy = self._model.exit_policy  # type: ignore[attr-defined]
        if policy.setting != "threshold":
            raise SledgeError(
                f"exit_policy {policy.name!r} has no threshold; it is set by {policy.setting!r}"
            )
        self._model.exit_policy = policy.with_setting(check_threshold(threshold))  # type: ignore

    def check_setting(self, value, where: str) -> float:
        """A threshold an instance or a request gives, checked: a number in [0, 1] for a threshold policy."""
        policy = self._model.exit_policy  # type: ignore[attr-defined]
        if policy.setting != "threshold":
            raise SledgeError(f"{where}: the model's exit policy {policy.name!r} has no threshold")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or not (0.0 <= value <= 1.0)
        ):
            raise SledgeError(f"{where} must be a number in [0, 1], got {value!r}")
        return float(value)

    def check_json(self, json_dict: JsonDict) -> tuple[str, str | None]:
        """
        The text (and second text) of one input, or a `SledgeError` naming the key: the input must be
        a JSON object with a non-empty string `sentence` for a model of single texts, or non-empty
        strings `premise` and `hypothesis` for a model of text pairs (a reader that takes both, such
        as `sledgehammer_tsv`, accepts either), and an optional `confidence_threshold` (see
        `check_setting`); a text holding a lone surrogate is an `InvalidTextError`. Other keys are ignored.
        """
        if not isinstance(json_dict, dict):
            raise SledgeError(f"expected a JSON object, found {type(json_dict).__name__}")
        if json_dict.get(THRESHOLD_KEY) is not None:
            self.check_setting(json_dict[THRESHOLD_KEY], f"key {THRESHOLD_KEY!r}")
        pairs = getattr(self._dataset_reader, "text_pairs", None)
        single, pair = "sentence" in json_dict, "premise" in json_dict or "hypothesis" in json_dict
        if single and pair:
            raise SledgeError("give either 'sentence', or 'premise' and 'hypothesis', not both")
        if single:
            if pairs is True:
                raise SledgeError(
                    "key 'sentence': this model reads text pairs; give 'premise' and 'hypothesis'"
                )
            return _text(json_dict, "sentence"), None
        if pair:
            if pairs is False:
                present = [key for key in ("premise", "hypothesis") if key in json_dict]
                raise SledgeError(
                    f"key {present[0]!r}: this model reads single texts; give 'sentence' instead"
                )
            return _text(json_dict, "premise"), _text(json_dict, "hypothesis")
        raise SledgeError(
            "a sledge input needs the key 'sentence' (single texts) or 'premise' and 'hypothesis' "
            f"(pairs); got keys {sorted(json_dict)}"
        )

    def _json_to_instance(self, json_dict: JsonDict) -> Instance:
        """
        The instance of one input, tokenized as the reader does (its metadata says whether it was
        truncated), with its exit setting where the policy has a threshold: its own
        `confidence_threshold` or the model's, so that a batch runs each row at its own (as `serve`).
        """
        text, text_pair = self.check_json(json_dict)
        reader = self._dataset_reader
        instance = reader.encoded_instance(reader.encode(text, text_pair), text, text_pair)  # type: ignore
        policy = self._model.exit_policy  # type: ignore[attr-defined]
        if policy.setting == "threshold":
            own = json_dict.get(THRESHOLD_KEY)
            value = policy.value() if own is None else float(own)
            instance.add_field("exit_setting", TensorField(torch.tensor(value, dtype=torch.float)))
        return instance

    def predict_json(self, inputs: JsonDict) -> JsonDict:
        return self.predict_batch_json([inputs])[0]

    def predict_batch_json(self, inputs: list[JsonDict]) -> list[JsonDict]:
        instances = self._batch_json_to_instances(inputs)
        outputs = self.predict_batch_instance(instances)
        return [self._public(output, instance) for output, instance in zip(outputs, instances)]

    def _public(self, output: JsonDict, instance: Instance) -> JsonDict:
        keys = ("label", "probs", "score", "exit_layer", "exit_index", "exit_model", "confidence",
                "certainty")
        public = {key: output[key] for key in keys if key in output}
        public["truncated"] = bool(instance["metadata"].metadata.get("truncated", False))  # type: ignore
        self.predicted += 1
        self.truncated += public["truncated"]
        return public


def _text(json_dict: JsonDict, key: str) -> str:
    """`json_dict[key]`, which must be a non-empty string that a tokenizer can take (`InvalidTextError`)."""
    if key not in json_dict:
        raise SledgeError(f"missing key {key!r}")
    value = json_dict[key]
    if not isinstance(value, str):
        found = "null" if value is None else type(value).__name__
        raise SledgeError(f"key {key!r} must be a string, found {found}")
    if not value.strip():
        raise SledgeError(f"key {key!r} is empty")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidTextError(f"key {key!r} {problem}")
    return value
