"""Early-exit scoring of a Ray Dataset, for users with a Ray Data pipeline of their own."""

from typing import Any

from sledge.scoring.scorer import RowScorer


def score_dataset(
    dataset: Any,
    archive_file: str,
    *,
    overrides: str | dict = "",
    batch_size: int = 32,
    rows_per_call: int = 1024,
    actors: int = 1,
    cpus_per_actor: float = 1,
    cuda: bool = False,
) -> Any:
    """
    `dataset` (a `ray.data.Dataset` whose rows hold the Predictor's keys as columns: `sentence`, or
    `premise` and `hypothesis`) with the sledge archive's predictions added as columns: `label`,
    `probs`, `exit_layer`, `exit_index`, `confidence` (a regression model's `score`, `exit_layer`,
    `exit_index`; `certainty` with the learning-to-exit module; `exit_model` for a cascade),
    `truncated`, and `error` (null, or why the Predictor refuses the row: then the prediction's
    columns are null). Every other column is kept. Lazy, as Ray Data is: nothing runs until the
    result is consumed (`write_parquet`, `iter_rows`, ...).

    `actors` Ray actors (`cpus_per_actor` CPUs and as many torch threads each, or one GPU each with
    `cuda`) each load the model once, as `allennlp predict` does with `-o overrides`, and score
    `rows_per_call` rows at a time, in batches of `batch_size` rows of similar length.
    """
    import ray.data

    return dataset.map_batches(
        RowScorer,
        batch_size=rows_per_call,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
        num_gpus=1 if cuda else None,
        fn_constructor_kwargs={
            "archive_file": archive_file,
            "overrides": overrides,
            "batch_size": batch_size,
            "cuda": cuda,
            "threads": max(1, int(cpus_per_actor)),
        },
    )
