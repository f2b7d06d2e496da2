"""`allennlp sweep`: the speed/accuracy curves of a sledge model over the settings of its exit policies."""

import argparse
import copy
import csv
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from allennlp.commands.subcommand import Subcommand
from scipy import stats
from tqdm import tqdm

from sledge.commands.arguments import positive_int, unit_float
from sledge.commands.checks import check_archive
from sledge.commands.common import (
    check_inputs,
    device_of,
    figure_png,
    full_pass,
    inputs_of,
    load_sledge_archive,
    read_labelled,
    tensor_batches,
    timing_sample,
)
from sledge.errors import SledgeError
from sledge.files import check_output_dir, write_files
from sledge.models.sledge_classifier import prepare_inference
from sledge.nn import (
    BACKENDS,
    POLICIES,
    QUANTIZE,
    ConfidencePolicy,
    ExitPolicy,
    MultiExitClassifier,
    check_threshold,
    early_exit,
    full_pass_views,
    oracle_exits,
    simulate_exits,
)
from sledge.nn.quantize import full_range_is_exact

PAPER_THRESHOLDS = [0.0] + [round(0.55 + 0.05 * i, 2) for i in range(10)]  # 0, 0.55, 0.6, ..., 1.0
ENTROPY_THRESHOLDS = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.05, 0.0]


@Subcommand.register("sweep")
class Sweep(Subcommand):
    """Measure the speed/accuracy curve of a sledge model over the settings of one or more exit policies."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "For each exit policy and each of its settings (confidence thresholds by default): accuracy "
            "(Pearson's r for regression), average exit layer and exit shares (from one full pass over "
            "the data), and measured wall-clock time of real early-exit inference: seconds per instance "
            "at batch size 1 and instances per second batched (medians over repeats after a warm-up, "
            "every job interleaved). Adds the oracle (classification) and any baseline archives, "
            "measured in the same run on the same data. Writes sweep.json, sweep.csv and sweep.png (each "
            "policy's curve against time relative to the standard baseline) to the output directory."
        )
        subparser = parser.add_parser(self.name, description=description, help="Speed/accuracy sweep.")
        subparser.add_argument(
            "archive_file", help="a (calibrated) sledge model.tar.gz or serialization folder"
        )
        subparser.add_argument("input_file", help="labelled evaluation data, in the model reader's format")
        subparser.add_argument("--output-dir", required=True, help="where sweep.json/.csv/.png go")
        subparser.add_argument(
            "--policy", action="append", default=[], metavar="SPEC",
            help="an exit policy to sweep (repeatable; each is a curve on the same axes): NAME "
            "(confidence, entropy, patience, learned) with its default settings, NAME:V1,V2,... with "
            "these, or a JSON object with its parameters and optional \"values\", e.g. "
            "'{\"type\": \"confidence\", \"calibrated\": false}'. Default: the model's own policy",
        )
        subparser.add_argument(
            "--thresholds", type=unit_float, nargs="+", default=None,
            help="the thresholds of a confidence or learned policy given without values (default: 0 and "
            "0.55 to 1.0 in steps of 0.05, as the paper); entropy defaults to 1, 0.8, 0.6, 0.5, 0.4, "
            "0.3, 0.2, 0.15, 0.1, 0.05, 0; patience to 0 .. number of exits - 1",
        )
        subparser.add_argument(
            "--baseline", action="append", default=[], metavar="[NAME=]ARCHIVE",
            help="a baseline model archive (repeatable), e.g. standard=runs/l5/model.tar.gz; the one "
            "whose exit is deepest is the standard baseline that times are relative to",
        )
        subparser.add_argument(
            "--batch-size", type=positive_int, default=32, help="batch size of batched timing"
        )
        subparser.add_argument(
            "--repeats", type=positive_int, default=3, help="timed repeats (median is reported)"
        )
        subparser.add_argument(
            "--timing-instances", type=positive_int, default=500,
            help="time on a seeded random sample of this many instances (all if fewer); accuracy always "
            "uses every instance",
        )
        subparser.add_argument(
            "--also", action="append", default=[], metavar="NAME=ARCHIVE",
            help="another multi-exit model (repeatable) whose curves, for the same policies and settings, "
            "are measured in the same run and drawn on the same axes",
        )
        subparser.add_argument("--name", default="sledge", help="the swept model's name beside --also models")
        subparser.add_argument(
            "--precision", nargs="+", default=["fp32"], choices=["fp32", *QUANTIZE],
            help="measure every model and baseline at each precision (int8: every linear layer in int8, "
            "each token with its own activation scale, batch-invariant; int8-static: static scales that "
            "`allennlp calibrate` stored in each archive, batch-invariant; int8-dynamic: PyTorch's dynamic "
            "quantization, torch only); rows of int8 models are named '... int8'",
        )
        subparser.add_argument(
            "--backend", nargs="+", default=["torch"], choices=["torch", "onnxruntime"],
            help="measure every model and baseline on each backend, at each precision, side by side; rows "
            "on onnxruntime are named '... onnxruntime' (docs/backends.md)",
        )
        subparser.add_argument(
            "--backend-options", default="{}", metavar="JSON",
            help="options of the onnxruntime backend, e.g. '{\"optimization\": \"extended\"}'",
        )
        subparser.add_argument(
            "--reference-line", default=None, metavar="ROW",
            help="draw this baseline row as a reference line on the plot, e.g. 'standard onnxruntime int8' "
            "(default: that row where the sweep has it)",
        )
        subparser.add_argument(
            "--hf-reference", default=None, metavar="BASELINE",
            help="also time that standard baseline as plain HuggingFace inference (its AutoModel's forward "
            "and head, outside sledge's runner), at each precision",
        )
        subparser.add_argument("--seed", type=int, default=0, help="seed of the timing sample")
        subparser.add_argument("--cuda-device", type=int, default=-1, help="GPU id, -1 for the CPU")
        subparser.set_defaults(func=sweep_from_args)
        return subparser


def sweep_from_args(args: argparse.Namespace) -> None:
    rows = sweep(
        args.archive_file, args.input_file, args.output_dir, args.thresholds,
        named_archives(args.baseline, "--baseline"), args.cuda_device, args.batch_size, args.repeats,
        args.timing_instances, args.seed, policies=[parse_policy(spec) for spec in args.policy],
        name=args.name, also=named_archives(args.also, "--also"), precisions=args.precision,
        hf_reference=args.hf_reference, backends=args.backend,
        backend_options=parse_backend_options(args.backend_options), reference_line=args.reference_line,
    )
    print_table(rows)


def parse_backend_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise SledgeError(f"--backend-options {text!r}: not valid JSON ({error.msg})") from None
    if not isinstance(options, dict):
        raise SledgeError(f"--backend-options {text!r}: give a JSON object")
    return options


def suffix_of(backend: str, precision: str) -> str:
    """What a row's name gets for its backend and precision ('' for torch float32)."""
    return "".join(f" {part}" for part in (backend, precision) if part not in ("torch", "fp32"))


