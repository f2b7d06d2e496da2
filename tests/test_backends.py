"""
Backends (torch, ONNX Runtime) x precisions (float32, int8 per token, int8 static): every prediction at
batch 1 equals batch 32 (file order and sorted by length) and continuous batching, on tiny random
BERT-like and MPNet models, at thresholds equal to observed statistics; ORT float32 predicts what torch
float32 does; int8 rows never depend on their batch; the ORT graph cache is keyed, whole and checked.
"""

import importlib.util
import json

import pytest
import torch
from transformers import BertConfig, MPNetConfig

from conftest import ROOT, SENTENCES, TEST, allennlp, mixed_batch, predict_lines, tiny_config, tiny_multi_exit
from sledge.errors import SledgeError
from sledge.nn import (
    Cascade,
    ConfidencePolicy,
    Int8Linear,
    LayerBatcher,
    LayerwiseEncoder,
    MultiExitClassifier,
    activation_ranges,
    all_exits,
    backend_of,
    early_exit,
    quantize_int8,
    quantize_int8_rows,
    use_backend,
)
from sledge.nn.backends import ort_backend

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
NEEDS_ORT = pytest.mark.skipif(
    not HAS_ORT, reason="onnxruntime is not installed (pip install 'sledge[onnx]')"
)
BACKENDS = ["torch", pytest.param("onnxruntime", marks=NEEDS_ORT)]
PRECISIONS = ["float32", "int8", "int8-static"]
LAYERS = [0, 1, 3]  # exits of the tiny 4-layer models
PADDING = {"bert": 0, "mpnet": 1}


def tiny_model(family: str, seed: int = 0) -> MultiExitClassifier:
    """A tiny random 4-layer model with exits on 0, 1, 3, its heads scaled up so that exits disagree."""
    torch.manual_seed(seed)
    sizes = dict(
        vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=4
    )
    config = BertConfig(**sizes) if family == "bert" else MPNetConfig(**sizes, max_position_embeddings=64)
    model = MultiExitClassifier(LayerwiseEncoder(config=config), LAYERS, 3, pooling="mean").eval()
    for head in model.exits:
        head.classifier.weight.data.mul_(6.0)
    model.temperatures.copy_(torch.tensor([1.0, 1.2, 0.9]))
    return model


def rows(family: str, size: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random rows of 3 to 24 tokens: (input_ids, attention_mask)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 25, (size,), generator=generator)
    mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
    ids = torch.randint(5, 100, mask.shape, generator=generator) * mask + PADDING[family] * (1 - mask)
    return ids, mask


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> str:
    """One ONNX cache for the module: each model's graphs are exported once."""
    return str(tmp_path_factory.mktemp("onnx-cache"))


def prepared(family: str, backend: str, precision: str, cache: str) -> MultiExitClassifier:
    model = tiny_model(family)
    if precision == "int8":
        quantize_int8_rows(model)
    elif precision == "int8-static":
        ids, mask = rows(family, seed=5)  # calibration rows, not the test rows
        scales = activation_ranges(model, lambda: model.forward_all(ids, mask))
        quantize_int8_rows(model, scales)
    options = {"cache_dir": cache} if backend == "onnxruntime" else {}
    return use_backend(model, backend, **options)


def observed_threshold(model: MultiExitClassifier, ids: torch.Tensor, mask: torch.Tensor) -> float:
    """
    An observed statistic as the threshold: the calibrated confidence at the first exit of the least
    sure of the longest rows, so that all of them leave there (and the padding is cut for the rest),
    less 1e-6: float32 sums come out a few ulps apart at other batch sizes (in torch too), and no row
    should sit on the threshold to the last bit. No other row's statistic is that near it.
    """
    logits, _ = all_exits(model, ids, mask)
    confidence = torch.softmax(logits[0] / model.temperatures[0], dim=-1).max(dim=-1)[0]
    lengths = mask.sum(dim=1)
    threshold = float(confidence[lengths == lengths.max()].min()) - 1e-6
    assert int(((confidence - threshold).abs() < 1e-5).sum()) == 1
    return threshold


