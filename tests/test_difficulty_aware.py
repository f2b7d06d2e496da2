"""CascadeBERT's difficulty-aware regularisation, the Difficulty Inversion Score, and K-fold labelling."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from allennlp.common import Params
from allennlp.data import Vocabulary
from allennlp.models import Model

from conftest import ROOT, TEST, TRAIN, allennlp, build_tiny_bert
from sledge.dataset_readers import SstSentenceReader
from sledge.dataset_readers.base import held_out
from sledge.errors import SledgeError
from sledge.models.sledge_classifier import SledgeClassifier
from sledge.nn import difficulty_inversion_score, difficulty_margin_loss


def test_the_margin_loss_by_hand():
    confidence = torch.tensor([0.9, 0.6, 0.8])
    easy = torch.tensor([1, 0, 0])
    # Pairs (0, 1), (0, 2) and their mirrors: relu(-(0.9 - 0.6) + 0.5) = 0.2, relu(-(0.9 - 0.8) + 0.5) = 0.4.
    assert float(difficulty_margin_loss(confidence, easy, 0.5)) == pytest.approx(0.3)
    assert float(difficulty_margin_loss(confidence, easy, 0.0)) == pytest.approx(0.0)
    assert float(
        difficulty_margin_loss(torch.tensor([0.2, 0.9]), torch.tensor([1, 0]), 0.3)
    ) == pytest.approx(1.0)
    assert float(difficulty_margin_loss(confidence, torch.tensor([1, 1, 1]), 0.5)) == 0.0  # no easy/hard pair


def test_the_difficulty_inversion_score_by_hand():
    confidence = [0.9, 0.5, 0.7, 0.4, 0.95]
    easy = [True, True, False, False, False]
    # Inverted (hard above easy): 0.95 > 0.9; 0.7 > 0.5 and 0.95 > 0.5: 3 of 2 x 3 pairs.
    assert difficulty_inversion_score(confidence, easy) == pytest.approx(0.5)
    assert difficulty_inversion_score([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert difficulty_inversion_score([0.5, 0.5], [True, False]) == 1.0  # a tie is not an inversion
    assert difficulty_inversion_score([0.1, 0.8, 0.9], [True, False, False]) == 0.0
    assert math.isnan(difficulty_inversion_score([0.1, 0.8], [True, True]))  # no hard instance


def test_folds_partition_the_examples_and_leave_each_fold_out_of_its_training_part(tiny_bert):
    examples = SstSentenceReader(tiny_bert).examples(str(TRAIN))
    lines = {example.line for example in examples}
    seen: list[int] = []
    for k in (1, 2, 3):
        fold = {e.line for e in held_out(examples, f"fold-{k}-of-3", 0.05, 2020)}
        rest = {e.line for e in held_out(examples, f"without-fold-{k}-of-3", 0.05, 2020)}
        assert not fold & rest and fold | rest == lines
        assert abs(len(fold) - len(examples) / 3) < 1
        seen += sorted(fold)
    assert sorted(seen) == sorted(lines)  # every example in exactly one fold


def test_the_dar_loss_is_added_for_instances_with_difficulty(tiny_bert):
    vocab = Vocabulary(tokens_to_add={"labels": ["a", "b"]})
    params = {
        "type": "sledge",
        "transformer_model": tiny_bert,
        "layer_indices": [0, 3],
        "dropout": 0.0,
        "difficulty_weight": 2.0,
        "difficulty_margin": 0.4,
    }
    model = Model.from_params(vocab=vocab, params=Params(dict(params))).train()
    ids = torch.randint(5, 90, (6, 7))
    tokens = {"tokens": {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}}
    labels, easy = torch.tensor([0, 1, 1, 0, 1, 0]), torch.tensor([1, 0, 1, 1, 0, 0])
    torch.manual_seed(1)  # the same dropout masks in the encoder in all three passes
    plain = model(**tokens, label=labels)["loss"]
    torch.manual_seed(1)
    regularised = model(**tokens, label=labels, difficulty=easy)["loss"]
    torch.manual_seed(1)
    with torch.no_grad():
        logits = model.core(ids, tokens["tokens"]["attention_mask"])
    margins = sum(difficulty_margin_loss(torch.softmax(z, -1).max(-1)[0], easy, 0.4) for z in logits)
    assert float((regularised - plain).detach()) == pytest.approx(2.0 * float(margins), rel=1e-5)
    with pytest.raises(SledgeError, match="a regression has none"):
        Model.from_params(vocab=vocab, params=Params({**params, "regression": True}))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> dict:
    """`allennlp difficulty-labels` with 2 folds and 2 seeds on the sentiment fixtures."""
    work = tmp_path_factory.mktemp("labels")
    backbone = build_tiny_bert(work / "tiny-bert", num_layers=6)
    overrides = {
        "dataset_reader.transformer_model": str(backbone),
        "model.transformer_model": str(backbone),
        "model.layer_indices": [5],
        "dataset_reader.dev_fraction": 0.25,  # development data from the training file, as for RTE
        "train_data_path": f"{TRAIN}#train",
        "validation_data_path": f"{TRAIN}#dev",
        "trainer.num_epochs": 1,
        "trainer.optimizer.lr": 1e-3,
        "data_loader.batch_sampler.batch_size": 8,
    }
    output = work / "difficulty.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        allennlp(
            "difficulty-labels",
            "training_config/sst2_minilm.jsonnet",
            "-o",
            json.dumps(overrides),
            "--folds",
            "2",
            "--seeds",
            "7",
            "8",
            "--label-also",
            str(TEST),
            "--output-file",
            str(output),
            "--work-dir",
            str(work / "folds"),
        )
    return {"work": work, "output": output, "overrides": overrides, "backbone": backbone}


def test_k_fold_labelling_labels_every_instance_once_without_leakage(labelled, tiny_bert):
    report = json.loads(labelled["output"].read_text())
    assert report["folds"] == 2 and report["seeds"] == [7, 8] and report["models_trained"] == 4
    reader = SstSentenceReader(tiny_bert, dev_fraction=0.25)
    # the training part across folds and the development part by prediction: every line of the file
    train_lines = [str(e.line) for e in reader.examples(str(TRAIN))]
    assert sorted(report["files"][str(TRAIN)]) == sorted(train_lines)
    assert set(report["files"][str(TRAIN)].values()) <= {"easy", "hard"}
    assert len(report["files"][str(TEST)]) == len(TEST.read_text().splitlines())
    development = {e.line for e in reader.examples(f"{TRAIN}#dev")}
    assert len(development) == round(0.25 * len(TRAIN.read_text().splitlines()))
    for k in (1, 2):  # each fold model trained on the other fold only, never on the development part
        config = json.loads(
            (labelled["work"] / "folds" / "seed-7" / f"fold-{k}-of-2" / "config.json").read_text()
        )
        trained_on = {e.line for e in reader.examples(config["train_data_path"])}
        held = {e.line for e in reader.examples(f"{TRAIN}#train#fold-{k}-of-2")}
        assert config["train_data_path"] == f"{TRAIN}#train#without-fold-{k}-of-2"
        assert trained_on and held and not trained_on & held and not trained_on & development


def right_by_seed(labelled, seed: int, data: str, fold: int | None = None) -> dict[str, bool]:
    """{line: whether the deepest exit of the fold model of `seed` is right}, from its archive."""
    from sledge.commands.common import full_pass, load_sledge_archive, tensor_batches

    models = [fold] if fold else [1, 2]
    right: dict[str, list[bool]] = {}
    for k in models:
        archive = load_sledge_archive(str(labelled["work"] / "folds" / f"seed-{seed}" / f"fold-{k}-of-2"
                                          / "model.tar.gz"))
        path = f"{data}#fold-{k}-of-2" if fold else data
        reader = archive.validation_dataset_reader
        logits, _, gold = full_pass(archive.model, tensor_batches(list(reader.read(path)), archive, 64,
                                                                 torch.device("cpu")))
        for example, ok in zip(reader.examples(path), (logits[-1].argmax(-1) == gold).tolist()):
            right.setdefault(str(example.line), []).append(ok)
    return {line: all(oks) for line, oks in right.items()}


def test_an_instance_is_easy_if_right_under_every_seed(labelled):
    """Recomputed from the kept fold models: a training line is judged by the model of each seed whose
    fold held it out; a line of the --label-also file by every model; easy if right under all."""
    report = json.loads(labelled["output"].read_text())
    disagree = 0
    for data in (f"{TRAIN}#train", str(TEST)):
        if data == str(TEST):
            seeds = {seed: right_by_seed(labelled, seed, data) for seed in (7, 8)}
        else:
            seeds = {seed: {**right_by_seed(labelled, seed, data, 1), **right_by_seed(labelled, seed,
                data, 2)}
                     for seed in (7, 8)}
        labels = report["files"][data.split("#")[0]]
        for line in seeds[7]:
            assert labels[line] == ("easy" if seeds[7][line] and seeds[8][line] else "hard"), (data, line)
        disagree += sum(seeds[7][line] != seeds[8][line] for line in seeds[7])
    assert disagree > 0, "the two seeds agree everywhere: the rule is not exercised"


def test_a_dar_run_reads_labels_for_its_training_and_development_parts(labelled, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    overrides = {
        **labelled["overrides"],
        "dataset_reader.difficulty_file": str(labelled["output"]),
        "model.difficulty_weight": 0.5,
        "model.difficulty_margin": 0.5,
    }
    batches = []
    forward = SledgeClassifier.forward

    def recording(self, tokens, label=None, metadata=None, difficulty=None):
        """Each training batch's difficulty, texts and loss, and its loss without the regularisation and
        every exit's logits, computed with the same dropout masks."""
        if not self.training:
            return forward(self, tokens, label, metadata, difficulty)
        state = torch.get_rng_state()
        output = forward(self, tokens, label, metadata, difficulty)
        with torch.no_grad():
            torch.set_rng_state(state)
            plain = forward(self, tokens, label, metadata, None)["loss"]
            torch.set_rng_state(state)
            logits = self.core(tokens["input_ids"], tokens["attention_mask"], tokens.get("token_type_ids"))
        batches.append({"difficulty": None if difficulty is None else difficulty.tolist(),
                        "texts": [m["text"] for m in metadata], "loss": float(output["loss"]),
                        "plain": float(plain), "logits": [z.detach() for z in logits]})
        return output

    monkeypatch.setattr(SledgeClassifier, "forward", recording)
    allennlp("train", "training_config/sst2_minilm.jsonnet", "-s", str(tmp_path / "dar"),
             "-o", json.dumps(overrides), "--include-package", "sledge")
    metrics = json.loads((tmp_path / "dar" / "metrics.json").read_text())
    assert math.isfinite(metrics["validation_loss"]) and 0.0 <= metrics["validation_accuracy"] <= 1.0
    # Every training batch carries the labels of the difficulty file, line by line ...
    labels = json.loads(labelled["output"].read_text())["files"][str(TRAIN)]
    reader = SstSentenceReader(str(labelled["backbone"]))
    by_text: dict[str, set[int]] = {}
    for example in reader.examples(f"{TRAIN}#train"):
        by_text.setdefault(example.text, set()).add(int(labels[str(example.line)] == "easy"))
    assert batches and all(batch["difficulty"] is not None for batch in batches)
    for batch in batches:
        assert all(easy in by_text[text] for easy, text in zip(batch["difficulty"], batch["texts"]))
    # ... and its loss is the plain loss plus the weight (0.5) times each exit's margin loss (margin 0.5),
    # the margin loss computed here from the exits' confidences
    mixed = 0
    for batch in batches:
        easy = np.array(batch["difficulty"], dtype=float)
        margins = 0.0
        for logits in batch["logits"]:
            confidence = torch.softmax(logits.double(), -1).max(-1)[0].numpy()
            g = easy[:, None] - easy[None, :]
            hinge = np.maximum(0.0, -g * (confidence[:, None] - confidence[None, :]) + 0.5)
            margins += hinge[g != 0].mean() if (g != 0).any() else 0.0
        mixed += bool((g != 0).any())
        assert batch["loss"] - batch["plain"] == pytest.approx(0.5 * margins, rel=1e-4, abs=1e-6)
    assert mixed > 0  # batches with an easy and a hard instance: the regularisation is not zero


