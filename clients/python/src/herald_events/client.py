"""The client: one WebSocket for subscriptions and socket publishes, HTTP for publishes, and the
reconnect loop that keeps both subscriptions and their positions alive.

The socket is opened on the first subscribe or socket publish (or by :meth:`EventsClient.connect`).
A reader task owns it: it answers waiting operations, hands ``data`` frames to their
subscription, and treats silence longer than the server's ``connectionTimeoutMs`` (``ka``
frames normally arrive every minute) as a dead connection. When the socket is lost it
reconnects with :class:`Backoff` and subscribes again, resuming each subscription after the last
event it delivered.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl as ssl_module
import uuid
from typing import Any, AsyncIterator, Literal, Mapping
from urllib.parse import urlencode

import httpx
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from .auth import Auth, compact_json
from .backoff import Backoff
from .endpoint import Endpoint
from .errors import (
    ConfigurationError,
    ConnectionFailedError,
    ConnectionLostError,
    HeraldError,
    OperationTimeoutError,
    ResumeGapError,
    UnauthorizedError,
    server_error,
)
from .event import Event, Position
from .history import HistoryPage
from .publish import PublishResult
from .subscription import Subscription

log = logging.getLogger("herald_events")

_PROTOCOL = Subprotocol("aws-appsync-event-ws")
# AppSync's default, until connection_ack says otherwise.
_DEFAULT_CONNECTION_TIMEOUT_MS = 300_000
# An event is at most 240 KB; a frame holds one, escaped, plus a little.
_MAX_FRAME_BYTES = 4 * 1024 * 1024
#: The default reconnect policy (a frozen dataclass: one instance serves every client).
DEFAULT_BACKOFF = Backoff()


class EventsClient:
    """A client for one AppSync Events API (AWS or Herald).

    Args:
        endpoint: the HTTP endpoint in any form :class:`Endpoint` reads
            (``http://127.0.0.1:8080/event``, ``https://<id>.appsync-api.<region>.amazonaws.com/event``).
        auth: the default credentials; every operation can override them.
        realtime_endpoint: the WebSocket URL, when it is not the derived one.
        backoff: the reconnect policy; None disables reconnecting (a lost socket ends every
            subscription with :class:`ConnectionFailedError`).
        connect_timeout: seconds to open the socket and get ``connection_ack``.
        operation_timeout: seconds to wait for the answer to a subscribe, publish or unsubscribe
            (and for a reconnect in progress before sending one).
        ssl: an ``ssl.SSLContext`` trusting a private CA (for example Herald's ``--dev-tls``).
        http_client: an ``httpx.AsyncClient`` to publish with (else one is made and closed here).
        max_queued_events: events a subscription holds for a slow consumer; when full, reading
            the socket waits, and the server's slow-consumer rule decides.
        resume: send Herald's ``resume`` field when subscribing again after a reconnect. By
            default on, except for AWS host names (AppSync keeps no history); set False for an
            AppSync custom domain.
    """

    def __init__(
        self,
        endpoint: str,
        auth: Auth,
        *,
        realtime_endpoint: str | None = None,
        backoff: Backoff | None = DEFAULT_BACKOFF,
        connect_timeout: float = 10.0,
        operation_timeout: float = 10.0,
        ssl: ssl_module.SSLContext | None = None,
        http_client: httpx.AsyncClient | None = None,
        max_queued_events: int = 10_000,
        resume: bool | None = None,
    ) -> None:
        self.endpoint = Endpoint.parse(endpoint, realtime_endpoint)
        self.auth = auth
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self._ssl = ssl
        self._http = http_client
        self._own_http = http_client is None
        self._max_queued = max_queued_events
        #: Whether resubscribes after a reconnect carry Herald's ``resume`` field.
        self.resume = resume if resume is not None else self.endpoint.region is None
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._connect_lock: asyncio.Lock | None = None
        self._subs: dict[str, Subscription] = {}
        self._waiters: dict[str, asyncio.Future[Mapping[str, Any]]] = {}
        self._fatal: BaseException | None = None
        self._closed = False
        #: ``connectionTimeoutMs`` from the last ``connection_ack``.
        self.connection_timeout_ms = _DEFAULT_CONNECTION_TIMEOUT_MS
        #: ``ka`` frames received.
        self.keepalives = 0
        #: Sockets opened after the first (each one a reconnect).
        self.reconnects = 0

    def __repr__(self) -> str:
        return f"EventsClient({self.endpoint.http_url!r})"

    async def __aenter__(self) -> EventsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a socket is open and acknowledged."""
        return self._ready is not None and self._ready.is_set()

    # --- Public operations ----------------------------------------------------------------

    async def connect(self) -> None:
        """Open the socket now (it is otherwise opened by the first subscribe or socket publish).
        Raises :class:`UnauthorizedError` when the connect authorization is refused, and
        :class:`ConnectionFailedError` when the server cannot be reached."""
        await self._socket()

    def subscribe(
        self,
        channel: str,
        *,
        auth: Auth | None = None,
        resume_from: Position | None = None,
        since_ms: int | None = None,
        strict_resume: bool = False,
    ) -> Subscription:
        """A subscription to ``channel`` (``/ns/a/b``, or ``/ns/a/*`` for everything below).

        It subscribes when iterated or entered (``async with``), or on :meth:`Subscription.start`.

        Args:
            auth: credentials for this subscription instead of the client's.
            resume_from: start after this position (Herald history namespaces), replaying what
                came since, then live. For a wildcard, the position's ``channel`` is the one it
                belongs to; other channels start at ``since_ms``.
            since_ms: start with every event stored at or after this time (ms since the epoch).
            strict_resume: end the iteration with :class:`ResumeGapError` when a reconnect could
                not resume without a gap (default: record it in ``Subscription.gaps`` and go on).
        """
        if self._closed:
            raise ConfigurationError("the client is closed")
        return Subscription(
            self,
            channel,
            auth=auth,
            resume_from=resume_from,
            since_ms=since_ms,
            strict_resume=strict_resume,
            max_queued_events=self._max_queued,
        )

    async def publish(
        self,
        channel: str,
        *events: Any,
        via: Literal["http", "socket"] = "http",
        auth: Auth | None = None,
        encoded: bool = False,
        idempotency_key: str | None = None,
    ) -> PublishResult:
        """Publish 1–5 events to ``channel`` over HTTP (``POST /event``) or the socket.

        Events are JSON-encoded here, unless ``encoded`` says they are JSON text already.
        Returns the server's ``successful``/``failed`` lists (an event over the size limit is
        ``failed``, the others still go out); raises a :class:`ServerError` subclass when the
        whole publish is refused. ``idempotency_key`` makes a retry safe on Herald
        (docs/extensions.md): within the window, the same key publishes once.
        """
        if not events:
            raise ConfigurationError("publish needs at least one event")
        strings = []
        for event in events:
            if encoded:
                if not isinstance(event, str):
                    raise ConfigurationError("encoded events must be strings of JSON")
                strings.append(event)
            else:
                strings.append(compact_json(event))
        if via == "http":
            return await self._publish_http(channel, strings, auth or self.auth, idempotency_key)
        if via == "socket":
            return await self._publish_socket(channel, strings, auth or self.auth, idempotency_key)
        raise ConfigurationError(f"via must be 'http' or 'socket', not {via!r}")

    async def history(
        self,
        channel: str,
        *,
        since: Position | int | None = None,
        limit: int = 100,
        auth: Auth | None = None,
    ) -> HistoryPage:
        """One page of a channel's stored events (Herald's ``GET /event/history``): after the
        position ``since``, or stored at or after ``since`` ms, or from the oldest; at most
        ``limit`` (1–1000) events, fewer when the page reaches the server's byte bound. Authorized
        like a subscription to the channel."""
        query: dict[str, str] = {"channel": channel, "limit": str(limit)}
        if isinstance(since, Position):
            query["since"] = f"{since.epoch}:{since.offset}"
        elif since is not None:
            query["since"] = str(since)
        url = f"{self.endpoint.http_url}/history?{urlencode(query)}"
        headers = await (auth or self.auth).http_headers(self.endpoint, b"", method="GET", url=url)
        answer = await self._http_request("GET", url, headers, None, "history")
        return HistoryPage.from_wire(answer)

    async def read_history(
        self,
        channel: str,
        *,
        since: Position | int | None = None,
        page_size: int = 100,
        auth: Auth | None = None,
    ) -> AsyncIterator[Event]:
        """Every stored event of ``channel`` after ``since``, page by page, up to the newest at
        the time of the last page. Raises :class:`ResumeGapError` when ``since`` is no longer
        served (retention removed events after it, or the history was lost)."""
        while True:
            page = await self.history(channel, since=since, limit=page_size, auth=auth)
            if not page.recovered:
                raise ResumeGapError(channel, page.reason or "unknown")
            for event in page.events:
                yield event
            last = page.events[-1].position if page.events else None
            if last is None or page.top is None or last.offset >= page.top.offset:
                return
            since = last

    async def close(self) -> None:
        """Close the socket, end every subscription's iteration and release the HTTP client."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs.values()):
            sub._client_closed(None)
        self._subs.clear()
        self._fail_waiters(ConnectionLostError("client closed"))
        ws = self._ws
        if ws is not None:
            await ws.close()
        runner = self._runner
        if runner is not None and not runner.done():
            if ws is None:
                runner.cancel()  # between sockets: waiting out a backoff delay
            done, _ = await asyncio.wait({runner}, timeout=5)
            if not done:
                runner.cancel()
        if self._http is not None and self._own_http:
            await self._http.aclose()

    # --- HTTP -----------------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            verify: Any = self._ssl if self._ssl is not None else True
            self._http = httpx.AsyncClient(verify=verify)
        return self._http

    async def _publish_http(
        self, channel: str, events: list[str], auth: Auth, idempotency_key: str | None
    ) -> PublishResult:
        body = compact_json({"channel": channel, "events": events}).encode()
        headers = {"content-type": "application/json"}
        headers.update(await auth.http_headers(self.endpoint, body))
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        answer = await self._http_request(
            "POST", self.endpoint.http_url, headers, body, "http_publish"
        )
        return PublishResult.from_wire(answer)

    async def _http_request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, operation: str
    ) -> Mapping[str, Any]:
        """Send a request; its JSON answer, or the server's refusal raised."""
        try:
            resp = await self._http_client().request(
                method, url, content=body, headers=headers, timeout=self.operation_timeout
            )
        except httpx.TimeoutException as e:
            raise OperationTimeoutError(f"{operation}: {e}") from e
        except httpx.HTTPError as e:
            raise ConnectionFailedError(f"{operation}: {e}") from e
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code == 200 and isinstance(answer, Mapping):
            return answer
        errors = answer.get("errors") if isinstance(answer, Mapping) else None
        if not errors:
            kind = resp.headers.get("x-amzn-errortype", "HttpError").split(":")[0]
            errors = [{"errorType": kind, "message": resp.text[:200]}]
        raise server_error(operation, errors, resp.status_code)

    # --- The socket -----------------------------------------------------------------------

    async def _publish_socket(
        self, channel: str, events: list[str], auth: Auth, idempotency_key: str | None
    ) -> PublishResult:
        ws = await self._socket()
        body = compact_json({"channel": channel, "events": events})
        op = str(uuid.uuid4())
        frame: dict[str, Any] = {
            "type": "publish",
            "id": op,
            "channel": channel,
            "events": events,
            "authorization": await auth.ws_fields(self.endpoint, body),
        }
        if idempotency_key is not None:
            frame["idempotencyKey"] = idempotency_key
        answer = await self._request(ws, op, frame)
        if answer.get("type") != "publish_success":
            raise server_error("publish", answer.get("errors"))
        return PublishResult.from_wire(answer)

    async def _unsubscribe(self, op: str) -> None:
        ws = self._ws
        if ws is None or not self.connected:
            return  # the server forgets a dropped connection's subscriptions itself
        try:
            await self._request(ws, op, {"type": "unsubscribe", "id": op})
        except HeraldError as e:
            log.debug("unsubscribe %s: %s", op, e)

    async def _request(
        self, ws: ClientConnection, op: str, frame: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        fut: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[op] = fut
        try:
            await self._send(ws, frame)
            return await asyncio.wait_for(asyncio.shield(fut), self.operation_timeout)
        except asyncio.TimeoutError:
            raise OperationTimeoutError(f"no answer to {frame.get('type')} {op}") from None
        finally:
            self._waiters.pop(op, None)

    async def _send(self, ws: ClientConnection, frame: Mapping[str, Any]) -> None:
        try:
            await ws.send(compact_json(frame))
        except websockets.ConnectionClosed as e:
            raise ConnectionLostError(f"socket closed: {e}") from e

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.id) is sub:
            del self._subs[sub.id]

    async def _socket(self) -> ClientConnection:
        """The open socket: opened now if there is none, waited for while reconnecting."""
        if self._closed:
            raise ConfigurationError("the client is closed")
        if self._fatal is not None:
            raise self._fatal
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
            self._ready = asyncio.Event()
        assert self._ready is not None
        if self._runner is None:
            async with self._connect_lock:
                if self._runner is None:
                    first = await self._open()
                    self._ws = first
                    self._ready.set()
                    self._runner = asyncio.get_running_loop().create_task(self._run(first))
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), self.operation_timeout)
            except asyncio.TimeoutError:
                if self._fatal is not None:
                    raise self._fatal from None
                raise OperationTimeoutError("still reconnecting") from None
        if self._fatal is not None:
            raise self._fatal
        ws = self._ws
        if ws is None:
            raise ConnectionLostError("socket closed")
        return ws

    async def _open(self) -> ClientConnection:
        """Open a socket, authorize it (``header-`` subprotocol) and wait for ``connection_ack``."""
        fields = await self.auth.ws_fields(self.endpoint, "{}")
        header = base64.urlsafe_b64encode(compact_json(fields).encode()).rstrip(b"=").decode()
        url = self.endpoint.realtime_url
        options: dict[str, Any] = {}
        if url.startswith("wss://") and self._ssl is not None:
            options["ssl"] = self._ssl
        try:
            ws = await connect(
                url,
                subprotocols=[_PROTOCOL, Subprotocol(f"header-{header}")],
                open_timeout=self.connect_timeout,
                # Liveness is the protocol's own: ka frames and connectionTimeoutMs.
                ping_interval=None,
                close_timeout=2,
                max_size=_MAX_FRAME_BYTES,
                **options,
            )
        except websockets.InvalidStatus as e:
            status = e.response.status_code
            error_type = (
                "LimitExceededError"
                if status == 429
                else "UnauthorizedException"
                if status in (401, 403)
                else "HttpError"
            )
            errors = [{"errorType": error_type, "message": f"HTTP {status}"}]
            raise server_error("connect", errors, status) from e
        except (
            OSError,
            asyncio.TimeoutError,
            websockets.InvalidHandshake,
            websockets.InvalidURI,
        ) as e:
            raise ConnectionFailedError(f"cannot open {url}: {e}") from e
        try:
            try:
                await ws.send('{"type":"connection_init"}')
            except websockets.ConnectionClosed:
                pass  # a refused connect is closed at once: its connection_error is still queued
            while True:
                raw = await asyncio.wait_for(ws.recv(), self.connect_timeout)
                frame = _decode(raw)
                kind = frame.get("type") if frame else None
                if kind == "connection_ack":
                    timeout = frame.get("connectionTimeoutMs") if frame else None
                    if isinstance(timeout, int) and timeout > 0:
                        self.connection_timeout_ms = timeout
                    return ws
                if kind == "connection_error" and frame is not None:
                    await ws.close()
                    raise server_error("connect", frame.get("errors"))
                if kind == "ka":
                    self.keepalives += 1
        except asyncio.TimeoutError:
            await ws.close()
            raise ConnectionFailedError(f"no connection_ack from {url}") from None
        except websockets.ConnectionClosed as e:
            raise ConnectionFailedError(f"{url} closed during connect: {e}") from e

    async def _run(self, ws: ClientConnection) -> None:
        """Read the socket; reconnect and resubscribe when it is lost, until closed."""
        assert self._ready is not None
        try:
            while True:
                await self._read(ws)
                self._ready.clear()
                self._ws = None
                self._connection_lost()
                if self._closed:
                    return
                if self.backoff is None:
                    raise ConnectionFailedError("connection lost (reconnecting is off)")
                reopened = await self._reconnect(self.backoff)
                if reopened is None:
                    return
                ws = reopened
                self.reconnects += 1
                self._ws = ws
                if await self._resubscribe(ws):
                    self._ready.set()
                # else the new socket is already gone: reading it ends at once, and we reconnect
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # noqa: BLE001 - every end of the loop ends the subscriptions
            if not isinstance(e, HeraldError):
                e = ConnectionFailedError(f"connection failed: {e!r}")
            self._fatal = e
            self._ready.set()  # wake waiters, which then see the error
            for sub in list(self._subs.values()):
                sub._client_closed(e)
            self._subs.clear()
            self._fail_waiters(e)

    async def _resubscribe(self, ws: ClientConnection) -> bool:
        """Subscribe the active subscriptions again on a new socket, each resuming where it
        stopped. False when the socket closed meanwhile."""
        for sub in list(self._subs.values()):
            if not sub.active:
                continue
            try:
                frame = await sub._frame()
            except Exception as e:  # noqa: BLE001 - a token function failed: end that one only
                self._forget(sub)
                sub._client_closed(e)
                continue
            try:
                await self._send(ws, frame)
            except ConnectionLostError:
                return False
        return True

    async def _reconnect(self, backoff: Backoff) -> ClientConnection | None:
        attempt = 0
        while True:
            if backoff.max_attempts is not None and attempt >= backoff.max_attempts:
                raise ConnectionFailedError(f"gave up reconnecting after {attempt} attempts")
            await asyncio.sleep(backoff.delay(attempt))
            attempt += 1
            if self._closed:
                return None
            try:
                return await self._open()
            except (UnauthorizedError, ConfigurationError):
                raise  # retrying cannot help
            except Exception as e:  # noqa: BLE001 - the network, the server, a token function
                log.info("reconnect attempt %d failed: %s", attempt, e)

    async def _read(self, ws: ClientConnection) -> None:
        """Dispatch frames until the socket closes or stays silent past connectionTimeoutMs."""
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), self.connection_timeout_ms / 1000)
            except asyncio.TimeoutError:
                log.info("no frame for %d ms: the connection is dead", self.connection_timeout_ms)
                ws.transport.abort()
                return
            except websockets.ConnectionClosed as e:
                log.info("socket closed: %s", e)
                return
            frame = _decode(raw)
            if frame is None:
                continue
            kind = frame.get("type")
            op = frame.get("id")
            if kind == "ka":
                self.keepalives += 1
            elif kind == "data":
                sub = self._subs.get(op) if isinstance(op, str) else None
                if sub is not None:
                    await sub._on_data(frame)
            elif kind in ("subscribe_success", "subscribe_error"):
                sub = self._subs.get(op) if isinstance(op, str) else None
                if sub is not None:
                    sub._on_ack(frame)
            elif kind in (
                "publish_success",
                "publish_error",
                "unsubscribe_success",
                "unsubscribe_error",
            ) or (kind == "error" and isinstance(op, str)):
                fut = self._waiters.get(op) if isinstance(op, str) else None
                if fut is not None and not fut.done():
                    fut.set_result(frame)
                elif kind == "error" and isinstance(op, str) and op in self._subs:
                    self._subs[op]._on_ack(frame)
            elif kind in ("error", "broadcast_error"):
                log.warning("server reported %s: %s", kind, frame.get("errors"))

    def _connection_lost(self) -> None:
        self._fail_waiters(ConnectionLostError("socket closed before the answer"))
        for sub in list(self._subs.values()):
            sub._on_connection_lost()

    def _fail_waiters(self, error: BaseException) -> None:
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(error)
        self._waiters.clear()


def _decode(raw: str | bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