def batch_1(model, ids, mask, policy) -> list[tuple[int, int]]:
    answers = []
    for row in range(len(ids)):
        n = int(mask[row].sum())
        one = early_exit(model, ids[row : row + 1, :n], mask[row : row + 1, :n], policy=policy)
        answers.append((int(one.exit_index), int(one.logits.argmax())))
    return answers


def batched(model, ids, mask, policy, order: list[int], size: int = 32) -> list[tuple[int, int]]:
    """Batches of `size` rows taken in `order`, each cut to its longest row; answers in row order."""
    answers: dict[int, tuple[int, int]] = {}
    for start in range(0, len(order), size):
        chosen = order[start : start + size]
        width = int(mask[chosen].sum(dim=1).max())
        result = early_exit(model, ids[chosen, :width], mask[chosen, :width], policy=policy)
        for position, row in enumerate(chosen):
            answers[row] = (int(result.exit_index[position]), int(result.logits[position].argmax()))
    return [answers[row] for row in range(len(ids))]


def continuous(model, ids, mask, policy) -> list[tuple[int, int]]:
    """Requests of 5 rows join a `LayerBatcher` (8 rows a call) while earlier ones are in flight."""
    batcher = LayerBatcher(model, policy, max_rows=8)
    answers: dict[int, tuple[int, int]] = {}
    for start in range(0, len(ids), 5):
        chosen = list(range(start, min(start + 5, len(ids))))
        width = int(mask[chosen].sum(dim=1).max())
        batcher.add(chosen, ids[chosen, :width], mask[chosen, :width])
        for done in batcher.step():
            answers[done.key] = (done.exit_index, int(done.logits.argmax()))
    while len(batcher):
        for done in batcher.step():
            answers[done.key] = (done.exit_index, int(done.logits.argmax()))
    return [answers[row] for row in range(len(ids))]


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_batch_1_equals_batch_32_sorted_and_continuous(family, backend, precision, graphs):
    model = prepared(family, backend, precision, graphs)
    assert backend_of(model).name == backend
    ids, mask = rows(family)
    policy = ConfidencePolicy(observed_threshold(model, ids, mask))
    alone = batch_1(model, ids, mask, policy)
    in_order = batched(model, ids, mask, policy, list(range(len(ids))))
    by_length = batched(model, ids, mask, policy, sorted(range(len(ids)), key=lambda r: int(mask[r].sum())))
    layered = continuous(model, ids, mask, policy)
    assert in_order == alone
    assert by_length == alone
    assert layered == alone
    exits = [exit_index for exit_index, _ in alone]
    assert len(set(exits)) >= 2, "the threshold should send rows to at least two exits"
    assert 0 < exits.count(0) < len(exits), "some rows should leave at the first exit, some go on"
    if backend == "torch":  # after the first exit the layers ran on fewer rows, with less padding
        calls = []
        hooks = [
            m.register_forward_hook(lambda _m, args, _o: calls.append(tuple(args[0].shape[:2])))
            for m in model.encoder.layer_modules()
        ]
        width = int(mask[:32].sum(dim=1).max())
        early_exit(model, ids[:32, :width], mask[:32, :width], policy=policy)
        for hook in hooks:
            hook.remove()
        assert calls[0] == (32, width) and calls[-1][0] < 32 and calls[-1][1] < width


