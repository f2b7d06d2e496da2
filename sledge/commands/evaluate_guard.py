"""`allennlp evaluate` once sledge is imported: inputs checked first, outputs renamed on success."""

import functools
import json
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from allennlp.common.params import parse_overrides, with_overrides

from sledge.archival import read_config
from sledge.commands.checks import check_archive, check_cuda, check_overrides
from sledge.errors import SledgeError
from sledge.files import check_input_path, check_output_file, partial_path


def guard_evaluate(evaluate_from_archive: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """
    Wrap AllenNLP's `evaluate_from_archive` so that, before anything is loaded, `-o` is valid, the
    CUDA device exists, the archive and its config (with a registered model type) and every input file
    exist, `--batch-size` is at least 1 and every output file can be written; a
    `--batch-size` reaches a config whose data loader has a `batch_sampler` (as every sledge config)
    as that sampler's batch size, where AllenNLP would fail ("mutually exclusive"); and the metrics and
    predictions files are written to temporary names, renamed only when the evaluation succeeded.
    """

    @functools.wraps(evaluate_from_archive)
    def guarded(
        archive_file: str,
        input_file: str,
        metrics_output_file: str | None = None,
        predictions_output_file: str | None = None,
        batch_size: int | None = None,
        cmd_overrides: str | dict[str, Any] = "",
        **kwargs: Any,
    ) -> dict[str, Any]:
        check_overrides(cmd_overrides)
        check_cuda(kwargs.get("cuda_device", -1))
        check_archive(str(archive_file), "archive_file", cmd_overrides)
        try:
            inputs = json.loads(f"[{input_file}]")  # AllenNLP's own rule: JSON blobs, else a comma list
        except json.JSONDecodeError:
            inputs = input_file.split(",")
        for path in inputs:
            if isinstance(path, str):
                check_input_path(path, "input_file")
        if batch_size is not None and batch_size < 1:
            raise SledgeError(f"--batch-size must be at least 1, got {batch_size}")
        outputs = {
            option: paths.split(",")
            for option, paths in (("--output-file", metrics_output_file),
                                  ("--predictions-output-file", predictions_output_file))
            if paths is not None
        }
        for option, paths in outputs.items():
            for path in paths:
                check_output_file(path, option)
        if batch_size is not None:
            cmd_overrides, batch_size = _batch_size_overrides(archive_file, cmd_overrides, batch_size)
        with ExitStack() as stack:  # AllenNLP writes the temporary files, renamed when it succeeded
            names = {
                option: ",".join(stack.enter_context(partial_path(path)) for path in paths)
                for option, paths in outputs.items()
            }
            return evaluate_from_archive(
                archive_file,
                input_file,
                metrics_output_file=names.get("--output-file"),
                predictions_output_file=names.get("--predictions-output-file"),
                batch_size=batch_size,
                cmd_overrides=cmd_overrides,
                **kwargs,
            )

    return guarded


def _batch_size_overrides(
    archive_file: str, cmd_overrides: str | dict[str, Any], batch_size: int
) -> tuple[dict[str, Any], int | None]:
    """Overrides that give the evaluation data loader `batch_size`; AllenNLP's own argument where it can."""
    overrides = parse_overrides(cmd_overrides) if isinstance(cmd_overrides, str) else dict(cmd_overrides)
    config = with_overrides(read_config(archive_file), overrides)
    key = "validation_data_loader" if config.get("validation_data_loader") else "data_loader"
    if "batch_sampler" not in (config.get(key) or {}):
        return overrides, batch_size
    return {**overrides, f"{key}.batch_sampler.batch_size": batch_size}, None

