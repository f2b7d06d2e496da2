"""
What sledge changes in AllenNLP, applied once when `sledge` is imported (so with `--include-package
sledge` as with a `.allennlp_plugins` file). Each change replaces a module attribute that AllenNLP
looks up when it runs, so it takes effect whenever sledge was imported before the command starts
its work:

- `allennlp.models.archival.extracted_archive` -> `sledge.archival.extracted_archive`: safe extraction
  (no member outside the folder, no links), a clear error for a corrupt archive, the folder removed
  on failure.
- `allennlp.nn.util.read_state_dict` -> `sledge.archival.read_state_dict`: weights read with
  `weights_only=True`, whatever `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` says.
- `allennlp.commands.predict._PredictManager` -> `SafePredictManager`: every input line checked before
  anything is predicted, `--output-file` renamed into place only on success.
- `allennlp.commands.predict._get_predictor`: `-o`, `--cuda-device`, the archive (its config and model
  type), the input file, `--batch-size` and `--output-file` checked before the archive is loaded.
- `allennlp.commands.evaluate.evaluate_from_archive`: see `guard_evaluate`.
- `allennlp.commands.train.train_model_from_file`: the config checked before anything is built (see
  `sledge.commands.checks.check_training_config`: overrides, CUDA, backbones, local data paths); a run
  that fails before its first checkpoint removes the serialization folder it created.
- `allennlp.common.params.parse_overrides`: `-o` must be valid JSON with finite numbers (one line
  naming the key otherwise; AllenNLP's Jsonnet overrides still work).
- `allennlp.common.from_params.construct_arg`: a config value of the wrong type (`"0.9"` where a
  number belongs) is a `SledgeError` naming the parameter and the value.
- `allennlp.common.logging.prepare_global_logging` (which `allennlp train` calls, and which puts an
  exception hook of AllenNLP's in place, logging a traceback): sledge's hook is put back on top of it.
- Under the `allennlp` command line, a `SledgeError` (or AllenNLP's `ConfigurationError`, a config
  mistake) is printed as one line without a traceback, and so are Ctrl-C (`allennlp predict:
  interrupted`; the process still ends as interrupted, status 130 in a shell) and SIGTERM (AllenNLP's
  `SigTermReceived`); `SLEDGE_TRACEBACK=1` shows the traceback.

The patches use `sledge.archival` and the command guards; none of those imports this module.
"""

import argparse
import functools
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import allennlp.commands.evaluate
import allennlp.commands.predict
import allennlp.commands.train
import allennlp.common.from_params
import allennlp.common.logging
import allennlp.common.params
import allennlp.models.archival
import allennlp.nn.util
from allennlp.common.checks import ConfigurationError
from allennlp.common.util import SigTermReceived

from sledge import archival
from sledge.commands.checks import check_archive, check_cuda, check_overrides, check_training_config
from sledge.commands.evaluate_guard import guard_evaluate
from sledge.commands.predict_manager import SafePredictManager
from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_file

ORIGINALS: dict[str, Callable[..., Any]] = {}


