from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from asgi_jwt_session import Keyring, TokenCodec
from asgi_jwt_session.cli import main


def test_keygen_prints_a_usable_secret(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    secret = capsys.readouterr().out.strip()
    assert len(secret) >= 43
    Keyring(secret)  # long enough to be accepted
    assert main(["keygen"]) == 0
    assert capsys.readouterr().out.strip() != secret


def test_keygen_jwk(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen", "--jwk"]) == 0
    jwks = orjson.loads(capsys.readouterr().out)
    assert jwks["keys"][0]["kty"] == "oct"
    Keyring(jwks["keys"][0])


def test_decode(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "d" * 40
    now = int(time.time())
    token = TokenCodec(secret).encode({"sub": "u1", "role": "USER", "iat": now, "exp": now + 60})
    monkeypatch.setenv("SESSION_SECRET", f"{'x' * 40},{secret}")
    assert main(["decode", f"session={token}"]) == 0
    assert orjson.loads(capsys.readouterr().out)["sub"] == "u1"

    monkeypatch.setenv("SESSION_SECRET", "y" * 40)
    assert main(["decode", token]) == 1
    assert "key" in capsys.readouterr().err

    monkeypatch.delenv("SESSION_SECRET")
    assert main(["decode", token]) == 2
    assert "SESSION_SECRET" in capsys.readouterr().err


def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "asgi_jwt_session.cli", "--help"],
                            capture_output=True, text=True, check=True)
    assert "keygen" in result.stdout
