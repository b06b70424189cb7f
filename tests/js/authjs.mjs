// The real Auth.js (@auth/core) behind a line protocol: one JSON request per line on
// stdin ({"op": ..., ...}), one JSON reply per line on stdout ({"ok", "result"|"error"}).
// Run from the directory where `npm install` put @auth/core (tests/authjs_node.py).
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
