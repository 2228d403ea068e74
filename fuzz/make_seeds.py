#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

Seeds are real client input: AppSync frames as the integration tests and amplify-js send them,
the SigV4 requests of crates/auth/tests/data, JWTs signed with crates/testkit/data's keys, and the
TOML examples of docs/*.md. Fuzzing then grows the corpus and `cargo fuzz cmin` shrinks it; the
committed corpora already hold what the seeds contributed, so this only needs to run again when
a new kind of input appears. Needs Python 3 with the `cryptography` package (for the JWTs).
"""

import base64
import json
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
AUTH_DATA = ROOT / "crates" / "auth" / "tests" / "data"
KEYS = ROOT / "crates" / "testkit" / "data"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / f"seed-{name}").write_bytes(data)


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


API_KEY_AUTH = {"x-api-key": "da2-0123456789abcdefghijklmnop", "host": "localhost:8080"}
SIGV4_AUTH = json.loads((AUTH_DATA / "amplify_sigv4.json").read_text())

FRAMES = {
    "connection_init": {"type": "connection_init"},
    "subscribe": {"type": "subscribe", "id": "s1", "channel": "/default/*", "authorization": API_KEY_AUTH},
    "subscribe_sigv4": {
        "type": "subscribe",
        "id": "0f4c3a1e-8d1b-4b52-9d0e-6a1f2b3c4d5e",
        "channel": "/default/room",
        "authorization": SIGV4_AUTH["cases"][-1]["auth"],
    },
    "subscribe_resume": {
        "type": "subscribe",
        "id": "sub-2",
        "channel": "/chat/room1",
        "resume": {"epoch": "17965114866176928825", "offset": 42},
    },
    "subscribe_since": {"type": "subscribe", "id": "s", "channel": "/chat/*", "resume": {"since_ms": 1795766500000}},
    "subscribe_positions": {
        "type": "subscribe",
        "id": "s",
        "channel": "/chat/*",
        "resume": {"positions": {"/chat/room1": {"epoch": 7, "offset": 42}}, "since_ms": 1795766500000},
    },
    "publish": {
        "type": "publish",
        "id": "p1",
        "channel": "/default/room",
        "events": [compact({"n": 1}), compact("two"), "3"],
        "authorization": API_KEY_AUTH,
    },
    "publish_escapes": {
        "type": "publish",
        "id": "p+2",
        "channel": "/default/a/b",
        "events": ["\"\\u0001\\t\\n\u00e9\u2028\\ud83d\\ude00\"", "null"],
    },
    "unsubscribe": {"type": "unsubscribe", "id": "s1"},
    "unknown_type": {"type": "ka", "id": "x"},
}


def client_message():
    for name, frame in FRAMES.items():
        write("client_message", name, compact(frame))
    write("client_message", "not_json", "{not json")
    write("client_message", "bad_id", '{"type":"subscribe","id":"bad id!","channel":"/a"}')
    write("client_message", "event_not_string", '{"type":"publish","id":"ok","channel":"/a","events":[{}]}')


def http_publish():
    bodies = {
        "one": {"channel": "/default/x", "events": [compact({"a": 1})]},
        "no_slash": {"channel": "default/channel", "events": ["1", "\"s\"", "[1,2]", "{}", "true"]},
        "other_ns": {"channel": "/other/m", "events": ["1", "2"]},
        "too_many": {"channel": "/a", "events": ["1"] * 6},
        "big": {"channel": "/default/big", "events": [compact({"pad": "x" * 64})]},
    }
    for name, body in bodies.items():
        write("http_publish", name, compact(body))
    write("http_publish", "empty_array", "[]")


def subprotocol():
    write("subprotocol", "api_key", "header-" + b64url(compact(API_KEY_AUTH)))
    write("subprotocol", "padded", "header-" + base64.urlsafe_b64encode(compact(API_KEY_AUTH).encode()).decode())
    for case in SIGV4_AUTH["cases"][:2]:
        write("subprotocol", "sigv4_" + case["name"], "header-" + b64url(compact(case["auth"])))
    write("subprotocol", "jwt", "header-" + b64url(compact({"Authorization": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "host": "h"})))
    write("subprotocol", "appsync", "aws-appsync-event-ws")


def channel():
    pairs = {
        "wildcard": "/default/*\n/default/a/b",
        "exact": "/ns/a/b\nns/a/b/",
        "prefix_not_below": "/ns/a/*\n/ns/a",
        "deep": "/a/b/c/d/*\n/a/b/c/d/e",
        "bad": "/ns/*/x\n/ns/-a/b",
        "long": "/" + "a" * 50 + "/b\n/" + "a" * 51,
    }
    for name, text in pairs.items():
        write("channel", name, text)


