"""
The checks every command runs before it loads a model or reads data, each failing with one line that
names the option, key or file and says what to do: `-o` overrides, the CUDA device, an archive (its
config and its model type), and for `allennlp train` the whole config (backbones, data paths).
"""

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from _jsonnet import evaluate_snippet
from allennlp.common import Params
from allennlp.common.checks import ConfigurationError
from allennlp.common.params import with_overrides
from allennlp.data import DatasetReader
from allennlp.models import Model

from sledge.archival import read_config
from sledge.dataset_readers.base import without_selectors
from sledge.dataset_readers.releases import DATASETS_DOC, is_url
from sledge.errors import SledgeError
from sledge.files import check_input_path
from sledge.nn import check_threshold, resolve_backbone
from sledge.nn.encoder import OFFLINE_HINT

DATA_KEYS = ("train_data_path", "validation_data_path", "test_data_path")
# Overrides checked before anything is loaded (a number in [0, 1]); others are checked where they are used.
THRESHOLD_KEYS = ("model.confidence_threshold", "model.exit_policy.threshold")


class _NotFinite:
    """A number JSON cannot hold (NaN, Infinity, 1e309), as written in the overrides."""

    def __init__(self, text: str) -> None:
        self.text = text


def parse_overrides_strictly(text: str, option: str = "-o") -> dict[str, Any]:
    """
    The overrides `text` as a dict (JSON, as AllenNLP documents them), or one `SledgeError` line: not
    valid JSON (with the column), not an object, or a number that is not finite (`NaN`, `Infinity`,
    or one too large for a float such as `1e309`), naming the key.
    """
    def number(token: str) -> Any:
        value = float(token)
        return value if math.isfinite(value) else _NotFinite(token)

    try:
        overrides = json.loads(text, parse_float=number, parse_constant=_NotFinite)
    except json.JSONDecodeError as error:
        raise SledgeError(
            f"{option}: not valid JSON: {error.msg} (column {error.colno}) in {_shown(text)}; overrides are "
            """a JSON object such as '{"model.confidence_threshold": 0.9}'"""
        ) from None
    if not isinstance(overrides, dict):
        raise SledgeError(f"{option}: overrides are a JSON object of keys and values, got {_shown(text)}")
    for key, value in _leaves(overrides):
        if isinstance(value, _NotFinite):
            raise SledgeError(
                f"{option}: {key} is {value.text}, which is not a finite number (JSON has no NaN or "
                "infinity, and a float overflows past 1.8e308); give a number"
            )
        if key in THRESHOLD_KEYS:
            hint = f"; write {value} without quotes" if isinstance(value, str) and _is_number(value) else ""
            try:
                check_threshold(value, f"{option}: {key}")
            except SledgeError as error:
                raise SledgeError(f"{error}{hint}") from None
    return overrides


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def overrides_dict(text: str | dict | None, option: str = "-o") -> dict[str, Any]:
    """
    The overrides as a dict, checked by `parse_overrides_strictly`; AllenNLP's Jsonnet form (which is
    not JSON) is let through when Jsonnet evaluates it.
    """
    if not text:
        return {}
    if isinstance(text, dict):
        return text
    try:
        return parse_overrides_strictly(text, option)
    except SledgeError as error:
        if "not valid JSON" not in str(error):
            raise
        try:
            return json.loads(evaluate_snippet("", text, ext_vars=_string_environment()))
        except Exception:  # noqa: BLE001 (whatever Jsonnet raises: the JSON error is the one to show)
            raise error from None


def check_overrides(text: str | dict | None, option: str = "-o") -> None:
    """`overrides_dict`, for its checks only."""
    overrides_dict(text, option)


def _string_environment() -> dict[str, str]:
    """The environment variables Jsonnet may read (as AllenNLP passes them)."""
    return {key: value for key, value in os.environ.items() if value.isprintable()}


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), value)]


def check_cuda(device: int | list | None, option: str = "--cuda-device") -> None:
    """The CUDA device(s) asked for exist: checked first, before anything is loaded."""
    devices = device if isinstance(device, list) else [device]
    wanted = [d for d in devices if isinstance(d, int) and d >= 0]
    if not wanted:
        return
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available == 0:
        raise SledgeError(
            f"{option} {device}: this machine has no CUDA device (torch.cuda.is_available() is False); "
            f"run on the CPU: leave {option} out, or give -1"
        )
    if max(wanted) >= available:
        raise SledgeError(
            f"{option} {device}: this machine has {available} CUDA device(s), numbered 0 to {available - 1}"
        )


