"""The ONNX Runtime backend: the model's pieces exported once with `torch.onnx.export`, cached, run by ORT."""

import copy
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sledge.errors import SledgeError
from sledge.nn.backends.base import Backend

EXPORT_VERSION = 1  # part of every cache key: raise it when what is exported changes
OPSET = 17
OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
# How far ORT's outputs may lie from torch's on the check inputs, for each output of each piece, with
# scale = max(1, max |torch|): fp32, max |ORT - torch| <= TOLERANCE x scale. int8 pieces are checked
# against the same int8 model in torch, where a value on a rounding boundary may round the other way in
# one of them, and the difference spreads through the rest of its row in the later layers (MPNet's
# 4-layer piece: one token 2.4 off where the outputs reach 4.16, the median element 5e-7 off); so for
# int8 the median |ORT - torch| must be within TOLERANCE x scale and the max within the scale itself. A
# graph of other weights or wiring differs by the outputs' own scale nearly everywhere.
TOLERANCE = 1e-3
_NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def cache_root() -> Path:
    """Where exported graphs are kept: `$SLEDGE_CACHE/onnx`, by default `~/.cache/sledge/onnx`."""
    root = os.environ.get("SLEDGE_CACHE") or Path.home() / ".cache" / "sledge"
    return Path(root) / "onnx"


