"""`allennlp score`: early-exit scoring of a corpus on a Ray Data actor pool, resumable (`sledge[ray]`)."""

import argparse
import sys

from allennlp.commands.subcommand import Subcommand

from sledge.commands.arguments import positive_int


@Subcommand.register("score")
class Score(Subcommand):
    """Score files of JSON lines, CSV or Parquet with a sledge model on Ray, into part files."""

    def add_subparser(self, parser: argparse._SubParsersAction) -> argparse.ArgumentParser:
        description = (
            "Score every row of the inputs (files or globs of JSON lines, CSV or Parquet with the "
            "Predictor's keys: 'sentence', or 'premise' and 'hypothesis') with a sledge archive, as "
            "`allennlp predict` does (the same Predictor, -o overrides, --batch-size), on a pool of Ray "
            "actors that each load the model once; rows are batched by length. Writes part files "
            "(part-NNNNN.parquet or .jsonl: file, row, line and the prediction, with truncated) to "
            "--output-dir, with manifest.json and summary.json (rows, rows/s, exit shares, errors). "
            "Every row is checked first: a bad row stops the run before any work (--skip-bad-rows "
            "scores the rest and lists them in bad_rows.jsonl). Interrupted, the same command resumes: "
            "finished parts are kept, the rest is scored. Needs Ray: pip install 'sledge[ray]'."
        )
        subparser = parser.add_parser(
            self.name, description=description, help="Score a corpus with a sledge model on Ray."
        )
        subparser.add_argument("archive_file", help="a sledge model.tar.gz (multi-exit or cascade)")
        subparser.add_argument(
            "inputs", nargs="+", help="input files or globs (quoted): .jsonl/.json, .csv, .parquet"
        )
        subparser.add_argument("--output-dir", required=True, help="where the parts and summary go")
        subparser.add_argument(
            "-o",
            "--overrides",
            default="",
            help="model settings as `allennlp predict` takes them, e.g. "
            "'{\"model.confidence_threshold\": 0.9}'",
        )
        subparser.add_argument("--batch-size", type=positive_int, default=32, help="rows per model call")
        subparser.add_argument(
            "--cuda-device",
            type=int,
            default=-1,
            help="-1: CPU; >= 0: each actor runs on one GPU that Ray gives it",
        )
        subparser.add_argument(
            "--output-format", choices=["parquet", "jsonl"], default="parquet", help="of the part files"
        )
        subparser.add_argument(
            "--rows-per-part",
            type=positive_int,
            default=4096,
            help="input rows per part: the unit of work, of output files and of resuming",
        )
        subparser.add_argument(
            "--skip-bad-rows",
            action="store_true",
            help="score the good rows and list the bad ones in bad_rows.jsonl (default: stop before any "
            "work, naming them)",
        )
        subparser.add_argument(
            "--actors",
            type=positive_int,
            default=None,
            help="model replicas (default: the cluster's CPUs / --cpus-per-actor, or its GPUs)",
        )
        subparser.add_argument(
            "--cpus-per-actor", type=positive_int, default=1, help="CPUs (and torch threads) per actor"
        )
        subparser.add_argument(
            "--ray-address",
            default=None,
            help="join this Ray cluster (e.g. ray://head:10001 or auto); default: start a local Ray on all "
            "cores, stopped at the end",
        )
        subparser.add_argument("--silent", action="store_true", help="no progress bar")
        subparser.set_defaults(func=score_from_args)
        return subparser


def score_from_args(args: argparse.Namespace) -> None:
    from sledge.scoring import score_files

    try:
        summary = score_files(
            args.archive_file,
            args.inputs,
            args.output_dir,
            overrides=args.overrides,
            batch_size=args.batch_size,
            output_format=args.output_format,
            rows_per_part=args.rows_per_part,
            skip_bad_rows=args.skip_bad_rows,
            actors=args.actors,
            cpus_per_actor=args.cpus_per_actor,
            cuda_device=args.cuda_device,
            ray_address=args.ray_address,
            progress=not args.silent,
        )
    except KeyboardInterrupt:
        print(
            f"allennlp score: interrupted; the finished parts are in {args.output_dir}: run the same "
            "command again to score the rest",
            file=sys.stderr,
        )
        sys.exit(130)
    print(describe(summary, args.output_dir))


def describe(summary: dict, output_dir: str) -> str:
    """The summary in a few lines."""
    lines = [
        f"allennlp score: {summary['rows']:,} rows in {summary['parts']} parts in {output_dir} "
        f"({summary['parts_resumed']} parts, {summary['rows_resumed']:,} rows kept from an earlier run)"
    ]
    if summary["rows_scored"]:
        lines.append(
            f"  scored {summary['rows_scored']:,} rows in {summary['seconds']:.1f} s "
            f"({summary['rows_per_second']:,.1f} rows/s) on {summary['actors']} actors; Ray start-up "
            f"{summary['ray_start_seconds']:.1f} s"
        )
    shares = ", ".join(f"layer {layer} {share:.1%}" for layer, share in summary["exit_shares"].items())
    lines.append(f"  exit shares: {shares}; average exit layer {summary['average_exit_layer']}")
    if summary["truncated"]:
        lines.append(f"  {summary['truncated']:,} rows cut to the reader's max_length (truncated)")
    if summary["bad_rows"]:
        lines.append(f"  {summary['bad_rows']:,} bad rows skipped, listed in {output_dir}/bad_rows.jsonl")
    return "\n".join(lines)
