"""Fixtures: a real Herald (the binary at $HERALD_BIN, default the workspace's
target/debug/herald) started once per session with every authorization mode configured, the
identity services it calls (an OpenID provider serving discovery and JWKS for an OIDC and a
Cognito-style issuer, a Lambda-style authorizer webhook), and a TCP proxy whose connections a
test can cut or freeze."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

REPO = Path(__file__).resolve().parents[3]
HERALD_BIN = Path(
    os.environ.get("HERALD_BIN")
    or Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "debug" / "herald"
)
# The throwaway test key of crates/testkit (never used for anything else).
RSA_KEY_PEM = REPO / "crates" / "testkit" / "data" / "rsa_private.pem"

API_KEY = "da2-pythonclienttests00000000"
REGION = "us-east-1"
OIDC_CLIENT = "python-client"
COGNITO_CLIENT = "pythonappclient"
KID = "python-k1"
#: May connect, publish and subscribe everywhere.
IAM_ALL = ("AKIAPYTHONALL", "python/all+secret")
#: Temporary credentials: requests must carry the session token.
IAM_SESSION = ("ASIAPYTHONSESSION", "python-session-secret", "FwoGZXIvYXdzEPYTHON//session+token==")
#: May connect and subscribe, never publish.
IAM_READER = ("AKIAPYTHONREADER", "python-reader-secret")
#: An administrator of the AppSync control plane (``[[control_plane.access_keys]]``): what the
#: AWS CLI and boto3 sign with in test_control_plane.py.
CONTROL_ADMIN = ("AKIAPYTHONADMIN", "python-admin-secret")
CONTROL_API_ID = "python-api"
#: ka interval and connectionTimeoutMs of the test server: short, so the keep-alive tests are fast.
KEEPALIVE_MS = 200
CONNECTION_TIMEOUT_MS = 3000

ALL_MODES = '["API_KEY", "AMAZON_COGNITO_USER_POOLS", "OPENID_CONNECT", "AWS_LAMBDA", "AWS_IAM"]'


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    """A loopback HTTP server in a thread: ``respond(method, path, body) -> (status, json)``."""

    def __init__(self, respond: Callable[[str, str, bytes], tuple[int, Any]]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                status, value = respond(self.command, self.path, body)
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Identity:
    """The OpenID provider (issuers ``/oidc`` and ``/cognito``) and the authorizer webhook:
    tokens ``allow-*`` may do everything, ``readonly-*`` everything but publish, others are
    denied (a ``Bearer `` prefix is ignored)."""

    def __init__(self) -> None:
        key = serialization.load_pem_private_key(RSA_KEY_PEM.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self._key = key
        numbers = key.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "kid": KID,
            "alg": "RS256",
            "use": "sig",
            "n": _b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }

        def idp(method: str, path: str, body: bytes) -> tuple[int, Any]:
            for name in ("oidc", "cognito"):
                issuer = f"{self.idp.url}/{name}"
                if path == f"/{name}/.well-known/openid-configuration":
                    return 200, {"issuer": issuer, "jwks_uri": f"{issuer}/jwks"}
                if path == f"/{name}/jwks":
                    return 200, {"keys": [jwk]}
            return 404, {}

        self.hook_calls: list[dict[str, Any]] = []

        def hook(method: str, path: str, body: bytes) -> tuple[int, Any]:
            request = json.loads(body)
            self.hook_calls.append(request)
            token = str(request.get("authorizationToken", "")).removeprefix("Bearer ")
            op = (request.get("requestContext") or {}).get("operation")
            allowed = token.startswith("allow-") or (
                token.startswith("readonly-") and op != "EVENT_PUBLISH"
            )
            return 200, {"isAuthorized": allowed, "handlerContext": {"user": token}}

        self.idp = _Server(idp)
        self.hook = _Server(hook)
        self.oidc_issuer = f"{self.idp.url}/oidc"
        self.cognito_issuer = f"{self.idp.url}/cognito"

    def sign(self, claims: dict[str, Any]) -> str:
        head = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": KID}).encode())
        body = _b64url(json.dumps(claims).encode())
        signature = self._key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{_b64url(signature)}"

    def oidc_token(self, sub: str, **extra: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.oidc_issuer,
            "sub": sub,
            "aud": OIDC_CLIENT,
            "iat": now,
            "exp": now + 600,
        }
        return self.sign({**claims, **extra})

    def cognito_token(self, username: str, **extra: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": self.cognito_issuer,
            "sub": f"sub-{username}",
            "client_id": COGNITO_CLIENT,
            "token_use": "access",
            "cognito:username": username,
            "iat": now,
            "exp": now + 600,
        }
        return self.sign({**claims, **extra})

    def close(self) -> None:
        self.idp.close()
        self.hook.close()


def herald_config(identity: Identity) -> str:
    return f"""# Written by clients/python/tests/conftest.py
[auth]
connection_auth_modes = {ALL_MODES}
default_publish_auth_modes = {ALL_MODES}
default_subscribe_auth_modes = {ALL_MODES}

[[auth.api_keys]]
key = "{API_KEY}"
name = "python-tests"

[[auth.providers]]
auth_type = "OPENID_CONNECT"
issuer = "{identity.oidc_issuer}"
client_id = "{OIDC_CLIENT}"

