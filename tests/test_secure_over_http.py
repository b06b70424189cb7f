"""A Secure session cookie set on a plain-http request: the browser never sends it back,
so the middleware says so in the log, once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import sign_in

Client = Callable[..., TestClient]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.levelno == logging.WARNING and "plain-http" in record.getMessage()]


@pytest.mark.parametrize("options", [{"https_only": True}, {"same_site": "none"},
                                     {"partitioned": True}])
def test_a_secure_cookie_over_http_is_logged_once(
        client_for: Client, caplog: pytest.LogCaptureFixture, options: dict[str, Any]) -> None:
    caplog.set_level(logging.WARNING, "asgi_jwt_session")
    client = client_for(**options)
    assert client.get("/plain").status_code == 200  # writes no cookie: nothing to say
    assert client.get("/me").status_code == 200
    assert warnings_of(caplog) == []
    response = sign_in(client)
    assert "Secure" in response.headers["set-cookie"]
    (warning,) = warnings_of(caplog)
    assert "session cookie session is Secure" in warning
    assert "(http://testserver:80)" in warning
    assert "--proxy-headers" in warning
    sign_in(client, "bob")
    sign_in(client_for(**options), "carol")  # another middleware: its own once
    assert len(warnings_of(caplog)) == 2


@pytest.mark.parametrize(("base_url", "options"), [
    ("https://testserver", {"https_only": True}),  # Secure, over https
    ("http://testserver", {}),  # https_only=None: not Secure over http
    ("http://testserver", {"https_only": False}),
])
def test_no_warning_when_the_cookie_comes_back(
        client_for: Client, caplog: pytest.LogCaptureFixture, base_url: str,
        options: dict[str, Any]) -> None:
    caplog.set_level(logging.WARNING, "asgi_jwt_session")
    client = client_for(base_url=base_url, **options)
    response = sign_in(client)
    assert ("Secure" in response.headers["set-cookie"]) == base_url.startswith("https")
    assert client.get("/me").json()["id"] == "alice"
    assert warnings_of(caplog) == []
