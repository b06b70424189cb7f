"""Auth.js decrypt through jwcrypto's own algorithm objects (``JWA.encryption_alg``)
answers exactly as the old path through jwcrypto's ``JWE.deserialize`` did, on tens of
thousands of valid, rotated, kid-less, wrong-kid, tampered and foreign-header tokens
(A256CBC-HS512 and A256GCM), after the same strict shared checks: the same plaintext,
or the same refusal (exception type and message)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import orjson
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from jwcrypto import jwe, jwk
from jwcrypto.jwa import JWA

from asgi_jwt_session.authjs import (
    ALLOWED_ALGS,
    AuthJSCodec,
    AuthJSWire,
    derive_key,
    key_id,
    other_salt,
)
from asgi_jwt_session.codec import Compact, b64url_encode
from asgi_jwt_session.errors import InvalidToken, UnknownKey
from tests.tampering import ALPHABET, WRITES_CRIT_EXP, flipped

SECRET = "authjs-equivalence-secret-" + "s" * 32
OLD_SECRET = "authjs-equivalence-old-" + "o" * 32  # rotated out, still read
FOREIGN_SECRET = "authjs-equivalence-foreign-" + "f" * 32  # not this codec's
SALT = "authjs.session-token"
CBC, GCM = "A256CBC-HS512", "A256GCM"
ROUNDS = 600  # ~43 tokens each

Outcome = tuple[str, Any, str]


def old_decrypt(wire: AuthJSWire, compact: Compact) -> bytes:
    """The reference: ``AuthJSWire.decrypt`` as it was, through jwcrypto's JWE object."""
    enc = compact.header["enc"]
    candidates = wire.keys[enc]
    kid = compact.header.get("kid")
    if kid is not None:
        candidates = [(k, key) for k, key in candidates if k == kid]
        if not candidates:
            raise UnknownKey(wire.no_key_message(kid, enc))
    for _, key in candidates:
        reader = jwe.JWE()
        reader.allowed_algs = ALLOWED_ALGS
        try:
            reader.deserialize(compact.token, key)
            plaintext: bytes = reader.payload
            return plaintext
        except Exception:  # jwcrypto raises several types; all mean "not this key"
            continue
    if kid is not None:
        raise InvalidToken("Auth.js token failed to decrypt: tampered or corrupt")
    raise UnknownKey(wire.no_key_message(None, enc))


def outcome(codec: AuthJSCodec, token: str, reference: bool) -> Outcome:
    """The plaintext, or the refusal's type and message."""
    try:
        compact = codec.check(token)
        plaintext = old_decrypt(codec.wire, compact) if reference else codec.wire.decrypt(compact)
    except InvalidToken as exc:
        return ("refused", type(exc), str(exc))
    return ("ok", plaintext, "")


def encrypt(key: jwk.JWK, header: dict[str, Any] | str, plaintext: bytes) -> str:
    """A token jwcrypto writes (``header`` as given when it is already JSON text)."""
    protected = header if isinstance(header, str) else orjson.dumps(header).decode()
    token = jwe.JWE(plaintext, protected=protected, header_registry=WRITES_CRIT_EXP)
    token.allowed_algs = ALLOWED_ALGS
    token.add_recipient(key)
    return str(token.serialize(compact=True))