def test_a_reader_attaches_the_labels_and_difficulty_reports_the_dis(
    labelled, trained_run, tmp_path, monkeypatch
):
    monkeypatch.chdir(ROOT)
    reader = SstSentenceReader(str(labelled["backbone"]), difficulty_file=str(labelled["output"]))
    instances = list(reader.read(str(TRAIN)))
    labels = json.loads(labelled["output"].read_text())["files"][str(TRAIN)]
    lines = [e.line for e in reader.examples(str(TRAIN))]
    assert [int(i["difficulty"].tensor) for i in instances] == [int(labels[str(n)] == "easy") for n in lines]
    assert all("difficulty" in i.fields for i in reader.read(str(TEST)))  # --label-also labelled TEST too
    output = tmp_path / "difficulty"
    allennlp(
        "difficulty",
        str(trained_run["archive"]),
        str(TEST),
        "--output-dir",
        str(output),
        "--difficulty-file",
        str(labelled["output"]),
    )
    report = json.loads((output / "difficulty.json").read_text())
    rows = [json.loads(line) for line in _predict(trained_run["archive"], tmp_path).read_text().splitlines()]
    test_labels = json.loads(labelled["output"].read_text())["files"][str(TEST)]
    easy = [test_labels[str(n + 1)] == "easy" for n in range(len(rows))]
    assert report["dis"][-1] == pytest.approx(
        difficulty_inversion_score([r["confidence"] for r in rows], easy)
    )
    assert "Difficulty Inversion Score" in (output / "difficulty.md").read_text()
    with pytest.raises(SledgeError, match="has no labels for"):
        allennlp(
            "difficulty",
            str(trained_run["archive"]),
            str(TRAIN),
            "--output-dir",
            str(tmp_path / "x"),
            "--difficulty-file",
            str(_only_test(labelled["output"], tmp_path)),
        )


def _predict(archive: Path, tmp_path: Path) -> Path:
    source, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text(
        "".join(
            json.dumps({"sentence": line.split(" ", 1)[1]}) + "\n" for line in TEST.read_text().splitlines()
        )
    )
    allennlp(
        "predict",
        str(archive),
        str(source),
        "--include-package",
        "sledge",
        "--silent",
        "--output-file",
        str(output),
    )
    return output


def _only_test(path: Path, tmp_path: Path) -> Path:
    report = json.loads(path.read_text())
    report["files"] = {str(TEST): report["files"][str(TEST)]}
    target = tmp_path / "only-test.json"
    target.write_text(json.dumps(report))
    return target


def test_selectors_compose_left_to_right(tiny_bert):
    reader = SstSentenceReader(tiny_bert)
    train = {e.line for e in reader.examples(f"{TRAIN}#train")}
    fold = {e.line for e in reader.examples(f"{TRAIN}#train#fold-1-of-2")}
    rest = {e.line for e in reader.examples(f"{TRAIN}#train#without-fold-1-of-2")}
    assert fold | rest == train and not fold & rest and fold and rest