def fingerprint(model: nn.Module) -> str:
    """
    A hash of everything an exported graph depends on: the module tree (sizes, int8 settings), the
    encoder's config (not the folder it was read from), the exits' layers and pooling, and every weight
    and buffer, byte for byte. Any change to the model gives another hash, so a cached graph of another
    model is never found; the same model loaded again (from an archive, into a new temporary folder)
    gives the same hash, so its graphs are found.
    """
    digest = hashlib.sha256()
    config = json.loads(model.encoder.config.to_json_string())
    config.pop("_name_or_path", None)  # where the backbone was read from: an archive's is a new temp folder
    described = {
        "modules": repr(model),
        "config": config,
        "layer_indices": model.layer_indices,
        "pooling": model.pooling,
        "regression": model.regression,
    }
    digest.update(json.dumps(described, sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _Embed(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        types = token_type_ids if self.model.encoder.takes_token_types else None
        return self.model.encoder.embed(input_ids, attention_mask, types)[0]


class _Segment(nn.Module):
    """Layers `first`..`last`: the hidden states after `last`, the pooled vectors after each, stacked."""

    def __init__(self, model: nn.Module, first: int, last: int) -> None:
        super().__init__()
        self.model, self.first, self.last = model, first, last

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        mask = self.model.encoder.layer_mask(attention_mask, hidden.dtype)
        pooled = []
        for index in range(self.first, self.last + 1):
            hidden = self.model.encoder.layer(index, hidden, mask)
            pooled.append(self.model.pool(hidden, attention_mask))
        return hidden, torch.stack(pooled)


class _Exit(nn.Module):
    """Exit `position`: logits (and certainty) from the stacked pooled vectors of layers 0..its layer."""

    def __init__(self, model: nn.Module, position: int) -> None:
        super().__init__()
        self.model, self.position = model, position

    def forward(self, pooled: torch.Tensor, hidden: torch.Tensor, attention_mask: torch.Tensor):
        head = self.model.exits[self.position]
        features = head.features(list(pooled.unbind(0)), hidden, attention_mask)
        if self.model.lte is None:
            return head.classify(features)
        return head.classify(features), self.model.certainty(features)


class OnnxRuntimeBackend(Backend):
    """
    Runs the model's pieces with ONNX Runtime on the CPU: the embeddings, each segment of layers the
    runner asks for (by default the layers between two exits; one layer at a time for continuous
    batching) and each exit head are exported with `torch.onnx.export` (legacy exporter, opset 17,
    dynamic rows and length) the first time they are needed and kept in `cache_dir`, under a key made
    of the model's `fingerprint` (weights, architecture, int8 settings) and the export settings; a
    graph is written to a temporary name and renamed, so a cache holds whole graphs only, and a
    changed model never finds another's. Every piece is checked when its session starts: its outputs
    on fixed inputs (two rows of other lengths than the export's, padding included) must match the
    model's own torch modules within `TOLERANCE`, else a one-line `SledgeError` (a cached graph that
    fails is exported again once first). An int8 model (`Int8Linear` layers) exports its products as
    `MatMulInteger`, so ORT runs the same batch-invariant int8 arithmetic as torch.

    Parameters
    ----------
    model : `MultiExitClassifier`
        The model, on the CPU, in evaluation mode (float32, or quantized by `quantize_int8_rows`).
    threads : `int`, optional
        Intra-op threads of each session; by default torch's (`torch.get_num_threads()`).
    optimization : `str`, optional (default = `"all"`)
        ORT's graph optimisation level: `disable`, `basic`, `extended` or `all`.
    io_binding : `bool`, optional (default = `False`)
        Bind inputs and outputs to ORT's buffers (`run_with_iobinding`) instead of `run`.
    spinning : `bool`, optional (default = `False`)
        Let idle intra-op threads spin (`session.intra_op.allow_spinning`); with several sessions on
        few cores, spinning pools steal each other's time.
    cache_dir : `str`, optional
        Where graphs are kept; by default `cache_root()` (`$SLEDGE_CACHE/onnx`).
    eager : `bool`, optional (default = `True`)
        Start (and check) the pieces the batched runner uses when the backend is made, rather than
        when first needed (`prepare`).
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: nn.Module,
        threads: int | None = None,
        optimization: str = "all",
        io_binding: bool = False,
        spinning: bool = False,
        cache_dir: str | None = None,
        eager: bool = True,
    ) -> None:
        super().__init__(model)
        try:
            import onnxruntime
        except ImportError:
            raise SledgeError(
                "model.backend 'onnxruntime' needs the onnxruntime package: pip install 'sledge[onnx]' "
                "(or `make install`)"
            ) from None
        if any(tensor.is_cuda for tensor in model.state_dict().values()):
            raise SledgeError(
                "model.backend 'onnxruntime' runs on the CPU; load the model with --cuda-device -1"
            )
        if optimization not in OPTIMIZATION_LEVELS:
            raise SledgeError(
                f"backend option optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                f"got {optimization!r}"
            )
        self.ort = onnxruntime
        self.threads = threads or torch.get_num_threads()
        self.optimization, self.io_binding, self.spinning = optimization, io_binding, spinning
        self.precision = (
            "int8" if any(type(m).__name__ == "Int8Linear" for m in model.modules()) else "float32"
        )
        settings = (
            f"v{EXPORT_VERSION} opset{OPSET} torch {torch.__version__} onnxruntime {onnxruntime.__version__}"
        )
        key = hashlib.sha256(f"{fingerprint(model)} {settings}".encode()).hexdigest()[:40]
        self.directory = Path(cache_dir) if cache_dir else cache_root()
        self.directory = self.directory / key
        self.sessions: dict[str, Any] = {}
        self._checks = self._check_inputs()
        if eager:
            self.prepare()

    # ----------------------------------------------------------------------------------------------
    # The Backend interface

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self._run("embed", feeds)[0]

    def layers(
        self, first: int, last: int, hidden: torch.Tensor, mask: Any, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden, pooled = self._run(
            f"layers-{first}-{last}", {"hidden": hidden, "attention_mask": attention_mask}
        )
        return hidden, list(pooled.unbind(0))

    def exit(
        self, position: int, pooled: list[torch.Tensor], hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        layer = self.model.layer_indices[position]
        feeds = {
            "pooled": torch.stack(pooled[: layer + 1]),
            "hidden": hidden,
            "attention_mask": attention_mask,
        }
        outputs = self._run(f"exit-{position}", feeds)
        return outputs[0], (outputs[1] if len(outputs) > 1 else None)

    def prepare(self, per_layer: bool = False) -> None:
        """Start (exporting where not cached, and checking) the embeddings, every exit, the segments from
        one exit to the next and from the first layer to the last exit; with `per_layer`, every layer."""
        layers = self.model.layer_indices
        names = ["embed", f"layers-0-{layers[-1]}"]
        names += [f"layers-{0 if j == 0 else layers[j - 1] + 1}-{layer}" for j, layer in enumerate(layers)]
        names += [f"exit-{position}" for position in range(len(layers))]
        if per_layer:
            names += [f"layers-{layer}-{layer}" for layer in range(layers[-1] + 1)]
        for name in dict.fromkeys(names):
            self._session(name)

    def describe(self) -> str:
        return (
            f"onnxruntime {self.ort.__version__} ({self.precision}, optimization {self.optimization}, "
            f"io binding {'on' if self.io_binding else 'off'}, spinning {'on' if self.spinning else 'off'}, "
            f"{self.threads} threads)"
        )

    def __deepcopy__(self, memo: dict) -> "OnnxRuntimeBackend":
        """A copy for a copy of the model (sessions are not copied: they start again, from the cache)."""
        copied = copy.copy(self)
        copied.model = copy.deepcopy(self.model, memo)
        copied.sessions = {}
        return copied

    # ----------------------------------------------------------------------------------------------
    # Pieces: export, cache, check, run

    def _piece(self, name: str) -> tuple[nn.Module, list[str], list[str]]:
        """The torch module of piece `name` (in evaluation mode: the exporter restores the mode it finds,
        recursively), its input names and its output names."""
        model = self.model
        if name == "embed":
            return _Embed(model).eval(), ["input_ids", "attention_mask", "token_type_ids"], ["hidden"]
        if name.startswith("layers-"):
            first, last = map(int, name.split("-")[1:])
            return _Segment(model, first, last).eval(), ["hidden", "attention_mask"], ["hidden_out", "pooled"]
        position = int(name.split("-")[1])
        outputs = ["logits"] if model.lte is None else ["logits", "certainty"]
        return _Exit(model, position).eval(), ["pooled", "hidden", "attention_mask"], outputs

    def _inputs_for(self, name: str, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Realistic inputs of piece `name` for these ids: what the torch pieces before it compute."""
        model = self.model
        with torch.no_grad():
            hidden = _Embed(model)(ids, mask, torch.zeros_like(ids))
            if name == "embed":
                return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
            if name.startswith("layers-"):
                first = int(name.split("-")[1])
                if first > 0:
                    hidden = _Segment(model, 0, first - 1)(hidden, mask)[0]
                return {"hidden": hidden, "attention_mask": mask}
            layer = model.layer_indices[int(name.split("-")[1])]
            hidden, pooled = _Segment(model, 0, layer)(hidden, mask)
            return {"pooled": pooled, "hidden": hidden, "attention_mask": mask}

    def _check_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Fixed check rows: 2 rows of 9 and 5 tokens (the export's example has 3 rows of 7)."""
        return _rows([9, 5], self.model.encoder.config.vocab_size, seed=29)

    def _export(self, name: str, path: Path) -> None:
        module, inputs, outputs = self._piece(name)
        ids, mask = _rows([7, 7, 4], self.model.encoder.config.vocab_size, seed=7)
        example = self._inputs_for(name, ids, mask)
        axes = {
            "input_ids": {0: "rows", 1: "length"},
            "attention_mask": {0: "rows", 1: "length"},
            "token_type_ids": {0: "rows", 1: "length"},
            "hidden": {0: "rows", 1: "length"},
            "hidden_out": {0: "rows", 1: "length"},
            "pooled": {1: "rows"},
            "logits": {0: "rows"},
            "certainty": {0: "rows"},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=path.name + ".partial-", dir=path.parent)
        os.close(handle)
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    tuple(example[key] for key in inputs),
                    partial,
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_axes={key: axes[key] for key in inputs + outputs},
                    opset_version=OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)

    def _session(self, name: str):
        session = self.sessions.get(name)
        if session is not None:
            return session
        path = self.directory / f"{name}.onnx"
        fresh = not path.is_file()
        while True:
            if fresh:
                self._export(name, path)
            session, problem = self._start(path)
            problem = problem or self._check(name, session)
            if not problem:
                self.sessions[name] = session
                return session
            if fresh:
                raise SledgeError(f"onnxruntime backend: piece {name} ({path}) {problem}")
            path.unlink(missing_ok=True)  # a cached graph that cannot load or no longer matches: again, once
            fresh = True

    def _start(self, path: Path) -> tuple[Any, str]:
        """An ORT session of the graph at `path`, and '' (or None and why ORT cannot load it)."""
        ort = self.ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.optimization]
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # noqa: BLE001 (an unreadable graph: named, one line)
            return None, f"cannot be loaded by onnxruntime: {_one_line(error)}"
        session._sledge_inputs = [(i.name, _NUMPY[i.type]) for i in session.get_inputs()]  # type: ignore[attr-defined]
        session._sledge_outputs = [o.name for o in session.get_outputs()]  # type: ignore[attr-defined]
        return session, ""

    def _check(self, name: str, session) -> str:
        """'' if the session's outputs on the check inputs match the torch piece's, else what differs."""
        module, inputs, outputs = self._piece(name)
        feeds = self._inputs_for(name, *self._checks)
        with torch.no_grad():
            expected = module(*(feeds[key] for key in inputs))
        expected = expected if isinstance(expected, tuple) else (expected,)
        try:
            got = self._call(session, feeds)
        except Exception as error:  # noqa: BLE001 (a graph of other shapes: it is not this piece)
            return f"fails on the check inputs: {_one_line(error)}"
        for output, want, have in zip(outputs, expected, got):
            if tuple(want.shape) != tuple(have.shape):
                return f"gives {output} of shape {tuple(have.shape)} where torch gives {tuple(want.shape)}"
            differences = (want.float() - have.float()).abs()
            if output == "hidden_out":
                # The real tokens' states only: no answer reads the padding's, whose attention torch int8
                # leaves at zero (`RowwiseAttention`) where ONNX Runtime computes it.
                real = feeds["attention_mask"][:, : want.size(1)].bool()
                want, differences = want[real], differences[real]
            scale = max(1.0, float(want.abs().max()))
            largest = float(differences.max())
            if self.precision == "int8":
                typical = float(differences.median())
                if typical > TOLERANCE * scale:
                    return (
                        f"differs from torch on the check inputs: median |{output} difference| {typical:.3g} "
                        f"> {TOLERANCE:g} x {scale:.3g}"
                    )
                if largest > scale:
                    return (
                        f"differs from torch on the check inputs: max |{output} difference| {largest:.3g} > "
                        f"{scale:.3g}"
                    )
            elif largest > TOLERANCE * scale:
                return (
                    f"differs from torch on the check inputs: max |{output} difference| {largest:.3g} > "
                    f"{TOLERANCE:g} x {scale:.3g}"
                )
        return ""

    def _run(self, name: str, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        return self._call(self._session(name), feeds)

    def _call(self, session, feeds: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        arrays = {
            name: np.ascontiguousarray(feeds[name].detach().numpy(), dtype=dtype)
            for name, dtype in session._sledge_inputs
        }
        if not self.io_binding:
            return [torch.from_numpy(output) for output in session.run(None, arrays)]
        binding = session.io_binding()
        for name, array in arrays.items():
            binding.bind_cpu_input(name, array)
        for name in session._sledge_outputs:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        return [torch.from_numpy(output) for output in binding.copy_outputs_to_cpu()]


def _one_line(error: Exception) -> str:
    """An exception as one line: its type and first line (ORT's may have no message at all)."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:300]}" if lines else f"{type(error).__name__} (no message)"


def _rows(lengths: list[int], vocab_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows of random ids (never the first 5 ids: padding and special tokens) and their mask."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(5, max(6, min(vocab_size, 1000)), (len(lengths), width), generator=generator)
    return ids * mask, mask