def check_archive(
    path: str, option: str = "archive_file", overrides: str | dict | None = None
) -> None:
    """
    Before a model is loaded: `path` is an archive (or a training run's serialization folder) with a
    readable `config.json` whose model type (after `overrides`) is registered. An archive that can be
    read only once (a pipe) is left to the loader, which checks it as it extracts it.
    """
    check_input_path(path, option)
    if not os.path.isdir(path) and not Path(path).is_file():
        return
    if os.path.isdir(path) and not Path(path, "config.json").is_file():
        raise SledgeError(
            f"{option}: {path} is a folder without config.json; give a model.tar.gz, or the serialization "
            "folder of a training run (-s)"
        )
    config = read_config(path)
    if overrides:
        config = with_overrides(config, overrides_dict(overrides))
    model = config.get("model")
    model_type = model.get("type") if isinstance(model, dict) else model
    if not isinstance(model_type, str):
        raise SledgeError(f"{path}: its config.json names no model type (model.type)")
    try:
        Model.resolve_class_name(model_type)
    except ConfigurationError:
        raise SledgeError(
            f"{path}: its config.json names the model type {model_type!r}, which is not registered (sledge "
            "registers 'sledge' and 'sledge_cascade'; a model of another package needs --include-package "
            "with that package)"
        ) from None


def check_training_config(config_file: str, overrides: str | dict = "") -> None:
    """
    Before `allennlp train` builds anything: the overrides, the config itself, the CUDA devices, every
    backbone it names (loadable here, or else which config works offline), and every local data path.
    """
    check_overrides(overrides)
    check_input_path(config_file, "param_path", file=True)
    try:
        text = overrides if isinstance(overrides, str) else json.dumps(overrides)
        config = Params.from_file(config_file, text)
    except SledgeError:
        raise
    except Exception as error:  # noqa: BLE001 (Jsonnet's errors: the config itself is broken)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SledgeError(f"{config_file}: not a valid config ({first})") from None
    params = config.as_dict(quiet=True)
    trainer = params.get("trainer") or {}
    check_cuda(trainer.get("cuda_device"), "trainer.cuda_device")
    check_cuda((params.get("distributed") or {}).get("cuda_devices"), "distributed.cuda_devices")
    hint = _offline_hint(config_file)
    for section in ("dataset_reader", "model"):
        name = (params.get(section) or {}).get("transformer_model")
        if isinstance(name, str):
            resolve_backbone(name, hint, f" ({section}.transformer_model of {config_file})")
    defaults = Params.from_file(config_file).as_dict(quiet=True)
    reader = (params.get("dataset_reader") or {}).get("type")
    for key in DATA_KEYS:
        path = params.get(key)
        if isinstance(path, str) and not is_url(path):
            _check_data_path(path, key, config_file, reader, defaults.get(key))
    train = params.get("train_data_path")
    if isinstance(train, str) and not is_url(train):
        _check_training_labels(train, params.get("dataset_reader") or {})


def _check_training_labels(path: str, reader_params: dict) -> None:
    """A classifier's local training data holds at least two labels (one label is a wrong file, or a
    slice of a sorted one: training would go on and learn to say that label whatever the input)."""
    reader = DatasetReader.from_params(Params(json.loads(json.dumps(reader_params))))
    if getattr(reader, "regression", True) or not hasattr(reader, "examples"):
        return
    labels = {str(example.label) for example in reader.examples(path) if example.label is not None}
    if len(labels) == 1:
        raise SledgeError(
            f"train_data_path {path}: every instance has the label {labels.pop()!r}; a classifier needs "
            "at least two labels to learn from (is it the right file, or a slice of a sorted one?)"
        )


def _offline_hint(config_file: str) -> str:
    """The config's CPU-sized variant, which works offline, if there is one; else the general hint."""
    path = Path(config_file)
    variant = path.with_name(f"{path.stem}_minilm{path.suffix}")
    if not path.stem.endswith("_minilm") and variant.is_file():
        return (
            f"{variant} is the CPU-sized config that works offline (all-MiniLM-L6-v2, which ships with "
            "sledge)"
        )
    return OFFLINE_HINT


def _check_data_path(path: str, key: str, config_file: str, reader: str | None, default: Any) -> None:
    """A local data path exists, or one line naming the dataset, the config, and where to get the data."""
    if os.path.exists(without_selectors(path).partition("!")[0]):
        return
    dataset = _dataset_of(reader)
    if isinstance(default, str) and is_url(default) and default != path:
        where = f"the config's default, {default.partition('!')[0]}, is the public release (leave the -o out)"
    else:
        where = f"where to get it: {DATASETS_DOC}"
    raise SledgeError(f"{key} {path} ({dataset}, {config_file}) does not exist; {where}")


def _dataset_of(reader: str | None) -> str:
    try:
        return DatasetReader.by_name(reader).dataset if reader else "the dataset"
    except (ConfigurationError, AttributeError):
        return str(reader)
