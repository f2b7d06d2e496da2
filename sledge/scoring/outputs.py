"""
The output parts of `allennlp score`: one file per part (Parquet or JSON lines), written whole under
a temporary name and renamed, so a part file that exists is complete; `verify_part` checks one
against the number of rows it must hold before a resumed run trusts it.
"""

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from sledge.files import partial_path

EXTENSIONS = {"parquet": ".parquet", "jsonl": ".jsonl"}


def schema(names: list[str]):
    """The Arrow schema of these columns of score's output."""
    import pyarrow as pa

    types = {"file": pa.string(), "row": pa.int64(), "line": pa.int64(), "label": pa.string(),
             "probs": pa.list_(pa.float64()), "score": pa.float64(), "exit_layer": pa.int64(),
             "exit_index": pa.int64(), "exit_model": pa.int64(), "confidence": pa.float64(),
             "certainty": pa.float64(), "truncated": pa.bool_(), "error": pa.string()}
    return pa.schema([pa.field(name, types[name]) for name in names])


def write_part(path: Path, rows: list[dict[str, Any]], format: str, columns: list[str]) -> None:
    """Write `rows` (dicts of `columns`) to `path` (temporary name first, renamed when complete)."""
    with partial_path(path) as partial:
        if format == "jsonl":
            with open(partial, "w", encoding="utf-8") as file:
                file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows, schema=schema(columns)), partial)


def verify_part(path: Path, format: str, expected_rows: int) -> tuple[Counter, int] | None:
    """The counts of exit layers and the number of truncated rows of a finished part, or None if it
    is missing, unreadable or does not hold `expected_rows` rows (then it is scored again)."""
    if not path.is_file():
        return None
    try:
        if format == "jsonl":
            with open(path, encoding="utf-8") as file:
                rows = [json.loads(line) for line in file]
            layers, truncated = [row["exit_layer"] for row in rows], [row["truncated"] for row in rows]
        else:
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            if parquet.metadata.num_rows != expected_rows:
                return None
            table = parquet.read(columns=["exit_layer", "truncated"])
            layers, truncated = table.column(0).to_pylist(), table.column(1).to_pylist()
    except Exception:  # a damaged file: JSON, Arrow and I/O errors alike
        return None
    if len(layers) != expected_rows:
        return None
    return Counter(layers), sum(map(bool, truncated))


def remove_partials(directory: Path) -> list[str]:
    """Remove the temporary files of parts whose writing was interrupted; their names."""
    removed = []
    for entry in os.scandir(directory):
        if entry.name.startswith(".part-") and entry.name.endswith(".partial"):
            os.remove(entry.path)
            removed.append(entry.name)
    return removed
