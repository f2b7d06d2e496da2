"""
Distributed training on AllenNLP's own engine: two CPU worker processes (gloo), with one strategy, the
alternating one: the only strategy that leaves parameters without a gradient on some steps (the earlier
heads on odd steps), which DDP must be told about. The others (joint, weighted, detached, distilled)
give every exit's head a gradient at every step, as in one process (their losses and gradients are
tested in test_training.py); each distributed run costs two processes' start and a training, so they
are not repeated here.
"""

import json
import math

import pytest
import torch

from conftest import FIXTURES, ROOT, TEST, TRAIN, allennlp, build_tiny_bert
from sledge.commands.common import load_sledge_archive


@pytest.mark.parametrize("strategy", ["alternating"])  # the hard case: heads without gradient on odd steps
def test_two_cpu_workers_train_equal_replicas_and_an_archive_that_loads(tmp_path, monkeypatch, strategy):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(FIXTURES / "plugins"))
    backbone = build_tiny_bert(tmp_path / "tiny-bert", num_layers=6)
    overrides = {
        "dataset_reader.transformer_model": str(backbone), "model.transformer_model": str(backbone),
        "train_data_path": str(TRAIN), "validation_data_path": str(TEST),
        # AllenNLP 2.10 evaluates the test data on the primary worker alone, while its metrics all-reduce
        # across workers: in distributed training, evaluate afterwards with `allennlp evaluate`.
        "evaluate_on_test": False,
        "trainer.num_epochs": 1, "trainer.optimizer.lr": 1e-3, "data_loader.batch_sampler.batch_size": 4,
        "model.training_strategy": {"type": strategy},
        "trainer.callbacks": [{"type": "replica_hash"}],
        # Two CPU processes; the alternating strategy leaves the earlier heads without gradient on odd
        # steps, and BERT's pooler is never used: DDP must be told that parameters may go unused.
        "distributed": {"cuda_devices": [-1, -1],
                        "ddp_accelerator": {"type": "torch", "find_unused_parameters": True}},
    }
    run = tmp_path / "run"
    allennlp("train", "training_config/sst2_minilm.jsonnet", "-s", str(run), "--include-package", "sledge",
             "--include-package", "replica_check", "-o", json.dumps(overrides))
    replicas = [json.loads((run / f"replica-{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world_size"] for r in replicas] == [2, 2]
    assert replicas[0]["sha256"] == replicas[1]["sha256"]  # DDP kept the two replicas equal
    metrics = json.loads((run / "metrics.json").read_text())
    assert math.isfinite(metrics["training_loss"]) and math.isfinite(metrics["validation_loss"])
    archive = load_sledge_archive(str(run / "model.tar.gz"))
    assert archive.model.core.layer_indices == [0, 1, 3, 5]
    assert all(torch.isfinite(p).all() for p in archive.model.parameters())
