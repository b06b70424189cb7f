"""What a session can hold: JSON's types, checked where a value is set.

The session travels as JSON inside the cookie, so a value comes back as it went in only
when it is ``str``, ``int``, ``float``, ``bool``, ``None``, a ``list`` of those, or a
``dict`` with ``str`` keys of those. Anything else would change type on the way (a
datetime into a string, a tuple into a list, an int key into a str key) or fail when the
cookie is written, after the endpoint returned: :func:`check_value` refuses it at once.
"""

from __future__ import annotations

from math import isfinite
from typing import Any

__all__ = ["PLAIN", "check_value"]

PLAIN = frozenset({str, bool, type(None)})  # always stored as they are

# orjson's own limits: 64-bit integers, 255 levels of nesting.
MIN_INT = -(1 << 63)
MAX_INT = (1 << 64) - 1
MAX_DEPTH = 254

HINTS = {
    "datetime": "a datetime (store value.isoformat() or a timestamp)",
    "date": "a date (store value.isoformat())",
    "time": "a time (store value.isoformat())",
    "tuple": "a tuple (it would come back as a list: store a list)",
    "set": "a set (store a sorted list)",
    "frozenset": "a frozenset (store a sorted list)",
    "bytes": "bytes (store text, e.g. base64)",
    "bytearray": "a bytearray (store text, e.g. base64)",
    "Decimal": "a Decimal (store str(value))",
    "UUID": "a UUID (store str(value))",
}


def check_value(key: object, value: Any, *, claim: bool = False) -> None:
    """Raise ``TypeError`` naming ``key`` unless ``session[key] = value`` (or the claim
    ``key=value`` given to ``login()``) would come back from the cookie as it is."""
    if type(key) is str and storable(value, 0):
        return
    if type(key) is not str:
        raise TypeError(f"session keys are strings, not {type(key).__name__} ({key!r}): "
                        "the cookie's JSON would give it back as a string")
    found = problem(value, 0)
    if found is not None:
        where, what = found
        name = f"the claim {key}" if claim else f"session[{key!r}]"
        holds = "a claim holds" if claim else "a session holds"
        raise TypeError(f"{name}{where} is {what}; {holds} str, int, float, bool, None, "
                        "and lists and dicts (with str keys) of them")


def storable(value: Any, depth: int) -> bool:
    """The quick answer for the common types: True when ``value`` is stored as it is.
    False may also mean a subclass (a ``StrEnum``), which :func:`problem` judges."""
    kind = type(value)
    if kind in PLAIN:
        return True
    if kind is int:
        return bool(MIN_INT <= value <= MAX_INT)
    if kind is float:
        return isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    if kind is list:
        for item in value:
            if type(item) not in PLAIN and not storable(item, depth + 1):
                return False
        return True
    if kind is dict:
        for name, item in value.items():
            if type(name) is not str or (
                    type(item) not in PLAIN and not storable(item, depth + 1)):
                return False
        return True
    return False


def problem(value: Any, depth: int) -> tuple[str, str] | None:
    """``(where, what)`` of the first part of ``value`` JSON cannot give back, or ``None``."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return None
    if isinstance(value, int):  # int, and IntEnum: back as the equal int
        if MIN_INT <= value <= MAX_INT:
            return None
        return "", "an int beyond 64 bits (store str(value))"
    if isinstance(value, float):
        return None if isfinite(value) else ("", f"{value} (JSON has no {value})")
    if isinstance(value, str):  # StrEnum: back as the equal str
        return None
    if depth >= MAX_DEPTH and isinstance(value, (list, dict)):
        return "", f"nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = problem(item, depth + 1)
            if found is not None:
                return f"[{index}]{found[0]}", found[1]
        return None
    if isinstance(value, dict):
        for name, item in value.items():
            if type(name) is not str:
                return "", (f"a dict with a {type(name).__name__} key ({name!r}): it would "
                            "come back as a string")
            found = problem(item, depth + 1)
            if found is not None:
                return f"[{name!r}]{found[0]}", found[1]
        return None
    return "", HINTS.get(kind.__name__, f"a {kind.__name__}")
