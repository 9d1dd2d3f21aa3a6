"""RFC 8785 (JSON Canonicalization Scheme): the bytes that envelopes and tokens sign.

Two paths give the same bytes. Most envelopes hold only strings, safe integers, booleans, nulls,
objects and arrays, with no key outside the Basic Multilingual Plane; for those, the standard
library's C encoder (sorted keys, compact separators, no ASCII escaping) already writes exactly
the JCS form, because its string escaping is JCS's and code point order equals UTF-16 order on
such keys. One cheap walk decides that; anything else (floats, astral keys, non-dict mappings,
tuples) goes through a complete serializer written here, which formats numbers as ECMAScript
does and sorts keys by UTF-16 code units. The `rfc8785` package is the reference the tests
compare both paths against; it is several times slower on a typical envelope (see bench/).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from json.encoder import encode_basestring

from identity.errors import InvalidJson

MAX_SAFE_INTEGER = 2**53 - 1

_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    separators=(",", ":"),
    sort_keys=True,
    allow_nan=False,
    check_circular=False,
)


def canonicalize(obj: object) -> bytes:
    """Serialise a JSON value in RFC 8785 canonical form, as UTF-8 bytes.

    Raises:
        InvalidJson: the value is not I-JSON: NaN or infinity, an integer beyond ±(2**53 - 1),
            a lone surrogate, a non-string key, a value of a non-JSON type, or nesting too deep.
    """
    try:
        if is_plain(obj):
            return _ENCODER.encode(obj).encode("utf-8")
    except RecursionError:
        raise InvalidJson("the JSON value is nested too deeply to canonicalise") from None
    except UnicodeEncodeError:
        pass  # a lone surrogate: the complete serializer below names where it is
    parts: list[str] = []
    try:
        _write(obj, parts, "$")
    except RecursionError:
        raise InvalidJson("the JSON value is nested too deeply to canonicalise") from None
    return "".join(parts).encode("utf-8")


def canonicalize_plain(obj: object) -> bytes:
    """`canonicalize` for a value the caller has already shown `is_plain`: skips that walk.

    The envelope parser uses this: it has checked every member of its own shape and only
    needs `is_plain` on the free-form parts (`meta` and data parts).
    """
    try:
        return _ENCODER.encode(obj).encode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError):
        return canonicalize(obj)  # the complete serializer raises the precise error


def is_plain(value: object) -> bool:
    """Tell whether the standard encoder's output for `value` is already canonical.

    Plain means: dicts, lists, strings, booleans, nulls and integers within ±(2**53 - 1), and
    no member name outside the Basic Multilingual Plane. Floats are not plain.
    """
    kind = type(value)
    if kind is dict:
        try:
            names = "".join(value)  # type: ignore[arg-type]
        except TypeError:
            return False  # a non-string member name: the complete serializer refuses it
        if not names.isascii() and max(names) > "\uffff":
            return False  # astral names: code point order may differ from UTF-16 order
        for item in value.values():  # type: ignore[attr-defined]
            item_kind = type(item)
            if item_kind is str or item is None or item_kind is bool:
                continue
            if item_kind is int:
                if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    continue
                return False
            if (item_kind is dict or item_kind is list) and is_plain(item):
                continue
            return False
        return True
    if kind is list:
        for item in value:  # type: ignore[attr-defined]
            item_kind = type(item)
            if item_kind is str or item is None or item_kind is bool:
                continue
            if item_kind is int:
                if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    continue
                return False
            if (item_kind is dict or item_kind is list) and is_plain(item):
                continue
            return False
        return True
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    return False


def _write(value: object, out: list[str], path: str) -> None:
    """Append the canonical text of `value` to `out`; `path` locates errors (`$.a[0]`)."""
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value, path))
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise InvalidJson(
                f"the integer at {path} is beyond ±(2**53 - 1), which JSON numbers cannot "
                "carry exactly; send it as a string",
                path=path,
            )
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(format_number(value, path))
    elif isinstance(value, Mapping):
        _write_object(value, out, path)
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out, f"{path}[{index}]")
        out.append("]")
    else:
        raise InvalidJson(
            f"the value at {path} is a {type(value).__name__}, which is not a JSON type",
            path=path,
        )


def _write_object(value: Mapping[object, object], out: list[str], path: str) -> None:
    """Append an object with its members sorted by the UTF-16 code units of their names."""
    keyed: list[tuple[bytes, str, object]] = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidJson(f"the object at {path} has a non-string member name", path=path)
        try:
            order = key.encode("utf-16-be")
        except UnicodeEncodeError:
            raise InvalidJson(
                f"a member name in the object at {path} holds a lone surrogate", path=path
            ) from None
        keyed.append((order, key, item))
    keyed.sort(key=lambda entry: entry[0])
    out.append("{")
    for index, (_, key, item) in enumerate(keyed):
        if index:
            out.append(",")
        out.append(_string(key, path))
        out.append(":")
        _write(item, out, f"{path}.{key}")
    out.append("}")


def _string(text: str, path: str) -> str:
    """Quote a string as JCS does: escape only '"', '\\' and control characters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson(
            f"the string at {path} holds a lone surrogate, which is not Unicode text", path=path
        ) from None
    return encode_basestring(text)


def format_number(number: float, path: str = "$") -> str:
    """Write a float as ECMAScript's Number.prototype.toString does (RFC 8785 section 3.2.2.3).

    Python's `repr` already picks the shortest digits that round-trip, which is the digit string
    ECMAScript uses; only the layout (where the point goes, when an exponent appears) differs.
    """
    if math.isnan(number) or math.isinf(number):
        raise InvalidJson(f"the number at {path} is NaN or infinite, which JSON cannot carry")
    if number == 0:
        return "0"
    if number < 0:
        return "-" + format_number(-number, path)
    mantissa, _, exponent = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value = 0.<digits> * 10**point
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    power = point - 1
    head = digits[0] + ("." + digits[1:] if count > 1 else "")
    return f"{head}e{'+' if power >= 0 else '-'}{abs(power)}"
