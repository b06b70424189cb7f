"""The 0.1 spellings of the middleware's options, and the error that names their 0.2
spelling (CHANGELOG.md, "Upgrading from 0.1")."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

__all__ = ["FORMAT_OPTIONS", "FRESHNESS_OPTIONS", "names_new_spellings", "old_options_error"]

MIDDLEWARE = "JWTSessionMiddleware"
P = ParamSpec("P")
R = TypeVar("R")

# 0.1 keyword -> the keyword of the object that takes it now (None: its first argument)
FRESHNESS_OPTIONS: Mapping[str, str | None] = {
    "store": None, "user_loader": None, "feed": "feed",
    "revalidate_after": "revalidate_after", "on_store_error": "on_store_error",
}
FORMAT_OPTIONS: Mapping[str, str] = {
    "authjs_write": "write", "role_claim": "role_claim", "default_role": "default_role",
}


def shown(name: str, value: object) -> str:
    """``value`` as code when it is a plain value, else its old keyword's name."""
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    return name


def old_options_error(options: Mapping[str, object], format: object = None,
                      owner: str = MIDDLEWARE) -> TypeError:
    """The ``TypeError`` for options ``owner`` does not take (``options``) or a 0.1
    ``format=`` string: for 0.1's options it names what to write instead."""
    unknown = [name for name in options
               if name not in FRESHNESS_OPTIONS and name not in FORMAT_OPTIONS]
    if unknown:
        return TypeError(f"{owner}() got an unexpected keyword argument {unknown[0]!r}")
    old_format = isinstance(format, str)
    given = [f"{name}=" for name in options]
    spellings = []
    freshness = [(name, value) for name, value in options.items()
                 if name in FRESHNESS_OPTIONS]
    if freshness:
        source = next((name for name, _ in freshness if FRESHNESS_OPTIONS[name] is None),
                      "store")
        rest = [f"{FRESHNESS_OPTIONS[name]}={shown(name, value)}"
                for name, value in freshness if FRESHNESS_OPTIONS[name] is not None]
        spellings.append(f"freshness=Freshness({', '.join([source, *rest])}) "
                         "(from asgi_jwt_session.freshness import Freshness)")
    authjs = [f"{FORMAT_OPTIONS[name]}={shown(name, value)}"
              for name, value in options.items() if name in FORMAT_OPTIONS]
    if old_format:
        given.insert(0, f"format={format!r}")
    if format == "authjs" or authjs:
        spellings.append(f"format=AuthJSFormat({', '.join(authjs)}) "
                         "(from asgi_jwt_session.authjs import AuthJSFormat)")
    elif old_format:
        spellings.append("nothing for format= (this package's tokens are the default)")
    where = "" if owner == MIDDLEWARE else f" to {MIDDLEWARE}, not {owner}"
    return TypeError(
        f"{owner}() takes no {', '.join(given)} since 0.2: pass "
        f"{' and '.join(spellings)}{where}. See 'Upgrading from 0.1' in CHANGELOG.md.")


def names_new_spellings(init: Callable[P, R]) -> Callable[P, R]:
    """Decorator for the ``__init__`` of ``JWTSessionMiddleware`` and ``SessionConfig``:
    a keyword it does not take, or a ``format=`` string, raises
    :func:`old_options_error` before the call. The signature type checkers see is
    ``init``'s own."""
    takes = set(inspect.signature(init).parameters)
    owner = init.__qualname__.partition(".")[0]

    @functools.wraps(init)
    def checked(*args: Any, **kwargs: Any) -> Any:
        unknown = {name: value for name, value in kwargs.items() if name not in takes}
        format = unknown.pop("format", kwargs.get("format"))  # 0.1's SessionConfig had it
        if unknown or isinstance(format, str):
            raise old_options_error(unknown, format, owner)
        return init(*args, **kwargs)

    return checked