def masked(opcode, payload, fin=True, mask=b"\x01\x02\x03\x04", length_form=None):
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    form = length_form or ("short" if n < 126 else "16" if n < 65536 else "64")
    if form == "short":
        head += bytes([0x80 | n])
    elif form == "16":
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_frame():
    def seed(name, chunk_seed, max_message, stream):
        write("ws_frame", name, bytes([chunk_seed]) + struct.pack(">H", max_message) + stream)

    text = lambda f: masked(0x1, compact(f).encode())
    seed("session", 0, 65535, text(FRAMES["connection_init"]) + text(FRAMES["subscribe"]) + text(FRAMES["publish"]))
    seed(
        "fragmented",
        7,
        4096,
        masked(0x1, b'{"type":', fin=False)
        + masked(0x9, b"ping")
        + masked(0x0, b'"connection', fin=False)
        + masked(0x0, b'_init"}'),
    )
    seed("close", 3, 1024, masked(0xA, b"") + masked(0x8, struct.pack(">H", 1000) + b"bye"))
    seed("binary_16bit", 200, 1024, masked(0x2, bytes(range(200))))
    seed("long_form", 31, 1024, masked(0x1, b"x" * 300, length_form="64"))
    seed("too_big", 1, 100, masked(0x1, b"a" * 200))
    seed("unmasked", 0, 100, b"\x81\x05hello")


def sigv4():
    def request(method, path, query, headers, body):
        target = path + ("?" + query if query else "")
        head = "\n".join([f"{method} {target}"] + [f"{k}:{v}" for k, v in headers])
        return (head + "\n\n").encode() + body.encode()

    vectors = json.loads((AUTH_DATA / "sigv4_vectors.json").read_text())
    for case in vectors["cases"]:
        write("sigv4", "aws_" + case["name"], request(case["method"], case["path"], case["query"], case["headers"], case["body"]))
    for case in SIGV4_AUTH["cases"]:
        write("sigv4", "amplify_" + case["name"], request("POST", "/event", "", list(case["auth"].items()), case["body"]))


def jwt():
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    iss = "https://issuer.fuzz.invalid"
    far = 4102444800  # 2100-01-01
    issued = 1795766400  # 2026-11-27
    id_token = {"iss": iss, "sub": "user-1", "aud": "fuzz-client", "exp": far, "iat": issued, "auth_time": issued}
    access = {
        "iss": iss,
        "sub": "user-2",
        "client_id": "fuzz-app",
        "token_use": "access",
        "exp": far,
        "iat": issued,
        "auth_time": issued,
        "cognito:username": "alice",
        "cognito:groups": ["admins", "users"],
    }

    def signed(header, claims, sign):
        msg = b64url(compact(header)) + "." + b64url(compact(claims))
        return msg + "." + b64url(sign(msg.encode()))

    rsa_key = serialization.load_pem_private_key((KEYS / "rsa_private.pem").read_bytes(), None)
    ec_key = serialization.load_pem_private_key((KEYS / "ec_private.pem").read_bytes(), None)

    def es256(msg):
        r, s = decode_dss_signature(ec_key.sign(msg, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    rs256 = lambda msg: rsa_key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    write("jwt", "rs256_id", signed({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}, id_token, rs256))
    write("jwt", "es256_access", "Bearer " + signed({"alg": "ES256", "kid": "ec-1"}, access, es256))
    write("jwt", "alg_none", b64url(compact({"alg": "none"})) + "." + b64url(compact(id_token)) + ".")
    write("jwt", "hs256", signed({"alg": "HS256", "kid": "rsa-1"}, id_token, lambda m: b"\0" * 32))
    write("jwt", "no_kid", signed({"alg": "RS256"}, id_token, rs256))
    # Claims objects: the target signs them itself with its Ed25519 key.
    write("jwt", "ed_id", compact(id_token))
    write("jwt", "ed_access", compact(access))
    write("jwt", "ed_aud_list", compact({**id_token, "aud": ["x", "fuzz-client"], "nbf": issued}))
    write("jwt", "ed_expired", compact({**id_token, "exp": 1}))
    write("jwt", "ed_wrong_iss", compact({**id_token, "iss": "https://other.invalid"}))


def config():
    for doc in sorted((ROOT / "docs").glob("*.md")):
        blocks = re.findall(r"```toml\n(.*?)```", doc.read_text(), re.S)
        for i, block in enumerate(blocks):
            write("config", f"{doc.stem}_{i}", block)


if __name__ == "__main__":
    for make in (client_message, http_publish, subprotocol, channel, ws_frame, sigv4, jwt, config):
        make()