def named_archives(specs: list[str], option: str) -> dict[str, str]:
    """`[NAME=]ARCHIVE` specs as {name: archive}; a missing name is the archive's folder name."""
    archives: dict[str, str] = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        if not path:
            raise SledgeError(f"{option} {spec!r}: give [NAME=]ARCHIVE")
        name = name or Path(path).parent.name
        if name in archives:
            raise SledgeError(f"{option}: two archives are named {name!r}; name them with NAME=ARCHIVE")
        archives[name] = path
    return archives


def parse_policy(spec: str) -> tuple[ExitPolicy, list[float] | None]:
    """A `--policy` SPEC as (policy, the settings to sweep or None for its defaults)."""
    text = spec.strip()
    values: list[float] | None = None
    if text.startswith("{"):
        try:
            parameters = json.loads(text)
        except json.JSONDecodeError as error:
            raise SledgeError(f"--policy {spec!r}: not valid JSON ({error.msg})") from None
        if not isinstance(parameters, dict) or "type" not in parameters:
            raise SledgeError(f"--policy {spec!r}: a JSON policy is an object with a \"type\"")
        name = parameters.pop("type")
        values = parameters.pop("values", None)
        if values is not None and not (isinstance(values, list) and values):
            raise SledgeError(f"--policy {spec!r}: \"values\" must be a non-empty list")
    else:
        name, colon, listed = text.partition(":")
        parameters = {}
        if colon:
            try:
                values = [float(value) for value in listed.split(",")]
            except ValueError:
                raise SledgeError(f"--policy {spec!r}: the values after ':' must be numbers") from None
    if name not in POLICIES:
        raise SledgeError(f"--policy {spec!r}: unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    try:
        policy = POLICIES[name](**parameters)
    except TypeError as error:
        raise SledgeError(f"--policy {spec!r}: {error}") from None
    for value in values or []:
        _setting(policy, value, f"--policy {spec!r}")
    return policy, values


def _setting(policy: ExitPolicy, value: float, where: str) -> ExitPolicy:
    try:
        return policy.with_setting(value)
    except SledgeError as error:
        raise SledgeError(f"{where}: {error}") from None


def default_values(policy: ExitPolicy, thresholds: list[float] | None, num_exits: int) -> list[float]:
    """The settings a policy given without values is swept over."""
    if policy.setting == "patience":
        return list(range(num_exits))
    if policy.name == "entropy":
        return thresholds or ENTROPY_THRESHOLDS
    return thresholds or PAPER_THRESHOLDS


class _Timer:
    """Times jobs (callables over batches), interleaving the repeats so drift hits every job alike."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.jobs: dict[str, tuple[Callable, list]] = {}

    def add(self, name: str, run: Callable, batches: list) -> None:
        self.jobs[name] = (run, batches)

    def _once(self, run: Callable, batches: list) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def median_seconds(self, repeats: int) -> dict[str, float]:
        for run, batches in self.jobs.values():  # warm-up
            self._once(run, batches[: max(1, len(batches) // 10)])
        times: dict[str, list[float]] = {name: [] for name in self.jobs}
        with tqdm(total=repeats * len(self.jobs), desc="timing") as bar:
            for _ in range(repeats):
                for name, (run, batches) in self.jobs.items():
                    times[name].append(self._once(run, batches))
                    bar.update()
        return {name: statistics.median(values) for name, values in times.items()}


def sweep(
    archive_file: str,
    input_file: str,
    output_dir: str,
    thresholds: list[float] | None = None,
    baselines: dict[str, str] | None = None,
    cuda_device: int = -1,
    batch_size: int = 32,
    repeats: int = 3,
    timing_instances: int = 500,
    seed: int = 0,
    policies: list[tuple[ExitPolicy, list[float] | None]] | None = None,
    name: str = "sledge",
    also: dict[str, str] | None = None,
    precisions: list[str] | None = None,
    hf_reference: str | None = None,
    backends: list[str] | None = None,
    backend_options: dict | None = None,
    reference_line: str | None = None,
) -> list[dict]:
    """
    Run the sweep; write sweep.json, sweep.csv, sweep.png to `output_dir`; return the rows. `also`
    (name -> archive): more multi-exit models whose curves (the same policies and settings) are
    measured in the same run; `name` names the first model's rows. `precisions` ("fp32", "int8",
    "int8-static", "int8-dynamic"): every model and baseline is measured at each (see `model.quantize`).
    `hf_reference` (a baseline's name): that baseline is also timed as plain HuggingFace inference
    (its `AutoModel`'s own forward and the head), outside sledge's layer-by-layer runner. `backends`
    ("torch", "onnxruntime", with `backend_options`): every model and baseline is measured on each, at
    each precision, side by side. `reference_line`: a baseline row drawn across the plot.
    """
    precisions = precisions or ["fp32"]
    backends = backends or ["torch"]
    for precision in precisions:
        if precision not in ("fp32", *QUANTIZE):
            raise SledgeError(f"--precision must be fp32 or {', '.join(QUANTIZE)}, got {precision!r}")
    for backend in backends:
        if backend not in BACKENDS:
            raise SledgeError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if "int8-dynamic" in precisions and backends != ["torch"]:
        raise SledgeError(
            "--precision int8-dynamic (PyTorch's dynamic quantization) runs on the torch backend only"
        )
    combinations = [(backend, precision) for backend in backends for precision in precisions]
    check_inputs(archive_file, input_file, cuda_device)
    for option, archives in (("--baseline", baselines), ("--also", also)):
        for label, path in (archives or {}).items():
            check_archive(path, f"{option} {label}")
    if name in (also or {}):
        raise SledgeError(f"--also: {name!r} is the name of the swept model (--name); choose another")
    check_output_dir(output_dir, "--output-dir")
    for option, value in (("--batch-size", batch_size), ("--repeats", repeats),
                          ("--timing-instances", timing_instances)):
        if value < 1:
            raise SledgeError(f"{option} must be at least 1, got {value}")
    if thresholds is not None and not thresholds:
        raise SledgeError("--thresholds: give at least one threshold")
    for threshold in thresholds or []:
        check_threshold(threshold, "--thresholds")
    device = device_of(cuda_device)
    archive = load_sledge_archive(archive_file, cuda_device)
    core = archive.model.core
    instances = read_labelled(archive, input_file)
    sample = timing_sample(instances, timing_instances, seed)
    timer = _Timer(device.type == "cuda")
    models: list[_ModelCurves] = []
    baseline_rows: list[dict] = []
    references: list[_HfReference] = []
    never = ConfidencePolicy(1.0)
    loaded_archives = {name: archive}
    for backend, precision in combinations:
        suffix = suffix_of(backend, precision)
        at = {"backend": backend, "precision": precision, "options": backend_options or {}}
        for model_name, path in {name: archive_file, **(also or {})}.items():
            if model_name not in loaded_archives:
                loaded_archives[model_name] = load_sledge_archive(path, cuda_device)
            loaded = loaded_archives[model_name]
            if loaded.model.core.regression != core.regression:
                raise SledgeError(f"--also {model_name}: {path} and {archive_file} are different tasks")
            own = instances if loaded is archive else read_labelled(loaded, input_file)
            measured = _at(loaded, path, cuda_device, **at)
            models.append(_ModelCurves(model_name + suffix, path, measured, policies, thresholds, own, sample,
                                       batch_size, device))
        for label, path in (baselines or {}).items():
            other = _at(load_sledge_archive(path, cuda_device), path, cuda_device, **at)
            if other.model.core.regression != core.regression:
                raise SledgeError(f"--baseline {label}: {path} and {archive_file} are different tasks")
            other_instances = read_labelled(other, input_file)
            other_batches = tensor_batches(other_instances, other, 64, device)
            other_logits, _, other_labels = full_pass(other.model, other_batches)
            other_timed = [other_instances[i] for i in sample]
            for kind, size in (("1", 1), ("b", batch_size)):
                timer.add(f"{label}{suffix}/{kind}", _runner(other.model.core, never),
                          tensor_batches(other_timed, other, size, device))
            last = torch.full((len(other_labels),), other_logits.size(0) - 1, dtype=torch.long)
            baseline_rows.append(
                {
                    "kind": "baseline",
                    "name": label + suffix,
                    "archive": path,
                    "precision": precision,
                    "backend": backend,
                    **_scorer(other_logits, other_labels, core.regression)(last),
                    "average_exit_layer": float(other.model.core.layer_indices[-1]),
                }
            )
            if label == hf_reference and backend == "torch":
                references.append(_HfReference(f"{label}{suffix} (HuggingFace)", label + suffix, other,
                                               other_timed, other_logits[-1], sample, batch_size, device))
    if hf_reference is not None and not references:
        raise SledgeError(f"--hf-reference {hf_reference!r} names no --baseline")
    for model in models:
        model.add_jobs(timer, oracle=model is models[0] and not core.regression)
    for reference in references:
        reference.add_jobs(timer)

    seconds = timer.median_seconds(repeats)
    n_timed = len(sample)
    rows: list[dict] = []
    for model in models:
        rows += model.rows(seconds, n_timed, several=len(models) > 1)
    for row in baseline_rows:
        row["seconds_per_instance"] = seconds[f"{row['name']}/1"] / n_timed
        row["instances_per_second"] = n_timed / seconds[f"{row['name']}/b"]
        rows.append(row)
    for reference in references:  # its predictions are its baseline's (see agreement_with_baseline)
        baseline = next(row for row in baseline_rows if row["name"] == reference.baseline)
        metrics = {key: baseline[key] for key in ("accuracy", "pearson", "spearman") if key in baseline}
        rows.append({**reference.row(seconds, n_timed), **metrics})

    layers = core.layer_indices
    # Times are relative to the standard baseline measured in the first backend and precision given.
    first = [row for row in baseline_rows if (row["backend"], row["precision"]) == combinations[0]]
    deepest = max(first, key=lambda row: row["average_exit_layer"], default=None)
    if deepest is not None and deepest["average_exit_layer"] >= layers[-1]:
        standard = deepest
    else:  # no standard baseline given: sledge with no early exit (its slowest setting) stands in for it
        curve = [row for row in rows if row["kind"] == "sledge" and row["model"] == models[0].name]
        standard = max(curve, key=lambda row: row["average_exit_layer"])
    for row in rows:
        row["relative_time"] = row["seconds_per_instance"] / standard["seconds_per_instance"]
        row["standard"] = standard["name"]
    info = {
        "archive": archive_file,
        "data": input_file,
        "instances": len(instances),
        "timed_instances": n_timed,
        "timing": f"median of {repeats} repeats after a warm-up; batch 1 and batch {batch_size}; "
        f"device {device}; threads {torch.get_num_threads()}",
        "metric": "pearson" if core.regression else "accuracy",
        "models": {model.name: model.archive_file for model in models},
        "exit_metrics": {model.name: model.exit_scores() for model in models},
        "precisions": precisions,
        "backends": {backend: _backend_description(backend, backend_options or {}) for backend in backends},
        **({"int8_activation_bits": 8 if full_range_is_exact() else 7}
           if "int8-dynamic" in precisions else {}),
        "reference_line": _reference_line(reference_line, baseline_rows),
        "policies": {label: repr(policy) for label, policy, _ in models[0].curves},
        "exit_layers": layers,
        "temperatures": core.temperatures.tolist(),
    }
    write_outputs(rows, info, Path(output_dir))
    if n_timed < len(instances):
        print(f"timings measured on a seeded random sample of {n_timed} of {len(instances)} instances")
    return rows


def _runner(model_core, policy: ExitPolicy, last_exit: int | None = None, record: dict | None = None):
    """A timing job: early exit on one batch; `record` keeps the exit each batch-1 batch took."""

    def run(batch: dict) -> None:
        result = early_exit(model_core, *inputs_of(batch), last_exit=last_exit, policy=policy)
        if record is not None:
            record[id(batch)] = int(result.exit_index)

    return run


def _at(archive, path: str, cuda_device: int, backend: str, precision: str, options: dict):
    """The archive itself for torch float32; else a copy whose model is quantized and on `backend`
    (for int8-static the archive read again: its static scales are a file in it)."""
    if backend == "torch" and precision == "fp32":
        return archive
    if precision == "int8-static":
        overrides = {"model.quantize": precision, "model.backend": backend,
                     "model.backend_options": options if backend != "torch" else {}}
        try:
            return load_sledge_archive(path, cuda_device, overrides)
        except SledgeError as error:
            raise SledgeError(f"--precision int8-static: {path}: {error}") from None
    model = copy.deepcopy(archive.model)
    prepare_inference(model.core, None if precision == "fp32" else precision, backend,
                      options if backend != "torch" else {}, None)
    return archive._replace(model=model)


def _backend_description(backend: str, options: dict) -> str:
    if backend == "torch":
        return f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    import onnxruntime

    settings = {"optimization": "all", "io_binding": False, "spinning": False, **options}
    return f"onnxruntime {onnxruntime.__version__}, " + ", ".join(f"{k} {v}" for k, v in settings.items())


def _reference_line(name: str | None, baseline_rows: list[dict]) -> str | None:
    """The baseline row drawn across the plot: the one named, else the ORT int8 standard where measured."""
    names = [row["name"] for row in baseline_rows]
    if name is not None:
        if name not in names:
            raise SledgeError(f"--reference-line {name!r}: no such baseline row; the sweep has {names}")
        return name
    wanted = [row for row in names if row.startswith("standard") and row.endswith(" onnxruntime int8")]
    return wanted[0] if wanted else None


class _HfReference:
    """
    A standard baseline run as plain HuggingFace inference: its `AutoModel`'s own forward (all layers,
    hidden states out), then its exit head on the pooled states, outside sledge's layer-by-layer
    runner; the time a user of HuggingFace alone would measure for the same fine-tuned model.
    """

    def __init__(self, name, baseline, archive, timed, full_logits, sample, batch_size, device) -> None:
        core = archive.model.core
        if not isinstance(core, MultiExitClassifier) or core.layer_indices != [core.encoder.num_layers - 1]:
            raise SledgeError(f"--hf-reference: {name} is not a standard baseline (exit on its last layer)")
        self.name, self.baseline, self.core = name, baseline, core
        self.expected = full_logits[sample].argmax(dim=-1)
        self.single = tensor_batches(timed, archive, 1, device)
        self.batched = tensor_batches(timed, archive, batch_size, device)
        self.predicted: dict[int, int] = {}

    @torch.no_grad()
    def logits(self, batch: dict) -> torch.Tensor:
        ids, mask, types = inputs_of(batch)
        extra = {"token_type_ids": types} if self.core.encoder.takes_token_types else {}
        outputs = self.core.encoder.transformer(input_ids=ids, attention_mask=mask, output_hidden_states=True,
                                                **extra)
        pooled = [self.core.pool(hidden, mask) for hidden in outputs.hidden_states[1:]]
        return self.core.exits[0](pooled, outputs.last_hidden_state, mask)

    def add_jobs(self, timer: "_Timer") -> None:
        def one(batch: dict) -> None:
            self.predicted[id(batch)] = int(self.logits(batch).argmax(dim=-1))

        timer.add(f"{self.name}/1", one, self.single)
        timer.add(f"{self.name}/b", self.logits, self.batched)

    def row(self, seconds: dict[str, float], n_timed: int) -> dict:
        predicted = torch.tensor([self.predicted[id(batch)] for batch in self.single])
        return {
            "kind": "reference",
            "name": self.name,
            "average_exit_layer": float(self.core.layer_indices[-1]),
            # The same predictions as the baseline's full pass, on the timed sample:
            "agreement_with_baseline": float((predicted == self.expected).float().mean()),
            "seconds_per_instance": seconds[f"{self.name}/1"] / n_timed,
            "instances_per_second": n_timed / seconds[f"{self.name}/b"],
        }


class _ModelCurves:
    """One multi-exit model in a sweep: its full pass, its timing jobs, and its rows."""

    def __init__(
        self, name, archive_file, archive, policies, thresholds, instances, sample, batch_size, device
    ) -> None:
        self.name = name
        self.archive_file = archive_file
        self.core = archive.model.core
        self.curves = _curves(policies or [(archive.model.exit_policy, None)], thresholds, self.core)
        logits, certainties, labels = full_pass(archive.model, tensor_batches(instances, archive, 64, device))
        self.logits, self.labels = logits, labels
        self.views = full_pass_views(self.core, logits, certainties)
        self.score = _scorer(logits, labels, self.core.regression)
        self.sample = sample
        timed = [instances[i] for i in sample]
        self.single = tensor_batches(timed, archive, 1, device)
        self.batched = tensor_batches(timed, archive, batch_size, device)
        self.exits_seen: dict[str, dict[int, int]] = {}  # job -> {id(batch-1 batch): exit taken}
        self.oracle = False

    def exit_scores(self) -> list[dict[str, float]]:
        """The task's metric of each exit on its own (every instance leaving there)."""
        rows = self.logits.size(1)
        return [self.score(torch.full((rows,), j, dtype=torch.long)) for j in range(self.logits.size(0))]

    def job(self, label: str, value: float) -> str:
        return f"{self.name}:{label}@{value:g}"

    def add_jobs(self, timer: "_Timer", oracle: bool) -> None:
        for label, policy, values in self.curves:
            for value in values:
                job = self.job(label, value)
                self.exits_seen[job] = {}
                setting = policy.with_setting(value)
                timer.add(f"{job}/1", _runner(self.core, setting, record=self.exits_seen[job]), self.single)
                timer.add(f"{job}/b", _runner(self.core, setting), self.batched)
        self.oracle = oracle
        if oracle:
            for position in range(len(self.core.layer_indices)):
                timer.add(f"{self.name}:exit{position}/1",
                          _runner(self.core, ConfidencePolicy(1.0), last_exit=position), self.single)

    def rows(self, seconds: dict[str, float], n_timed: int, several: bool) -> list[dict]:
        layers = self.core.layer_indices
        rows = []
        for label, policy, values in self.curves:
            for value in values:
                job = self.job(label, value)
                exits = simulate_exits(policy.with_setting(value), self.views)
                taken = torch.tensor([self.exits_seen[job][id(batch)] for batch in self.single])
                agreement = (taken == exits[self.sample]).float().mean()  # real runs against simulated exits
                rows.append(
                    {
                        "kind": "sledge",
                        "model": self.name,
                        "name": job if several else f"{label}@{value:g}",
                        "policy": f"{self.name}, {label}" if several else label,
                        "setting": policy.setting,
                        "value": value,
                        **({"threshold": value} if policy.setting == "threshold" else {}),
                        **self.score(exits),
                        **_exit_statistics(exits, layers),
                        "seconds_per_instance": seconds[f"{job}/1"] / n_timed,
                        "instances_per_second": n_timed / seconds[f"{job}/b"],
                        "exit_agreement": float(agreement),
                    }
                )
        if self.oracle:
            correct = (self.logits.argmax(dim=-1) == self.labels).T  # (N, exits)
            oracle = oracle_exits(correct)
            per_exit = torch.tensor(
                [seconds[f"{self.name}:exit{j}/1"] / n_timed for j in range(len(layers))]
            )
            rows.append(
                {
                    "kind": "oracle",
                    "model": self.name,
                    "name": "oracle",
                    **self.score(oracle),
                    **_exit_statistics(oracle, layers),
                    # Each instance costs the measured batch-1 time of running to its oracle exit.
                    "seconds_per_instance": float(per_exit[oracle].mean()),
                }
            )
        return rows


def _curves(
    policies: list[tuple[ExitPolicy, list[float] | None]], thresholds: list[float] | None, core
) -> list[tuple[str, ExitPolicy, list[float]]]:
    """(label, policy, settings) per curve, each policy checked against the model."""
    curves, labels = [], set()
    for policy, values in policies:
        try:
            policy.check(core.regression, core.lte is not None)
        except SledgeError as error:
            raise SledgeError(f"--policy: {error}") from None
        label = policy.describe()
        if label in labels:
            raise SledgeError(
                f"--policy: {label!r} is given twice; give each policy once, with all its values"
            )
        labels.add(label)
        values = values or default_values(policy, thresholds, len(core.layer_indices))
        curves.append((label, policy, [_setting(policy, v, "--policy").value() for v in values]))
    return curves


def _scorer(logits: torch.Tensor, labels: torch.Tensor, regression: bool):
    """The task's metric of the predictions that `exits` (one per instance) select from the full pass."""
    rows = torch.arange(logits.size(1))

    def score(exits: torch.Tensor) -> dict[str, float]:
        taken = logits[exits, rows]
        if not regression:
            return {"accuracy": float((taken.argmax(dim=-1) == labels).float().mean())}
        predictions, gold = taken[:, 0].double().numpy(), labels.double().numpy()
        if predictions.std() == 0 or gold.std() == 0:
            return {"pearson": 0.0, "spearman": 0.0}
        return {"pearson": float(stats.pearsonr(predictions, gold)[0]),
                "spearman": float(stats.spearmanr(predictions, gold)[0])}

    return score


def _exit_statistics(exits: torch.Tensor, layers: list[int]) -> dict:
    shares = torch.bincount(exits, minlength=len(layers)).double() / len(exits)
    return {
        "average_exit_layer": float((shares * torch.tensor(layers, dtype=torch.float64)).sum()),
        "exit_shares": {str(layer): float(share) for layer, share in zip(layers, shares)},
    }


CSV_COLUMNS = [
    "kind", "name", "policy", "setting", "value", "threshold", "accuracy", "pearson", "spearman",
    "average_exit_layer", "seconds_per_instance", "instances_per_second", "relative_time", "exit_agreement",
]


def write_outputs(rows: list[dict], info: dict, output_dir: Path) -> None:
    """sweep.json ({"info", "rows"}), sweep.csv (one line a row, exit shares as columns), sweep.png."""
    report = json.dumps({"info": info, "rows": rows}, indent=2).encode()
    share_columns = [f"exit_share_layer_{layer}" for layer in info["exit_layers"]]
    metric_columns = ["pearson", "spearman"] if info.get("metric") == "pearson" else ["accuracy"]
    columns = [c for c in CSV_COLUMNS if c not in {"accuracy", "pearson", "spearman"} - set(metric_columns)]
    text = io.StringIO()
    writer = csv.DictWriter(text, columns + share_columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        shares = {f"exit_share_layer_{layer}": share for layer, share in row.get("exit_shares", {}).items()}
        writer.writerow({**row, **shares})
    files = {"sweep.json": report, "sweep.csv": text.getvalue().encode(), "sweep.png": plot(rows, info)}
    write_files(output_dir, files)


COLOURS = ["tab:blue", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "tab:olive"]


def plot(rows: list[dict], info: dict, title: str | None = None) -> bytes:
    """
    Each policy's curve of the task's metric against processing time relative to the standard
    baseline (the paper's Figure 3), the oracle and the baselines, as PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = info.get("metric", "accuracy")
    figure, axes = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    labels = list(dict.fromkeys(row.get("policy", "confidence") for row in rows if row["kind"] == "sledge"))
    for colour, label in zip(COLOURS * 3, labels):
        curve = [row for row in rows if row["kind"] == "sledge" and row.get("policy", "confidence") == label]
        curve.sort(key=lambda row: (row["average_exit_layer"], row["relative_time"]))
        axes.plot([row["relative_time"] for row in curve], [row[metric] for row in curve], "o-",
                  color=colour, markersize=4, label=f"sledge, {label}")
        for row in curve:
            value = row.get("value", row.get("threshold"))
            axes.annotate(f"{value:g}", (row["relative_time"], row[metric]), textcoords="offset points",
                          xytext=(4, -10), fontsize=6, color=colour)
    for row in rows:
        if row["kind"] == "baseline":
            axes.plot(row["relative_time"], row[metric], "s", color="tab:orange")
            axes.annotate(row["name"], (row["relative_time"], row[metric]),
                          textcoords="offset points", xytext=(5, 4), fontsize=8)
        elif row["kind"] == "reference":
            axes.plot(row["relative_time"], row.get(metric, float("nan")), "x", color="black")
            axes.annotate(row["name"], (row["relative_time"], row.get(metric, float("nan"))),
                          textcoords="offset points", xytext=(5, -10), fontsize=7)
        elif row["kind"] == "oracle":
            axes.plot(row["relative_time"], row[metric], "*", markersize=12, color="tab:green",
                      label="oracle")
    if any(row["kind"] == "baseline" for row in rows):
        axes.plot([], [], "s", color="tab:orange", label="baselines")
    line = next((row for row in rows if row["name"] == info.get("reference_line")), None)
    if line is not None:  # the runtime a user would pick instead: its accuracy and its time
        axes.axhline(line[metric], color="black", linestyle="--", linewidth=0.8, label=line["name"])
        axes.axvline(line["relative_time"], color="black", linestyle=":", linewidth=0.8)
    axes.set_xlabel(f"time per instance, batch 1, relative to {rows[0]['standard']}")
    axes.set_ylabel("Pearson's r" if metric == "pearson" else "accuracy")
    axes.set_title(title or f"{Path(info['data']).name}: {info['instances']} instances")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    return figure_png(figure)


def print_table(rows: list[dict]) -> None:
    metric = "pearson" if "pearson" in rows[0] else "accuracy"
    print(f"{'name':>28} {metric:>9} {'avg layer':>9} {'s/inst (b1)':>12} {'inst/s (batched)':>17} "
          f"{'rel. time':>9}")
    for row in rows:
        batched = row.get("instances_per_second")
        print(f"{row['name']:>28} {row[metric]:>9.4f} {row['average_exit_layer']:>9.2f} "
              f"{row['seconds_per_instance']:>12.5f} {'-' if batched is None else f'{batched:.1f}':>17} "
              f"{row['relative_time']:>9.3f}")
