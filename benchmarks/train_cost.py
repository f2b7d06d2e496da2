"""
Training cost of sledge against the standard baseline, measured side by side.

Whole fine-tuning runs are minutes apart, and on a shared machine the speed drifts between them (the
validation passes, identical work for any strategy, differed by 20% between two runs here). This times
the training step itself, the work that differs, in one process: the two models (built from the same
config as `run.py` trains them, with fresh weights) take turns on the same training batches, with the
config's optimizer and gradient clipping, and the ratio of median times is reported.

    .venv/bin/python benchmarks/train_cost.py                   # both datasets, --strategy detached
    .venv/bin/python benchmarks/train_cost.py --datasets sst2 --batches 20 --repeats 5

Writes benchmarks/results/<dataset>/train_cost.json; `run.py --report-only` puts it in the report.
"""

import argparse
import itertools
import json
import os
import random
import statistics
import time
from pathlib import Path

import torch
from allennlp.common import Params
from allennlp.data import DatasetReader, Vocabulary
from allennlp.data.data_loaders import MultiProcessDataLoader
from allennlp.models import Model
from allennlp.training.optimizers import Optimizer
from run import BASE, MODELS, ROOT, STRATEGIES, datasets
from tqdm import tqdm

import sledge  # noqa: F401  (registers the components)


def build(config: str, overrides: dict, vocab: Vocabulary) -> tuple[Model, Optimizer]:
    params = Params.from_file(config, json.dumps(overrides))
    model = Model.from_params(vocab=vocab, params=params.pop("model"))
    model.train()
    optimizer = Optimizer.from_params(model_parameters=list(model.named_parameters()),
                                      params=params.pop("trainer").pop("optimizer"))
    return model, optimizer


def step_seconds(model: Model, optimizer: Optimizer, batches: list[dict]) -> float:
    """Wall-clock of one training step per batch (forward, backward, clipping, update), in total."""
    start = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad()
        model(**batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return time.perf_counter() - start


def measure(dataset: str, data: dict, args: argparse.Namespace) -> dict:
    base = {**BASE, "train_data_path": data["train"], "validation_data_path": data["dev"],
            "test_data_path": data["eval"]}
    params = Params.from_file(data["config"], json.dumps(base))
    reader = DatasetReader.from_params(params.pop("dataset_reader"))
    loader = MultiProcessDataLoader.from_params(params.pop("data_loader"), reader=reader,
                                                data_path=data["train"])
    vocab = Vocabulary.from_instances(loader.iter_instances())
    loader.index_with(vocab)
    random.seed(0)  # the bucket sampler's shuffle
    torch.manual_seed(0)
    batches = list(itertools.islice(loader, args.batches))  # the bucket sampler's batches, shuffled
    models = {
        "standard": build(data["config"], {**base, "model.layer_indices": MODELS["standard"]}, vocab),
        "sledge": build(data["config"], {**base, "model.layer_indices": MODELS["sledge"],
                                         **STRATEGIES[args.strategy]}, vocab),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    order = list(models)
    for repeat in tqdm(range(args.repeats + 1), desc=f"{dataset}: training steps"):
        for name in order if repeat % 2 else order[::-1]:  # alternate who goes first
            seconds = step_seconds(*models[name], batches)
            if repeat:  # the first round warms up
                times[name].append(seconds)
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "strategy": args.strategy, "batches": len(batches), "repeats": args.repeats,
        "instances": sum(len(batch["label"]) for batch in batches),
        "seconds_per_step": {name: value / len(batches) for name, value in median.items()},
        "all_seconds": times,
        "ratio_sledge_to_standard": median["sledge"] / median["standard"],
    }
    out = Path(args.out) / dataset
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_cost.json").write_text(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["sst2", "agnews"], choices=["sst2", "agnews"])
    parser.add_argument("--strategy", default="detached", choices=sorted(STRATEGIES))
    parser.add_argument("--work", default="runs/benchmarks", help="where run.py wrote the AG News split")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--batches", type=int, default=20, help="training batches per timed round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per model (median reported)")
    args = parser.parse_args()
    os.chdir(ROOT)
    data = datasets(Path(args.work))
    for dataset in args.datasets:
        result = measure(dataset, data[dataset], args)
        print(dataset, json.dumps({k: v for k, v in result.items() if k != "all_seconds"}))


if __name__ == "__main__":
    main()
