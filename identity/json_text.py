"""Reading JSON text that comes from outside, within what the gateway can hold.

Python's parser fails on two kinds of valid JSON without saying where: an integer of more
digits than `sys.get_int_max_str_digits()` converts (4,300 unless configured) raises a bare
`ValueError`, and nesting deeper than the interpreter's recursion limit raises `RecursionError`.
That second limit is no fixed number: it depends on how deep the stack already is, so a
document nested near it may parse where it is received and fail where it is read again (an
inbox, a webhook body). So the gateway reads JSON nested at most `MAX_DEPTH` levels (each
array or object is one level; a scalar alone is none) and refuses deeper documents however
they fail, and both refusals are `JsonBeyondLimits` (code `invalid_json`) naming the place.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from identity.errors import InvalidJson, JsonBeyondLimits

MAX_DEPTH = 128

_PLAIN = json.JSONDecoder()
# Outside strings, the tokens that matter for locating a limit: brackets and whole numbers
# (a number's fraction and exponent belong to it, so their digits are never mistaken for an
# integer of their own). Only used once a document has been refused.
_TOKEN = re.compile(
    r'"(?:[^"\\]|\\.)*"'
    r"|(?P<open>[\[{])|(?P<close>[\]}])"
    r"|(?P<integer>-?[0-9]+)(?P<fraction>\.[0-9]*)?(?P<exponent>[eE][-+]?[0-9]*)?"
)


def load(data: str | bytes, what: str = "the body", decoder: json.JSONDecoder = _PLAIN) -> object:
    """Parse one JSON document (UTF-8 if bytes) with `decoder` (the standard one unless told).

    `what` names the document in details ("the body", "the answer").

    Raises:
        InvalidJson: not UTF-8, or not JSON (with line, column and character position); and
            whatever `decoder`'s hooks raise.
        JsonBeyondLimits: an integer of more digits than Python converts, or nesting deeper
            than `MAX_DEPTH`, with where it is.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJson(
                f"{what} is not UTF-8: byte {exc.start} cannot be decoded", position=exc.start
            ) from None
    else:
        text = data
    try:
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(character {exc.pos})",
            line=exc.lineno,
            column=exc.colno,
            position=exc.pos,
        ) from None
    except RecursionError:
        raise too_deep(text, what) from None
    except ValueError as exc:  # the only other failure: an integer too long to convert
        raise _too_long(text, what, exc) from None
    # An array or object per level takes at least one bracket: most documents have fewer
    # brackets in all than the limit, and need no walk.
    if text.count("[") + text.count("{") > MAX_DEPTH and depth_exceeds(value, MAX_DEPTH):
        raise too_deep(text, what)
    return value


def depth_exceeds(value: object, limit: int) -> bool:
    """Whether `value` nests arrays and objects more than `limit` levels deep (no recursion).

    Only non-empty containers are walked into, with exact type checks: a body of many small
    arrays (a 255 KiB `[[],[],...]` sent before any credential is checked) costs about what
    decoding it did, where a walk of every element cost five times that."""
    kinds = (dict, list)
    if type(value) not in kinds:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        inner = depth + 1
        for item in node.values() if type(node) is dict else node:
            if type(item) in kinds:
                if item:
                    stack.append((item, inner))
                elif inner > limit:  # an empty array or object is a level too
                    return True
    return False


def too_deep(text: str | None, what: str) -> JsonBeyondLimits:
    """The refusal of a document nested deeper than `MAX_DEPTH`, placed when `text` is known."""
    place, fields = "", dict[str, int]()
    if text is not None:
        depth = 0
        for token in _TOKEN.finditer(text):
            if token.lastgroup == "open":
                depth += 1
                if depth > MAX_DEPTH:
                    place, fields = _place(text, token.start())
                    break
            elif token.lastgroup == "close":
                depth -= 1
    return JsonBeyondLimits(
        f"{what} nests arrays and objects more than {MAX_DEPTH} levels deep{place}; the "
        f"gateway reads JSON nested at most {MAX_DEPTH} levels",
        limit=MAX_DEPTH,
        **fields,
    )


def _too_long(text: str, what: str, exc: ValueError) -> JsonBeyondLimits:
    limit = sys.get_int_max_str_digits()
    for token in _TOKEN.finditer(text):
        integer = token.group("integer")
        if (
            integer is not None
            and token.group("fraction") is None
            and token.group("exponent") is None
            and len(integer.lstrip("-")) > limit
        ):
            place, fields = _place(text, token.start())
            digits = len(integer.lstrip("-"))
            return JsonBeyondLimits(
                f"{what} holds an integer of {digits} digits{place}; the gateway reads "
                f"integers of at most {limit} digits: send a longer number as a string",
                digits=digits,
                limit=limit,
                **fields,
            )
    return JsonBeyondLimits(f"{what} is JSON the gateway cannot read: {exc}")


def _place(text: str, position: int) -> tuple[str, dict[str, int]]:
    """' at line L column C (character P)', as the parser's own errors say it, and fields."""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    where = f" at line {line} column {column} (character {position})"
    return where, {"line": line, "column": column, "position": position}