def authentic_but_malformed(raw: bytes, kid: str, plaintext: bytes, rng: random.Random) -> str:
    """An A256CBC-HS512 token with a MAC that verifies (jwcrypto's own ``_mac``) over a
    ciphertext that is not whole AES blocks or has bad PKCS7 padding: only the holder
    of the key makes one, and both paths must refuse it after the MAC check."""
    algorithm = JWA.encryption_alg(CBC)
    header = b64url_encode(orjson.dumps({"alg": "dir", "enc": CBC, "kid": kid}))
    iv = rng.randbytes(16)
    if rng.random() < 0.5:
        body = plaintext + bytes(16 - len(plaintext) % 16)  # padding byte 0: invalid
        encryptor = Cipher(algorithms.AES(raw[32:]), modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(body) + encryptor.finalize()
    else:
        ciphertext = rng.randbytes(16 * rng.randrange(1, 4) + rng.randrange(1, 16))
    tag = algorithm._mac(raw[:32], header.encode("ascii"), iv, ciphertext)
    return ".".join([header, "", b64url_encode(iv), b64url_encode(ciphertext),
                     b64url_encode(tag)])


def tampered(token: str, rng: random.Random) -> list[str]:
    """Changes that must all be refused."""
    parts = token.split(".")
    out = flipped(token, rng)
    out.append(token[:-1])
    out.append(token[:rng.randrange(1, len(token) - 1)])
    out.append(token + rng.choice(ALPHABET))
    swapped = list(parts)  # iv and tag change places (cut to each other's size)
    swapped[2], swapped[4] = parts[4][:len(parts[2])], (parts[2] * 2)[:len(parts[4])]
    out.append(".".join(swapped))
    swapped = list(parts)  # ciphertext and tag change places
    swapped[3], swapped[4] = parts[4], parts[3]
    out.append(".".join(swapped))
    return out


def changed(token: str, rng: random.Random) -> list[str]:
    """Changes that may leave the token as it was (a character replaced by itself)."""
    position = rng.randrange(len(token))
    return [token[:position] + rng.choice(ALPHABET) + token[position + 1:]]


def spliced(one: str, other: str) -> list[str]:
    """One token's segments with another's: the header, the IV or the ciphertext."""
    a, b = one.split("."), other.split(".")
    out = []
    for index in (0, 2, 3):
        mixed = list(a)
        mixed[index] = b[index]
        if mixed != a:
            out.append(".".join(mixed))
    return out


def test_both_paths_agree_on_every_token() -> None:
    rng = random.Random(20270114)
    codec = AuthJSCodec([SECRET, OLD_SECRET], salt=SALT, cache_size=0)
    wire = codec.wire
    (kid, key), (old_kid, old_key) = wire.keys[CBC]
    (gkid, gkey), (old_gkid, old_gkey) = wire.keys[GCM]
    raw = wire.raw_keys[CBC][0][1]
    foreign = derive_key(FOREIGN_SECRET, SALT, CBC)
    other_salted = derive_key(SECRET, other_salt(SALT), CBC)
    other_kid = key_id(other_salted, CBC)
    # Each token with what both paths must answer: "ok", "refused", or None (either).
    tokens: list[tuple[str, str, str | None]] = []

    def add(what: str, token: str, expect: str | None) -> None:
        tokens.append((what, token, expect))

    previous: dict[str, str] = {}
    for index in range(ROUNDS):
        claims = {"sub": f"user-{index}", "role": "USER", "exp": 2_000_000_000,
                  "name": "x" * rng.randrange(300), "n": rng.random()}
        plaintext = orjson.dumps(claims)
        current = codec.encode(claims)  # the wire's own encode: Auth.js's header
        add("current", current, "ok")
        gcm = encrypt(gkey, {"alg": "dir", "enc": GCM, "kid": gkid}, plaintext)
        add("gcm", gcm, "ok")
        for base in (current, gcm):
            for token in tampered(base, rng):
                add("tampered", token, "refused")
            for token in changed(base, rng):
                add("changed", token, None)
        # Rotated secrets: the older secret's key and kid; kid-less tokens try each key.
        add("rotated", encrypt(old_key, {"alg": "dir", "enc": CBC, "kid": old_kid}, plaintext),
            "ok")
        add("rotated", encrypt(old_gkey, {"alg": "dir", "enc": GCM, "kid": old_gkid},
                               plaintext), "ok")
        add("no kid", encrypt(key, {"alg": "dir", "enc": CBC}, plaintext), "ok")
        add("no kid", encrypt(old_key, {"alg": "dir", "enc": CBC}, plaintext), "ok")
        add("no kid", encrypt(old_gkey, {"alg": "dir", "enc": GCM}, plaintext), "ok")
        add("no kid", encrypt(foreign, {"alg": "dir", "enc": CBC}, plaintext), "refused")
        # Wrong kids: unknown, another secret's, the other enc's, the other salt's.
        add("wrong kid", encrypt(key, {"alg": "dir", "enc": CBC, "kid": "nope"}, plaintext),
            "refused")
        add("wrong kid", encrypt(key, {"alg": "dir", "enc": CBC, "kid": old_kid}, plaintext),
            "refused")
        add("wrong kid", encrypt(old_key, {"alg": "dir", "enc": CBC, "kid": kid}, plaintext),
            "refused")
        add("wrong kid", encrypt(key, {"alg": "dir", "enc": CBC, "kid": gkid}, plaintext),
            "refused")
        add("wrong kid", encrypt(other_salted, {"alg": "dir", "enc": CBC, "kid": other_kid},
                                 plaintext), "refused")
        add("wrong kid", encrypt(foreign, {"alg": "dir", "enc": CBC, "kid": kid}, plaintext),
            "refused")
        # Reordered members and the allowed extras.
        add("reordered", encrypt(key, {"kid": kid, "enc": CBC, "alg": "dir"}, plaintext), "ok")
        add("reordered", encrypt(gkey, {"enc": GCM, "kid": gkid, "alg": "dir"}, plaintext),
            "ok")
        add("extras", encrypt(key, {"alg": "dir", "enc": CBC, "kid": kid, "typ": "JWT",
                                    "cty": "JWT"}, plaintext), "ok")
        add("extras", encrypt(gkey, {"typ": "JWT", "alg": "dir", "enc": GCM}, plaintext),
            "ok")
        # Splices of two tokens of the same enc and key.
        for token in spliced(current, previous.get(CBC, current)):
            add("spliced", token, "refused")
        for token in spliced(gcm, previous.get(GCM, gcm)):
            add("spliced", token, "refused")
        previous = {CBC: current, GCM: gcm}
        if index % 10 == 0:
            # Foreign headers: refused by the allow-list, before either decrypt.
            add("foreign", encrypt(key, {"alg": "dir", "enc": CBC, "kid": kid, "zip": "DEF"},
                                   plaintext), "refused")
            add("foreign", encrypt(key, {"alg": "dir", "enc": CBC, "kid": kid,
                                         "crit": ["exp"], "exp": 1}, plaintext), "refused")
            add("foreign", encrypt(gkey, {"alg": "dir", "enc": GCM, "zip": "DEF"}, plaintext),
                "refused")
            # JSON spellings: spaces, an escaped kid, duplicate members (the last wins),
            # a non-ASCII extra.
            escaped = f"\\u{ord(kid[0]):04x}" + kid[1:]
            add("spelling", encrypt(key, f'{{ "alg" : "dir", "enc" : "{CBC}", '
                                         f'"kid" : "{kid}" }}', plaintext), "ok")
            add("spelling", encrypt(key, f'{{"alg":"dir","enc":"{CBC}","kid":"{escaped}"}}',
                                    plaintext), "ok")
            add("spelling", encrypt(key, f'{{"alg":"dir","enc":"{GCM}","enc":"{CBC}",'
                                         f'"kid":"nope","kid":"{kid}"}}', plaintext), "ok")
            add("spelling", encrypt(key, {"alg": "dir", "enc": CBC, "typ": "\u00e9\u4e2d"},
                                    plaintext), "ok")
            # Empty plaintext: JWE.deserialize refuses it, and so must the new path.
            add("empty", encrypt(key, {"alg": "dir", "enc": CBC, "kid": kid}, b""), "refused")
            add("empty", encrypt(key, {"alg": "dir", "enc": CBC}, b""), "refused")
            # A MAC that verifies over a ciphertext that does not decrypt (ValueError).
            add("malformed", authentic_but_malformed(raw, kid, plaintext, rng), "refused")
    assert len(tokens) >= 20_000

    seen: Counter[tuple[str, str, str]] = Counter()
    messages: set[str] = set()
    for what, token, expect in tokens:
        reference = outcome(codec, token, reference=True)
        assert outcome(codec, token, reference=False) == reference, (what, token)
        assert expect is None or reference[0] == expect, (what, token, reference)
        refusal = reference[1].__name__ if reference[0] == "refused" else ""
        seen[what, reference[0], refusal] += 1
        messages.add(reference[2])
    # Every branch was taken: plaintexts; UnknownKey with a kid, with the other salt's
    # kid and with no kid; InvalidToken from the decrypt itself; the shared checks.
    for start in ("no key matches the Auth.js token (kid 'nope')",
                  "no key matches the Auth.js token (no kid)",
                  "no key matches the Auth.js token: it was made with salt",
                  "Auth.js token failed to decrypt: tampered or corrupt",
                  "token header has members outside the allow-list: ['zip']",
                  "token is not a dir/A256CBC-HS512 compact JWE (IV or tag size)"):
        assert any(m.startswith(start) for m in messages), start
    assert seen["current", "ok", ""] == seen["gcm", "ok", ""] == ROUNDS
    assert seen["tampered", "refused", "InvalidToken"] > 0
    assert seen["tampered", "refused", "UnknownKey"] > 0
    assert seen["no kid", "refused", "UnknownKey"] == ROUNDS
    assert seen["empty", "refused", "InvalidToken"] == seen["empty", "refused", "UnknownKey"]
    assert seen["malformed", "refused", "InvalidToken"] == ROUNDS // 10