def _checked_get_predictor(get_predictor: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(get_predictor)
    def checked(args: argparse.Namespace) -> Any:
        check_overrides(args.overrides)
        check_cuda(args.cuda_device)
        check_archive(args.archive_file, "archive_file", args.overrides)
        if args.input_file != "-":
            check_input_path(args.input_file, "input_file", file=True)
        if args.batch_size < 1:
            raise SledgeError(f"--batch-size must be at least 1, got {args.batch_size}")
        if args.output_file is not None:
            check_output_file(args.output_file, "--output-file")
            if args.input_file != "-" and Path(args.output_file).resolve() == Path(args.input_file).resolve():
                raise SledgeError(f"--output-file {args.output_file} is the input file; choose another")
        return get_predictor(args)

    return checked


def _checked_train(train_model_from_file: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(train_model_from_file)
    def checked(parameter_filename: Any, serialization_dir: Any, overrides: Any = "", *args, **kwargs) -> Any:
        check_training_config(str(parameter_filename), overrides)
        created = not os.path.exists(serialization_dir)
        try:
            return train_model_from_file(parameter_filename, serialization_dir, overrides, *args, **kwargs)
        except BaseException:
            # A run that failed before its first checkpoint (data that cannot be read or downloaded, ...)
            # leaves no folder behind: otherwise running the same command again is refused by AllenNLP
            # ("serialization directory already exists") until the user deletes it.
            folder = Path(serialization_dir)
            if created and folder.is_dir() and not any(folder.glob("model_state_*")):
                shutil.rmtree(folder, ignore_errors=True)
            raise

    return checked


def _checked_parse_overrides(parse_overrides: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(parse_overrides)
    def checked(serialized_overrides: str, ext_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        check_overrides(serialized_overrides)
        return parse_overrides(serialized_overrides, ext_vars)

    return checked


_KINDS = {int: "an integer", bool: "true or false", float: "a number", str: "a string"}


def _checked_construct_arg(construct_arg: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(construct_arg)
    def checked(class_name: str, argument_name: str, popped_params: Any, annotation: Any, *args, **kwargs):
        try:
            return construct_arg(class_name, argument_name, popped_params, annotation, *args, **kwargs)
        except TypeError as error:
            if annotation not in _KINDS or not str(error).startswith("Expected "):
                raise
            hint = ""
            if isinstance(popped_params, str) and annotation in (int, float):
                hint = f"; write {popped_params} without quotes"
            raise SledgeError(
                f"{argument_name} (of {class_name}) must be {_KINDS[annotation]}, got {popped_params!r} "
                f"({type(popped_params).__name__}) in the config or -o{hint}"
            ) from None

    return checked


def _excepthook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        command = " ".join(sys.argv[1:2])
        quiet = not os.environ.get("SLEDGE_TRACEBACK")
        if issubclass(kind, (SledgeError, ConfigurationError)) and quiet:
            message = " ".join(str(error).split())  # one line, whatever the message
            print(f"allennlp {command}: error: {message}", file=sys.stderr)
        elif issubclass(kind, KeyboardInterrupt) and quiet:
            print(f"allennlp {command}: interrupted", file=sys.stderr)
        elif issubclass(kind, SigTermReceived) and quiet:
            print(f"allennlp {command}: terminated (SIGTERM)", file=sys.stderr)
        else:
            previous(kind, error, traceback)

    hook.sledge = True  # type: ignore[attr-defined]
    return hook


def _keeping_excepthook(prepare: Callable[..., Any]) -> Callable[..., Any]:
    """AllenNLP's `prepare_global_logging`, after which sledge's exception hook, if it was in place, is
    put back on top of the one AllenNLP installs (which then handles what sledge's does not)."""

    @functools.wraps(prepare)
    def prepared(*args: Any, **kwargs: Any) -> Any:
        ours = getattr(sys.excepthook, "sledge", False)
        result = prepare(*args, **kwargs)
        if ours and not getattr(sys.excepthook, "sledge", False):
            sys.excepthook = _excepthook(sys.excepthook)
        return result

    return prepared


def apply() -> None:
    """Apply the changes above (once)."""
    if ORIGINALS:
        return
    ORIGINALS["extracted_archive"] = allennlp.models.archival.extracted_archive
    ORIGINALS["read_state_dict"] = allennlp.nn.util.read_state_dict
    ORIGINALS["_get_predictor"] = allennlp.commands.predict._get_predictor
    ORIGINALS["evaluate_from_archive"] = allennlp.commands.evaluate.evaluate_from_archive
    ORIGINALS["train_model_from_file"] = allennlp.commands.train.train_model_from_file
    ORIGINALS["parse_overrides"] = allennlp.common.params.parse_overrides
    ORIGINALS["construct_arg"] = allennlp.common.from_params.construct_arg
    ORIGINALS["prepare_global_logging"] = allennlp.common.logging.prepare_global_logging
    allennlp.models.archival.extracted_archive = archival.extracted_archive
    allennlp.nn.util.read_state_dict = archival.read_state_dict
    allennlp.commands.predict._PredictManager = SafePredictManager
    allennlp.commands.predict._get_predictor = _checked_get_predictor(ORIGINALS["_get_predictor"])
    allennlp.commands.evaluate.evaluate_from_archive = guard_evaluate(ORIGINALS["evaluate_from_archive"])
    allennlp.commands.train.train_model_from_file = _checked_train(ORIGINALS["train_model_from_file"])
    allennlp.common.params.parse_overrides = _checked_parse_overrides(ORIGINALS["parse_overrides"])
    allennlp.common.from_params.construct_arg = _checked_construct_arg(ORIGINALS["construct_arg"])
    allennlp.common.logging.prepare_global_logging = _keeping_excepthook(ORIGINALS["prepare_global_logging"])
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program == "allennlp" or sys.argv[0].endswith(os.path.join("allennlp", "__main__.py")):
        sys.excepthook = _excepthook(sys.excepthook)
