"""Backends: what runs a model's embeddings, layers and exits (torch, ONNX Runtime). One class each."""

from typing import Any

from sledge.errors import SledgeError
from sledge.nn.backends.base import Backend
from sledge.nn.backends.ort_backend import OnnxRuntimeBackend
from sledge.nn.backends.torch_backend import TorchBackend

BACKENDS: dict[str, type[Backend]] = {backend.name: backend for backend in (TorchBackend, OnnxRuntimeBackend)}


def backend_of(model: Any) -> Backend:
    """The backend that runs `model` (a `MultiExitClassifier`): the one `use_backend` set, else torch."""
    backend = model.__dict__.get("backend")
    if backend is None:
        backend = TorchBackend(model)
        model.__dict__["backend"] = backend
    return backend


def use_backend(model: Any, name: str = "torch", **options: Any) -> Any:
    """
    Run `model` (a `MultiExitClassifier`, or every member of a `Cascade`) on backend `name` with its
    `options` from now on; returns `model`. A clear error names an unknown backend or option.
    """
    if name not in BACKENDS:
        raise SledgeError(f"model.backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    for member in getattr(model, "members", [model]):
        try:
            member.__dict__["backend"] = BACKENDS[name](member, **options)
        except TypeError as error:
            raise SledgeError(f"model.backend_options {options}: {error}") from None
    return model


__all__ = ["BACKENDS", "Backend", "OnnxRuntimeBackend", "TorchBackend", "backend_of", "use_backend"]