def differing_thresholds(model, ids, mask) -> tuple[int, int, set[int]]:
    """
    At every threshold just under an observed statistic (each row's batch-1 calibrated confidence at
    each exit but the last, less 1e-6: float32 rounding of the parts int8 leaves in float, a few ulps,
    must not decide), how many thresholds give other answers at batch 32 (file order or sorted by
    length) than at batch 1; the thresholds tried; the exits the answers used.
    """
    thresholds = set()
    for row in range(len(ids)):
        n = int(mask[row].sum())
        logits = all_exits(model, ids[row : row + 1, :n], mask[row : row + 1, :n])[0][:-1]
        for position, exit_logits in enumerate(logits):
            confidence = torch.softmax(exit_logits / model.temperatures[position], dim=-1).max()
            thresholds.add(float(confidence) - 1e-6)
    by_length = sorted(range(len(ids)), key=lambda r: int(mask[r].sum()))
    differing, used = 0, set()
    for threshold in sorted(thresholds):
        policy = ConfidencePolicy(threshold)
        alone = batch_1(model, ids, mask, policy)
        in_order = batched(model, ids, mask, policy, list(range(len(ids))))
        differing += in_order != alone or batched(model, ids, mask, policy, by_length) != alone
        used |= {exit_index for exit_index, _ in alone}
    return differing, len(thresholds), used


