"""The errors sledge raises for bad input: each message names what is wrong and where."""

from pathlib import Path


class SledgeError(ValueError):
    """
    Bad input from the user (a file, a line, an option, a config key, an archive). Under the
    `allennlp` command line such an error is printed as one message, without a traceback (set
    `SLEDGE_TRACEBACK=1` to see it).
    """


class MalformedInputError(SledgeError):
    """A line of a data file that does not have the reader's format; the message names file and line."""

    def __init__(self, file_path: str | Path, line_number: int, problem: str) -> None:
        super().__init__(f"{file_path}, line {line_number}: {problem}")


class ArchiveError(SledgeError):
    """A model archive that cannot be loaded safely: unreadable, not an archive, or with unsafe contents."""
