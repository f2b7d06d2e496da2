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


class InvalidTextError(SledgeError):
    """A text no tokenizer can take: it holds a lone surrogate (half of a UTF-16 pair, such as the JSON
    escape `\\ud800` alone), which is not a character. The message names the key or line."""


def text_problem(text: str) -> str | None:
    """What makes `text` something no tokenizer can take, or None: every character must be one Unicode
    can encode (UTF-8), which a lone surrogate is not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        return (
            f"holds a lone surrogate (\\u{code:04x} at character {error.start + 1}): half of a UTF-16 pair, "
            "not text"
        )
    return None
