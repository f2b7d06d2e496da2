"""What one request may ask of the server: each bound is an `allennlp serve` option, checked before any work
is queued, so that one client cannot freeze the server or make it grow for the others."""

import json
import re
from dataclasses import dataclass

# A cut looks this far back for a space, so that the words kept are whole (WordPiece reads a word of more
# than 100 characters as one unknown token anyway).
WORD_LOOKBACK = 100


@dataclass(frozen=True)
class RequestLimits:
    """
    The limits of one request (the `serve` option of each in brackets; what a client sees, in the docs).

    Parameters
    ----------
    max_body_bytes : `int`, optional (default = `1 MiB`)
        The largest body (`--max-body-bytes`): a larger one is answered 413 before it is read, from its
        Content-Length, or as soon as that many bytes have come.
    max_instances : `int`, optional (default = `256`)
        The most instances in one request (`--max-instances`): more are answered 413 before any is
        tokenized.
    max_text_chars : `int`, optional (default = `10000`)
        Longer texts are cut to this many characters before they are tokenized (at a space where there
        is one) and their answer says `truncated` (`--max-text-chars`).
    max_json_depth : `int`, optional (default = `32`)
        The deepest nesting of arrays and objects in a body (`--max-json-depth`): deeper is 400.
    timeout_s : `float`, optional (default = `60.0`)
        A request not answered this long after it arrived is answered 503 if it was still waiting for the
        model, 504 if the model had started on it, and its work is dropped (`--request-timeout-s`); a
        body still not complete by then is answered 408.
    """

    max_body_bytes: int = 1024 * 1024
    max_instances: int = 256
    max_text_chars: int = 10_000
    max_json_depth: int = 32
    timeout_s: float = 60.0


class TooManyItems(ValueError):
    """A JSON array with more items than allowed (its first `limit` were read, and another begins)."""


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def parse_json(body: bytes, max_items: int) -> object:
    """
    The JSON value of `body` (as `json.loads` reads it, in any of the encodings it detects); but a
    top-level array is read one item at a time, and `TooManyItems` is raised as soon as item
    `max_items + 1` begins: a request of 20,000 instances costs the parse of 257 of them, not of all.
    Invalid JSON raises `ValueError` (a `json.JSONDecodeError`, its position in the text), nesting too
    deep for the parser `RecursionError`, as `json.loads` does.
    """
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    start = _SPACE.match(text).end()
    if not text.startswith("[", start):
        return json.loads(text)
    items, position = [], _SPACE.match(text, start + 1).end()
    if not text.startswith("]", position):
        while True:
            if len(items) == max_items:
                raise TooManyItems(f"more than {max_items} items")
            item, position = _DECODER.raw_decode(text, position)
            items.append(item)
            position = _SPACE.match(text, position).end()
            if text.startswith(",", position):
                position = _SPACE.match(text, position + 1).end()
            elif text.startswith("]", position):
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
    end = _SPACE.match(text, position + 1).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return items


def too_deep(value: object, limit: int) -> bool:
    """Whether the parsed JSON `value` nests arrays and objects more than `limit` deep (`[{}]` is 2): one
    level at a time, visiting each array and object once."""
    level, depth = ([value] if isinstance(value, (dict, list)) else []), 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for item in level:
            for child in item.values() if isinstance(item, dict) else item:
                if isinstance(child, (dict, list)):
                    below.append(child)
        level = below
    return False


def cut_text(text: str, limit: int) -> str:
    """
    `text` cut to at most `limit` characters: at the last whitespace of its last `WORD_LOOKBACK`
    characters where there is one, so that every word kept is whole and a tokenizer that splits at
    whitespace (WordPiece, byte-level BPE, SentencePiece) gives the first tokens of the whole text;
    else at `limit`. A text that fits is returned as it is.
    """
    if len(text) <= limit:
        return text
    if text[limit].isspace():
        return text[:limit]
    for position in range(limit - 1, max(limit - WORD_LOOKBACK, 0) - 1, -1):
        if text[position].isspace():
            return text[:position]
    return text[:limit]
