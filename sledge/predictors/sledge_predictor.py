"""The Predictor `sledge`: early-exit classification of JSON lines."""

from allennlp.common.util import JsonDict
from allennlp.data import Instance
from allennlp.predictors import Predictor

from sledge.nn import check_threshold


@Predictor.register("sledge")
class SledgePredictor(Predictor):
    """
    Early-exit prediction for a `sledge` model. Input lines are JSON: `{"sentence": ...}` for one
    text, `{"premise": ..., "hypothesis": ...}` for a pair. Each output carries `label`, `probs`
    (calibrated class probabilities, in the order of the model's label vocabulary), `exit_layer`
    (0-based transformer layer of the exit taken), `exit_index` (its position among the exits) and
    `confidence` (the calibrated max probability). With `--batch-size N` the instances of a batch
    leave the running batch as they exit.

    The threshold is the model's `confidence_threshold`: set it with
    `-o '{"model.confidence_threshold": 0.9}'`, or per call with `set_threshold`.

    Parameters
    ----------
    model : `Model`
        A `sledge` model.
    dataset_reader : `DatasetReader`
        A sledge reader (it tokenizes with the backbone's tokenizer).
    frozen : `bool`, optional (default = `True`)
        Put the model in evaluation mode.
    """

    def set_threshold(self, threshold: float) -> None:
        """Change the confidence threshold of the model in use."""
        self._model.confidence_threshold = check_threshold(threshold, "confidence_threshold")  # type: ignore

    def _json_to_instance(self, json_dict: JsonDict) -> Instance:
        if "sentence" in json_dict:
            return self._dataset_reader.text_to_instance(json_dict["sentence"])  # type: ignore[call-arg]
        if "premise" in json_dict and "hypothesis" in json_dict:
            return self._dataset_reader.text_to_instance(  # type: ignore[call-arg]
                json_dict["premise"], json_dict["hypothesis"]
            )
        raise ValueError(
            f"a sledge input needs a 'sentence' key, or 'premise' and 'hypothesis' keys; got keys "
            f"{sorted(json_dict)}"
        )

    def predict_json(self, inputs: JsonDict) -> JsonDict:
        return self._keep_public(super().predict_json(inputs))

    def predict_batch_json(self, inputs: list[JsonDict]) -> list[JsonDict]:
        return [self._keep_public(output) for output in super().predict_batch_json(inputs)]

    @staticmethod
    def _keep_public(output: JsonDict) -> JsonDict:
        keys = ("label", "probs", "exit_layer", "exit_index", "confidence")
        return {key: output[key] for key in keys}
