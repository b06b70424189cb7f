"""The real Auth.js (``@auth/core``) in a node process, for cross-checking tokens.

``authjs`` (session scope) installs the pinned ``@auth/core`` with npm into a temp
dir and starts one long-lived node process that answers one JSON request per line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unavailable

AUTHJS_VERSION = "0.41.3"

HELPER = r"""
import { createInterface } from "node:readline";
import { encode, decode } from "@auth/core/jwt";
import { SessionStore } from "./node_modules/@auth/core/lib/utils/cookie.js";
import { EncryptJWT, base64url, calculateJwkThumbprint } from "jose";
import { hkdf } from "@panva/hkdf";

const quiet = { debug() {}, error() {}, warn() {} };

// A token as jose would make it with A256GCM, which Auth.js decodes but never makes.
async function encodeGcm({ token, secret, salt }) {
  const key = await hkdf("sha256", secret, salt, `Auth.js Generated Encryption Key (${salt})`, 32);
  const kid = await calculateJwkThumbprint({ kty: "oct", k: base64url.encode(key) }, "sha256");
  return await new EncryptJWT(token)
    .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid })
    .setIssuedAt().setExpirationTime("1h").encrypt(key);
}

const ops = {
  encode: (req) => encode(req),
  decode: (req) => decode(req),
  encodeGcm,
  chunk: ({ name, value }) =>
    new SessionStore({ name, options: {} }, {}, quiet).chunk(value, {})
      .map((c) => [c.name, c.value]),
  join: ({ name, cookies }) => new SessionStore({ name, options: {} }, cookies, quiet).value,
};

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  const { op, ...req } = JSON.parse(line);
  let reply;
  try {
    reply = { ok: true, result: (await ops[op](req)) ?? null };
  } catch (err) {
    reply = { ok: false, error: `${err.name}: ${err.message}` };
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
}
"""


class AuthJSError(Exception):
    """Auth.js threw; the message is its error name and message."""


class AuthJS:
    """One node process running the helper; ``call`` is one request/reply."""

    def __init__(self, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            ["node", str(workdir / "helper.mjs")],
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def call(self, op: str, **req: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node helper exited with {self.proc.wait()}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AuthJSError(reply["error"])
        return reply["result"]

    def encode(self, token: dict[str, Any], secret: str | list[str], salt: str, **kw: Any) -> str:
        return str(self.call("encode", token=token, secret=secret, salt=salt, **kw))

    def decode(self, token: str, secret: str | list[str], salt: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("decode", token=token, secret=secret, salt=salt)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session", name="authjs")
def authjs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthJS]:
    """The pinned ``@auth/core``, installed once per test run."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        unavailable("Auth.js cross-checks need node and npm on PATH")
    workdir = tmp_path_factory.mktemp("authjs")
    (workdir / "package.json").write_text('{"private": true}\n')
    try:
        subprocess.run(
            [
                str(npm),
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                f"@auth/core@{AUTHJS_VERSION}",
            ],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or ""
        unavailable(f"npm install @auth/core@{AUTHJS_VERSION} failed: {detail.strip()[-500:]}")
    (workdir / "helper.mjs").write_text(HELPER)
    helper = AuthJS(workdir)
    try:
        yield helper
    finally:
        helper.close()