[[auth.providers]]
auth_type = "AMAZON_COGNITO_USER_POOLS"
user_pool_id = "us-east-1_PythonTest"
aws_region = "{REGION}"
app_id_client_regex = "{COGNITO_CLIENT}"
issuer = "{identity.cognito_issuer}"

[[auth.providers]]
auth_type = "AWS_LAMBDA"
authorizer_url = "{identity.hook.url}/authorize"
timeout_ms = 5000

[[auth.providers]]
auth_type = "AWS_IAM"
region = "{REGION}"

[[auth.providers.keys]]
access_key_id = "{IAM_ALL[0]}"
secret_access_key = "{IAM_ALL[1]}"
principal = "python-all"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "{IAM_SESSION[0]}"
secret_access_key = "{IAM_SESSION[1]}"
session_token = "{IAM_SESSION[2]}"
principal = "python-session"
actions = ["EventConnect", "EventPublish", "EventSubscribe"]

[[auth.providers.keys]]
access_key_id = "{IAM_READER[0]}"
secret_access_key = "{IAM_READER[1]}"
principal = "python-reader"
actions = ["EventConnect", "EventSubscribe"]

[control_plane]
api_id = "{CONTROL_API_ID}"
name = "Python tests"

[[control_plane.access_keys]]
access_key_id = "{CONTROL_ADMIN[0]}"
secret_access_key = "{CONTROL_ADMIN[1]}"

[[namespaces]]
name = "default"

[[namespaces]]
name = "hist"
history = {{}}

[history]
backend = "memory"

[websocket]
keepalive_interval_ms = {KEEPALIVE_MS}
connection_timeout_ms = {CONNECTION_TIMEOUT_MS}

[admission]
max_connects_per_address_per_second = 10000
max_http_publishes_per_address_per_second = 100000
max_socket_publishes_per_address_per_second = 100000
max_connects_per_identity_per_second = 10000
max_http_publishes_per_identity_per_second = 100000

[limits]
max_publishes_per_second = 10000
"""


@dataclass
class Herald:
    """A running Herald: ``endpoint`` is ``http://127.0.0.1:<port>/event``."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    identity: Identity
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "herald.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/event"

    @property
    def tls_endpoint(self) -> str:
        """The same server over TLS (``--dev-tls`` serves both on one port)."""
        return f"https://localhost:{self.port}/event"

    def tls_context(self) -> ssl.SSLContext:
        """Trusts the development CA Herald generated."""
        return ssl.create_default_context(cafile=str(self.data_dir / "dev-tls" / "ca.pem"))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _start_herald(identity: Identity, data_dir: Path) -> Herald:
    if not HERALD_BIN.exists():
        pytest.fail(
            f"herald binary not found at {HERALD_BIN}: "
            "run `cargo build -p herald` or set HERALD_BIN"
        )
    config = data_dir / "herald.toml"
    config.write_text(herald_config(identity))
    port = free_port()
    # Herald reads HERALD_* variables as configuration: pass none of the caller's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["RUST_LOG"] = "info,herald_server::auth=debug"
    log = open(data_dir / "herald.log", "ab")
    process = subprocess.Popen(
        [
            str(HERALD_BIN),
            "serve",
            "--config",
            str(config),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data_dir),
            "--dev-tls",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    log.close()
    herald = Herald(process=process, port=port, data_dir=data_dir, identity=identity)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return herald
        except OSError:
            time.sleep(0.05)
    _stop(process)
    pytest.fail(f"herald did not become ready on port {port}:\n{herald.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def identity() -> Iterator[Identity]:
    fixtures = Identity()
    yield fixtures
    fixtures.close()


@pytest.fixture(scope="session")
def herald(identity: Identity) -> Iterator[Herald]:
    with tempfile.TemporaryDirectory(prefix="herald-python-") as tmp:
        server = _start_herald(identity, Path(tmp))
        try:
            yield server
        finally:
            _stop(server.process)


def unique(label: str = "t") -> str:
    """A channel segment no other test uses."""
    # Segments are letters, digits and '-' (not at either end).
    clean = "".join(c if c.isalnum() else "-" for c in label).strip("-")
    return f"{clean}-{uuid.uuid4().hex[:12]}"


class Proxy:
    """A TCP proxy to Herald. ``sever()`` aborts every open connection (both ends), as a
    network failure would; ``freeze()`` stops forwarding to the clients of the open
    connections (new ones are not frozen), as a dead peer would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, dict[str, bool]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/event"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        state = {"frozen": False}
        self._pairs.append((writer, up_writer, state))

        async def pipe(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, to_client: bool
        ) -> None:
            try:
                while data := await src.read(65536):
                    if to_client and state["frozen"]:
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        for coro in (pipe(reader, up_writer, False), pipe(up_reader, writer, True)):
            task = asyncio.get_running_loop().create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def sever(self) -> int:
        n = 0
        for client, upstream, _ in self._pairs:
            if not client.transport.is_closing():
                n += 1
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()
        return n

    async def stop_listening(self) -> None:
        """Refuse new connections from now on (the server is gone)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def freeze(self) -> None:
        for _, _, state in self._pairs:
            state["frozen"] = True

    async def close(self) -> None:
        self.sever()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()


@pytest.fixture
async def proxy(herald: Herald) -> AsyncIterator[Proxy]:
    p = Proxy(herald.port)
    await p.start()
    yield p
    await p.close()