@pytest.mark.parametrize("precision", ["int8", "int8-static"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_answers_equal_batch_1_at_every_observed_statistic(backend, precision, graphs):
    model = prepared("bert", backend, precision, graphs)
    ids, mask = rows("bert", 24, seed=3)
    first, last = (logits.argmax(dim=-1) for logits in all_exits(model, ids, mask)[0][::2])
    assert (first != last).any() and (first == last).any(), "the exits should disagree on some rows"
    differing, tried, used = differing_thresholds(model, ids, mask)
    assert tried == 2 * len(ids)
    assert used == {0, 1, 2}
    assert differing == 0


def logits_differing_from_batch_1(model, ids, mask, types) -> int:
    """How many (row, exit) logits of one batched pass are not bit for bit those of the row alone."""
    batched = all_exits(model, ids, mask, types)[0]
    alone = [all_exits(model, *(x[r : r + 1, : int(mask[r].sum())] for x in (ids, mask, types)))[0]
             for r in range(len(ids))]
    return sum(not torch.equal(batched[e][r], alone[r][e][0])
               for r in range(len(ids)) for e in range(len(batched)))


@pytest.mark.parametrize("head", ["linear", "attention"])
@pytest.mark.parametrize("family", ["bert", "mpnet", "distilbert", "albert", "bert-relative"])
def test_torch_int8_logits_at_batch_32_are_batch_1_logits_to_the_last_bit(family, head):
    """Every exit's logits, not only answers (int8 turns a last-bit change into a rounding step). BERT
    with relative position embeddings runs its whole attention block row by row."""
    config = (tiny_config("bert", num_layers=4, position_embedding_type="relative_key")
              if family == "bert-relative" else tiny_config(family, num_layers=4))
    model = quantize_int8_rows(tiny_multi_exit(head=head, layers=(0, 1, 3), config=config))
    assert logits_differing_from_batch_1(model, *mixed_batch(32, seed=4, config=config)) == 0


@pytest.mark.parametrize("family", ["bert", "mpnet"])
def test_without_row_by_row_attention_torch_int8_logits_move_with_the_batch(family):
    """The control: the int8 linear layers alone (the row-by-row attention blocks taken out again, so
    attention and pooling run batched over the padding), and the same check finds logits whose last
    bits moved."""
    config = tiny_config(family, num_layers=4)
    model = quantize_int8_rows(tiny_multi_exit(layers=(0, 1, 3), config=config))
    for parent, name, _ in model.encoder.attention_blocks():
        setattr(parent, name, getattr(parent, name).inner)
    assert logits_differing_from_batch_1(model, *mixed_batch(32, seed=4, config=config)) > 0


def test_the_same_check_catches_pytorch_dynamic_int8_whose_scales_depend_on_the_batch():
    model = quantize_int8(tiny_model("bert"))  # one activation scale per batch (model.quantize int8-dynamic)
    ids, mask = rows("bert", 24, seed=3)
    differing, tried, _ = differing_thresholds(model, ids, mask)
    assert differing > 0


@pytest.mark.parametrize("family", ["bert", "mpnet"])
@NEEDS_ORT
def test_onnxruntime_float32_predicts_what_torch_does(family, graphs):
    torch_model = tiny_model(family)
    ort_model = use_backend(tiny_model(family), "onnxruntime", cache_dir=graphs)
    ids, mask = rows(family)
    policy = ConfidencePolicy(observed_threshold(torch_model, ids, mask))
    expected = early_exit(torch_model, ids, mask, policy=policy)
    got = early_exit(ort_model, ids, mask, policy=policy)
    assert torch.equal(got.exit_index, expected.exit_index)
    assert torch.equal(got.logits.argmax(dim=-1), expected.logits.argmax(dim=-1))
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    assert len(set(expected.exit_index.tolist())) >= 2


@NEEDS_ORT
def test_onnxruntime_int8_computes_torch_int8(graphs):
    torch_model = quantize_int8_rows(tiny_model("bert"))
    ort_model = use_backend(quantize_int8_rows(tiny_model("bert")), "onnxruntime", cache_dir=graphs)
    ids, mask = rows("bert")
    expected, got = all_exits(torch_model, ids, mask)[0], all_exits(ort_model, ids, mask)[0]
    for want, have in zip(expected, got):
        torch.testing.assert_close(have, want, atol=1e-3, rtol=1e-3)
        assert torch.equal(have.argmax(dim=-1), want.argmax(dim=-1))


def test_an_int8_row_is_computed_alike_whatever_its_batch():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 16)
    inputs = torch.randn(6, 64)
    loud = torch.cat([inputs, 50 * torch.randn(3, 64)])  # other rows (or padding) with far larger values
    for static in (None, 4.0 / 127):  # per token; a static scale (inputs up to about 4)
        quantized = Int8Linear(layer, static)
        alone = torch.cat([quantized(inputs[i : i + 1]) for i in range(len(inputs))])
        assert torch.equal(quantized(inputs), alone)
        assert torch.equal(quantized(loud)[: len(inputs)], alone)
        assert (quantized(inputs) - layer(inputs)).abs().max() < 0.05  # and it is int8 of this layer
    # PyTorch's dynamic int8 scales activations per batch: the same rows come out otherwise.
    dynamic = quantize_int8(torch.nn.Sequential(layer))
    assert not torch.allclose(dynamic(loud)[: len(inputs)], dynamic(inputs))


def test_every_plain_linear_layer_becomes_int8_with_static_or_per_token_scales():
    model = tiny_model("bert")
    ids, mask = rows("bert")
    scales = activation_ranges(model, lambda: model.forward_all(ids, mask))
    assert scales.pop("encoder.transformer.pooler.dense") == 0.0  # never run
    assert all(value > 0 for value in scales.values())
    scales["encoder.transformer.pooler.dense"] = 0.0
    quantize_int8_rows(model, scales)
    int8 = [m for m in model.modules() if isinstance(m, Int8Linear)]
    assert not [m for m in model.modules() if type(m) is torch.nn.Linear]
    assert len(int8) == 4 * 6 + 1 + 3 and all(m.static for m in int8)  # layers, pooler, heads
    with pytest.raises(ValueError, match="no calibrated activation range for layer"):
        quantize_int8_rows(tiny_model("bert"), {"encoder.transformer.pooler.dense": 1.0})  # another model's


@NEEDS_ORT
def test_a_cascade_runs_its_members_on_the_backend(graphs):
    members = [
        MultiExitClassifier(tiny_model("bert", seed).encoder, [k], 3).eval() for seed, k in ((1, 1), (2, 3))
    ]
    cascade = Cascade(members).eval()
    ids, mask = rows("bert", 16)
    expected = early_exit(cascade, ids, mask, threshold=0.5)
    use_backend(cascade, "onnxruntime", cache_dir=graphs)
    assert all(backend_of(member).name == "onnxruntime" for member in cascade.members)
    got = early_exit(cascade, ids, mask, threshold=0.5)
    assert torch.equal(got.exit_index, expected.exit_index)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)


