"""Role hierarchies: the default one, an app's own, and what the guards make of them."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import pytest
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import RoleHierarchy, require_admin, requires_role
from tests.conftest import make_app, sign_in

Client = Callable[..., TestClient]


class Rank(StrEnum):
    MEMBER = "MEMBER"
    ADMIN = "ADMIN"
    OWNER = "OWNER"


def test_custom_hierarchy_from_the_middleware(client_for: Client) -> None:
    async def admin_page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(require_admin(request).role)

    @requires_role(Rank.ADMIN)
    async def admin_area(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @requires("role:ADMIN")
    async def starlette_admin(request: Request) -> PlainTextResponse:
        return PlainTextResponse(" ".join(request.auth.scopes))

    app = make_app(Route("/admin", admin_page), Route("/area", admin_area),
                   Route("/starlette", starlette_admin), roles=RoleHierarchy(Rank))
    admin, owner = client_for(app), client_for(app)
    sign_in(admin, "a", "ADMIN")
    sign_in(owner, "o", "OWNER")
    # require_admin asks for the top of this hierarchy, OWNER.
    assert admin.get("/admin").status_code == 403
    assert owner.get("/admin").text == "OWNER"
    # A higher role satisfies a lower requirement.
    assert admin.get("/area").status_code == 200
    assert owner.get("/area").status_code == 200
    assert owner.get("/starlette").text == "authenticated role:MEMBER role:ADMIN role:OWNER"
    # The default roles mean nothing here: USER is not a role of this app.
    member = client_for(app)
    sign_in(member, "m", "USER")
    assert member.get("/area").status_code == 403


def test_unknown_required_role_is_an_error(client_for: Client) -> None:
    @requires_role("ADMNI")
    async def typo(request: Request) -> PlainTextResponse:
        return PlainTextResponse("never")  # pragma: no cover

    client = client_for(make_app(Route("/typo", typo)))
    sign_in(client, "a", "ADMIN")
    with pytest.raises(ValueError, match="unknown role 'ADMNI'"):
        client.get("/typo")


def test_scopes_of_a_hierarchy() -> None:
    roles = RoleHierarchy(Rank)
    assert roles.scopes(None) == []
    assert roles.scopes("ADMIN") == ["authenticated", "role:MEMBER", "role:ADMIN"]
    assert roles == RoleHierarchy(["MEMBER", "ADMIN", "OWNER"]) != RoleHierarchy()


def test_validate_and_satisfies() -> None:
    roles = RoleHierarchy(Rank)
    assert roles.validate(Rank.OWNER) == "OWNER" and type(roles.validate(Rank.OWNER)) is str
    assert "MEMBER" in roles and "USER" not in roles and roles.highest == "OWNER"
    with pytest.raises(ValueError, match="unknown role 'USER'"):
        roles.validate("USER")
    assert roles.satisfies("OWNER", "ADMIN") and roles.satisfies("ADMIN", "OWNER", "ADMIN")
    assert not roles.satisfies("MEMBER", "ADMIN")
    assert not roles.satisfies(None, "MEMBER") and not roles.satisfies("GHOST", "MEMBER")
    assert not roles.satisfies("OWNER", "GHOST")  # an unknown requirement is never met
    with pytest.raises(ValueError):
        RoleHierarchy([])
    with pytest.raises(ValueError, match="duplicate"):
        RoleHierarchy(["A", "A"])
