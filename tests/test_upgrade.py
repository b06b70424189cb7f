"""Code written for 0.1: its middleware options fail at once with a TypeError naming
their 0.2 spelling, and that spelling works (CHANGELOG.md, "Upgrading from 0.1")."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, Role, SessionConfig, login, require_role
from asgi_jwt_session.authjs import AuthJSFormat
from asgi_jwt_session.freshness import Freshness, VersionFeed
from tests.conftest import SECRET


async def load_user(user_id: str) -> tuple[str, int] | None:
    return ("ADMIN", 1) if user_id == "ann" else None


STORE = object()  # stands for a 0.1 RoleStore: the check fails before any use of it


@pytest.mark.parametrize(("old", "new"), [
    ({"store": STORE}, "freshness=Freshness(store)"),
    ({"user_loader": load_user}, "freshness=Freshness(user_loader)"),
    ({"store": STORE, "revalidate_after": 60, "on_store_error": "signout"},
     "freshness=Freshness(store, revalidate_after=60, on_store_error='signout')"),
    ({"user_loader": load_user, "feed": VersionFeed()},
     "freshness=Freshness(user_loader, feed=feed)"),
    ({"format": "authjs"}, "format=AuthJSFormat()"),
    ({"format": "authjs", "authjs_write": True, "role_claim": "grp", "default_role": "USER"},
     "format=AuthJSFormat(write=True, role_claim='grp', default_role='USER')"),
    ({"role_claim": "grp"}, "format=AuthJSFormat(role_claim='grp')"),
    ({"format": "jwe"}, "nothing for format="),
], ids=lambda value: ",".join(value) if isinstance(value, dict) else "")
def test_a_0_1_option_names_its_new_spelling(old: dict[str, Any], new: str) -> None:
    with pytest.raises(TypeError) as raised:
        JWTSessionMiddleware(Starlette(), SECRET, **old)
    message = str(raised.value)
    assert new in message
    assert all(f"{name}=" in message for name in old)
    assert "Upgrading from 0.1" in message
    # Installed with Middleware(...), the error comes as the app is built.
    app = Starlette(middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET, **old)])
    with pytest.raises(TypeError, match=r"Upgrading from 0\.1"), TestClient(app) as client:
        client.get("/")


def test_0_1_options_in_session_config_name_their_new_spelling() -> None:
    with pytest.raises(TypeError) as raised:
        SessionConfig(store=STORE, format="authjs", role_claim="grp")  # type: ignore[call-arg]
    message = str(raised.value)
    assert message.startswith("SessionConfig() takes no format='authjs', store=, role_claim=")
    assert "freshness=Freshness(store)" in message
    assert "format=AuthJSFormat(role_claim='grp')" in message
    assert "to JWTSessionMiddleware, not SessionConfig" in message
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'bogus'$"):
        SessionConfig(bogus=1)  # type: ignore[call-arg]
    assert SessionConfig(max_age=5).max_age == 5
    assert "store" not in inspect.signature(SessionConfig).parameters


def test_an_unknown_option_is_the_usual_error() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'secret'$"):
        JWTSessionMiddleware(Starlette(), secret=SECRET)  # type: ignore[call-arg]


def test_the_signature_is_the_typed_one() -> None:
    parameters = inspect.signature(JWTSessionMiddleware).parameters
    assert "freshness" in parameters and "store" not in parameters
    assert all(p.kind != p.VAR_KEYWORD for p in parameters.values())


def test_the_new_spellings_work() -> None:
    async def admin(request: Request) -> JSONResponse:
        return JSONResponse({"id": require_role(request, Role.ADMIN).id})

    async def sign_in(request: Request) -> JSONResponse:
        login(request, "ann", "ADMIN", version=1)
        return JSONResponse({})

    app = Starlette(routes=[Route("/admin", admin), Route("/login", sign_in)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET,
                                           freshness=Freshness(load_user,
                                                               revalidate_after=60))])
    with TestClient(app) as client:
        assert client.get("/admin").status_code == 401
        client.get("/login")
        assert client.get("/admin").json() == {"id": "ann"}
    JWTSessionMiddleware(Starlette(), SECRET,
                         format=AuthJSFormat(write=True, role_claim="grp", default_role="USER"))