@NEEDS_ORT
def test_the_graph_cache_is_reused_keyed_by_the_model_whole_and_checked(tmp_path, monkeypatch):
    model = use_backend(tiny_model("bert"), "onnxruntime", cache_dir=str(tmp_path))
    ids, mask = rows("bert", 4)
    expected = all_exits(model, ids, mask)[0]
    folder = backend_of(model).directory
    files = sorted(path.name for path in folder.iterdir())
    assert files == [  # whole graphs only: no partial file is left
        "embed.onnx", "exit-0.onnx", "exit-1.onnx", "exit-2.onnx", "layers-0-0.onnx", "layers-0-3.onnx",
        "layers-1-1.onnx", "layers-2-3.onnx",
    ]
    # The same model again: every graph comes from the cache, none is exported.
    exported = []
    original = ort_backend.OnnxRuntimeBackend._export
    monkeypatch.setattr(
        ort_backend.OnnxRuntimeBackend,
        "_export",
        lambda self, name, path: exported.append(name) or original(self, name, path),
    )
    # (read from another folder, as an archive unpacked again into a new temporary one)
    again = tiny_model("bert")
    again.encoder.config._name_or_path = str(tmp_path / "elsewhere")
    use_backend(again, "onnxruntime", cache_dir=str(tmp_path))
    assert backend_of(again).directory == folder
    for want, have in zip(expected, all_exits(again, ids, mask)[0]):
        assert torch.equal(want, have)
    assert exported == []
    # Other weights: another key, so the first model's graphs are never used for it.
    changed = tiny_model("bert")
    changed.exits[0].classifier.bias.data.add_(1.0)
    use_backend(changed, "onnxruntime", cache_dir=str(tmp_path))
    assert backend_of(changed).directory != folder
    # A cached graph that no longer computes the model (here: another exit's) is exported again.
    exported.clear()
    (folder / "exit-0.onnx").write_bytes((folder / "exit-2.onnx").read_bytes())
    stale = use_backend(tiny_model("bert"), "onnxruntime", cache_dir=str(tmp_path))
    torch.testing.assert_close(all_exits(stale, ids, mask)[0][0], expected[0])
    assert exported == ["exit-0"]


