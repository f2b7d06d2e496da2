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
- `allennlp.commands.predict._get_predictor`: the input file, `--batch-size` and `--output-file`
  checked before the archive is loaded.
- `allennlp.commands.evaluate.evaluate_from_archive`: see `guard_evaluate`.
- `allennlp.common.logging.prepare_global_logging` (which `allennlp train` calls, and which puts an
  exception hook of AllenNLP's in place, logging a traceback): sledge's hook is put back on top of it.
- Under the `allennlp` command line, a `SledgeError` is printed as one line without a traceback, and
  so are Ctrl-C (`allennlp predict: interrupted`; the process still ends as interrupted, status 130
  in a shell) and SIGTERM (AllenNLP's `SigTermReceived`); `SLEDGE_TRACEBACK=1` shows the traceback.

The patches use `sledge.archival` and the command guards; none of those imports this module.
"""

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import allennlp.commands.evaluate
import allennlp.commands.predict
import allennlp.common.logging
import allennlp.models.archival
import allennlp.nn.util
from allennlp.common.util import SigTermReceived

from sledge import archival
from sledge.commands.evaluate_guard import guard_evaluate
from sledge.commands.predict_manager import SafePredictManager
from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_file

ORIGINALS: dict[str, Callable[..., Any]] = {}


def _checked_get_predictor(get_predictor: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(get_predictor)
    def checked(args: argparse.Namespace) -> Any:
        check_input_path(args.archive_file, "archive_file")
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


def _excepthook(previous: Callable[..., Any]) -> Callable[..., Any]:
    def hook(kind: type[BaseException], error: BaseException, traceback: Any) -> None:
        command = " ".join(sys.argv[1:2])
        if issubclass(kind, SledgeError) and not os.environ.get("SLEDGE_TRACEBACK"):
            print(f"allennlp {command}: error: {error}", file=sys.stderr)
        elif issubclass(kind, KeyboardInterrupt) and not os.environ.get("SLEDGE_TRACEBACK"):
            print(f"allennlp {command}: interrupted", file=sys.stderr)
        elif issubclass(kind, SigTermReceived) and not os.environ.get("SLEDGE_TRACEBACK"):
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
    ORIGINALS["prepare_global_logging"] = allennlp.common.logging.prepare_global_logging
    allennlp.models.archival.extracted_archive = archival.extracted_archive
    allennlp.nn.util.read_state_dict = archival.read_state_dict
    allennlp.commands.predict._PredictManager = SafePredictManager
    allennlp.commands.predict._get_predictor = _checked_get_predictor(ORIGINALS["_get_predictor"])
    allennlp.commands.evaluate.evaluate_from_archive = guard_evaluate(ORIGINALS["evaluate_from_archive"])
    allennlp.common.logging.prepare_global_logging = _keeping_excepthook(ORIGINALS["prepare_global_logging"])
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program == "allennlp" or sys.argv[0].endswith(os.path.join("allennlp", "__main__.py")):
        sys.excepthook = _excepthook(sys.excepthook)