def standard_model(seed: int = 0) -> MultiExitClassifier:
    """A tiny random standard model: one exit, a linear head on the last layer's mean, as the benchmark's."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=4
    )
    return MultiExitClassifier(LayerwiseEncoder(config=config), [3], 2, pooling="mean").eval()


@NEEDS_ORT
def test_a_single_exit_int8_model_runs_on_onnxruntime_and_a_graph_ort_cannot_load_is_handled(
    tmp_path, monkeypatch
):
    # The standard model on ORT int8 (the sweep's reference line): its pieces export, load and check,
    # and they compute torch's int8, every row as at batch 1.
    model = use_backend(quantize_int8_rows(standard_model()), "onnxruntime", cache_dir=str(tmp_path))
    folder = backend_of(model).directory
    assert sorted(path.name for path in folder.iterdir()) == ["embed.onnx", "exit-0.onnx", "layers-0-3.onnx"]
    ids, mask = rows("bert")
    expected = all_exits(quantize_int8_rows(standard_model()), ids, mask)[0][0]
    got = all_exits(model, ids, mask)[0][0]
    torch.testing.assert_close(got, expected, atol=1e-3, rtol=1e-3)
    assert torch.equal(got.argmax(dim=-1), expected.argmax(dim=-1))
    never = ConfidencePolicy(1.0)
    assert batched(model, ids, mask, never, list(range(len(ids)))) == batch_1(model, ids, mask, never)
    # ORT may fail to load a graph with an exception that has no message at all (the benchmark's crash:
    # the error handler took the first line of an empty message and raised IndexError instead).
    import onnxruntime

    original, failures, exported = onnxruntime.InferenceSession, [], []

    def flaky(path, *args, **kwargs):
        if path.endswith("layers-0-3.onnx") and failures:
            failures.pop()
            raise RuntimeError()
        return original(path, *args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", flaky)
    export = ort_backend.OnnxRuntimeBackend._export
    monkeypatch.setattr(
        ort_backend.OnnxRuntimeBackend,
        "_export",
        lambda self, name, path: exported.append(name) or export(self, name, path),
    )
    failures[:] = [1]  # a cached graph that does not load once: exported again, then it runs
    again = use_backend(quantize_int8_rows(standard_model()), "onnxruntime", cache_dir=str(tmp_path))
    assert exported == ["layers-0-3"] and not failures
    assert torch.equal(all_exits(again, ids, mask)[0][0], got)
    failures[:] = [1, 1]  # neither the cached graph nor the one exported again loads: a one-line error
    with pytest.raises(SledgeError) as error:
        use_backend(quantize_int8_rows(standard_model()), "onnxruntime", cache_dir=str(tmp_path))
    assert str(error.value) == (
        f"onnxruntime backend: piece layers-0-3 ({folder / 'layers-0-3.onnx'}) cannot be loaded by "
        "onnxruntime: RuntimeError (no message)"
    )


@NEEDS_ORT
def test_a_graph_that_does_not_match_torch_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ort_backend, "TOLERANCE", -1.0)  # nothing can match now
    with pytest.raises(SledgeError) as error:
        use_backend(tiny_model("bert"), "onnxruntime", cache_dir=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message and message.startswith("onnxruntime backend: piece embed (")
    assert "embed.onnx) differs from torch on the check inputs: max |hidden difference|" in message


@NEEDS_ORT
@pytest.mark.parametrize("int8", [False, True])
def test_the_check_tells_another_model_s_graph_from_the_model_s_own(tmp_path, int8):
    """Each piece's graph passes its own model's check; the graph of the same architecture with other
    weights fails it, in fp32 (max rule) and in int8 (median rule), on every piece."""
    models = [tiny_model("mpnet", seed) for seed in (0, 1)]
    if int8:
        models = [quantize_int8_rows(model) for model in models]
    own, other = (backend_of(use_backend(model, "onnxruntime", cache_dir=str(tmp_path / str(i))))
                  for i, model in enumerate(models))
    assert own.precision == ("int8" if int8 else "float32")
    for name, session in own.sessions.items():
        assert own._check(name, session) == ""
        assert "differs from torch on the check inputs" in other._check(name, session), name


def test_bad_backend_settings_are_clear_errors():
    with pytest.raises(SledgeError, match="model.backend must be one of torch, onnxruntime, got 'tvm'"):
        use_backend(tiny_model("bert"), "tvm")
    with pytest.raises(SledgeError, match="model.backend_options"):
        use_backend(tiny_model("bert"), "torch", threads=2)
    if HAS_ORT:
        with pytest.raises(SledgeError, match="optimization must be one of disable, basic, extended, all"):
            use_backend(tiny_model("bert"), "onnxruntime", optimization="max")


# ---------------------------------------------------------------------------------------------------
# Through AllenNLP: -o '{"model.backend": ...}' and the int8 settings on a trained tiny archive


@pytest.fixture
def in_root(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SLEDGE_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def calibrated(trained_run, tmp_path_factory):
    """The tiny trained archive calibrated: temperatures and the static int8 scales (int8_scales.json)."""
    archive = tmp_path_factory.mktemp("calibrated") / "calibrated.tar.gz"
    allennlp("calibrate", str(trained_run["archive"]), str(TEST), "--output-file", str(archive))
    return archive


@pytest.mark.parametrize(
    "backend,quantize",
    [
        ("torch", "int8"),
        pytest.param("onnxruntime", None, marks=NEEDS_ORT),
        pytest.param("onnxruntime", "int8", marks=NEEDS_ORT),
        pytest.param("onnxruntime", "int8-static", marks=NEEDS_ORT),
    ],
)
def test_predict_on_a_backend_gives_batch_1_answers_batched(
    trained_run, calibrated, tmp_path, in_root, backend, quantize
):
    archive = calibrated if quantize == "int8-static" else trained_run["archive"]
    first = predict_lines(
        archive,
        SENTENCES,
        tmp_path / "first.jsonl",
        "-o",
        json.dumps({"model.confidence_threshold": 0.0, "model.quantize": quantize}),
    )
    median = sorted(row["confidence"] for row in first)[len(first) // 2]  # an observed statistic
    overrides = json.dumps(
        {"model.backend": backend, "model.quantize": quantize, "model.confidence_threshold": median}
    )
    one = predict_lines(archive, SENTENCES, tmp_path / "one.jsonl", "-o", overrides)
    many = predict_lines(archive, SENTENCES, tmp_path / "many.jsonl", "-o", overrides, "--batch-size", "8")
    answers = [(row["exit_layer"], row["label"]) for row in one]
    assert answers == [(row["exit_layer"], row["label"]) for row in many]
    assert len({layer for layer, _ in answers}) >= 2
    if backend == "onnxruntime" and quantize is None:  # float32 ORT answers what float32 torch does
        plain = predict_lines(
            archive,
            SENTENCES,
            tmp_path / "torch.jsonl",
            "-o",
            json.dumps({"model.confidence_threshold": median}),
        )
        assert answers == [(row["exit_layer"], row["label"]) for row in plain]
        torch.testing.assert_close(
            torch.tensor([r["probs"] for r in one]),
            torch.tensor([r["probs"] for r in plain]),
            atol=1e-4,
            rtol=1e-4,
        )


def test_int8_static_without_calibration_and_unknown_settings_are_clear_errors(
    trained_run, tmp_path, in_root
):
    archive = trained_run["archive"]
    with pytest.raises(
        SledgeError, match="int8-static' needs the activation scales that `allennlp calibrate`"
    ):
        predict_lines(
            archive, SENTENCES[:2], tmp_path / "a.jsonl", "-o", json.dumps({"model.quantize": "int8-static"})
        )
    with pytest.raises(SledgeError, match="model.backend must be one of torch, onnxruntime, got 'tvm'"):
        predict_lines(
            archive, SENTENCES[:2], tmp_path / "b.jsonl", "-o", json.dumps({"model.backend": "tvm"})
        )


def test_the_sweep_measures_int8_static_beside_fp32_and_names_an_uncalibrated_baseline(
    calibrated, single_exit_runs, tmp_path, in_root
):
    output = tmp_path / "sweep"
    common = ["--repeats", "1", "--thresholds", "0", "1", "--timing-instances", "4"]
    allennlp("sweep", str(calibrated), str(TEST), "--output-dir", str(output), *common,
             "--precision", "fp32", "int8-static")
    report = json.loads((output / "sweep.json").read_text())
    rows = report["rows"]
    assert {"sledge:confidence@1", "sledge int8-static:confidence@1"} <= {row["name"] for row in rows}
    assert report["info"]["precisions"] == ["fp32", "int8-static"]
    # what the sweep measured under int8-static is what predict answers with the archive's static scales
    at_1 = next(row for row in rows if row["name"] == "sledge int8-static:confidence@1")
    overrides = {"model.quantize": "int8-static", "model.confidence_threshold": 1.0}
    predicted = predict_lines(calibrated, SENTENCES, tmp_path / "static.jsonl", "-o", json.dumps(overrides))
    gold = [int(line.split(" ", 1)[0]) for line in TEST.read_text().splitlines()]
    assert at_1["accuracy"] == pytest.approx(
        sum(int(row["label"]) == label for row, label in zip(predicted, gold)) / len(gold)
    )
    with pytest.raises(SledgeError, match=f"--precision int8-static: {single_exit_runs[5]}: .*calibrate it"):
        allennlp("sweep", str(calibrated), str(TEST), "--output-dir", str(tmp_path / "bad"), *common,
                 "--precision", "int8-static", "--baseline", f"standard={single_exit_runs[5]}")
