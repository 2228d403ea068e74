"""One subscription: an async iterator of :class:`~herald_events.Event` that survives reconnects.

A subscription remembers the last position it delivered per concrete channel. When the client
reconnects it subscribes again with Herald's ``resume`` field (docs/extensions.md), so the
server replays exactly what was missed, in order, then goes live. Events at or before a
remembered position are dropped, so an overlap can never show as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping

from .auth import Auth, compact_json
from .errors import (
    ConfigurationError,
    ConnectionLostError,
    HeraldError,
    LimitExceededError,
    OperationTimeoutError,
    ResumeGapError,
    server_error,
)
from .event import Event, Position

if TYPE_CHECKING:
    from .client import EventsClient

log = logging.getLogger("herald_events")

_END = object()


class Subscription:
    """Events of one channel or wildcard (``/ns/a/*``), in order.

    Made by :meth:`EventsClient.subscribe`; iterate it (``async for event in sub``) or use it
    as an async context manager, which subscribes on entry and unsubscribes on exit. Iterating
    subscribes first if needed, and leaving the loop unsubscribes. The iteration ends when the
    subscription or the client is closed, and raises if it ends in error (refused, the
    connection lost for good, a resume gap with ``strict_resume=True``). ``await
    sub.__anext__()`` takes one event without a loop.
    """

    def __init__(
        self,
        client: EventsClient,
        channel: str,
        *,
        auth: Auth | None,
        resume_from: Position | None,
        since_ms: int | None,
        strict_resume: bool,
        max_queued_events: int,
    ) -> None:
        self._client = client
        #: The channel as subscribed (may end in ``/*``).
        self.channel = channel
        #: The operation id, also used again for each resubscribe.
        self.id = str(uuid.uuid4())
        self._auth = auth
        self._wildcard = channel.endswith("/*")
        self._strict = strict_resume
        self._queue: asyncio.Queue[Any] = asyncio.Queue(max_queued_events)
        self._state = "new"  # new → starting → active → closed
        self._ack: asyncio.Future[Mapping[str, Any]] | None = None
        self._end_error: BaseException | None = None
        self._ended = False
        # The last delivered position: per concrete channel for a wildcard, under "" otherwise.
        self._positions: dict[str, Position] = {}
        self._since_ms = since_ms
        self._initial_resume = resume_from is not None or since_ms is not None
        if resume_from is not None:
            if self._wildcard and resume_from.channel is None:
                raise ConfigurationError("a wildcard resume_from needs the position's channel")
            self._positions[resume_from.channel if self._wildcard else ""] = resume_from  # type: ignore[index]
        #: Resumes that could not be served since the subscription started (events may be
        #: missing there): one :class:`ResumeGapError` each, with the server's reason.
        self.gaps: list[ResumeGapError] = []
        #: Events replayed by the server on resumes, in total.
        self.replayed = 0
        self._retry: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"Subscription({self.channel!r}, {self._state})"

    @property
    def active(self) -> bool:
        """True while subscribed (also across a reconnect in progress)."""
        return self._state == "active"

    @property
    def closed(self) -> bool:
        """True once the subscription has ended (unsubscribed, refused, or the client closed)."""
        return self._ended

    def positions(self) -> dict[str, Position]:
        """The last delivered position of each concrete channel, for resuming later by hand."""
        return {p.channel or self.channel: p for p in self._positions.values()}

    # --- The user's side ------------------------------------------------------------------

    async def start(self) -> Subscription:
        """Subscribe, and wait for the server's ``subscribe_success``. Raises the server's
        refusal (:class:`UnauthorizedError`, :class:`BadRequestError`, …)."""
        if self._state != "new":
            if self._state == "closed":
                raise ConfigurationError("this subscription is closed")
            return self
        self._state = "starting"
        if self._since_ms is None:
            # Channels a wildcard has not delivered yet resume from the time it started.
            self._since_ms = int(time.time() * 1000)
        try:
            while True:
                try:
                    answer = await self._send_subscribe(first=True)
                    break
                except ConnectionLostError:
                    continue  # the socket dropped before the answer: subscribe on the next one
        except BaseException:
            self._state = "closed"
            self._client._forget(self)
            raise
        self._state = "active"
        self._check_resume(answer, initial=True)
        return self

    async def close(self) -> None:
        """Unsubscribe and end the iteration (queued events are dropped)."""
        if self._state == "closed":
            return
        was_sent = self._state in ("starting", "active")
        self._state = "closed"
        if self._retry is not None:
            self._retry.cancel()
        if self._ack is not None and not self._ack.done():
            self._ack.set_exception(ConfigurationError("closed while subscribing"))
        self._client._forget(self)
        if was_sent:
            # Also when the subscribe is unanswered: the server handles frames in order.
            await self._client._unsubscribe(self.id)
        self._finish(None, drop_queued=True)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        # A generator, so that leaving the loop (break, return, an exception) unsubscribes:
        # asyncio closes an abandoned generator, which would otherwise keep its queue filling.
        try:
            while True:
                try:
                    event = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield event
        finally:
            await self.close()

    async def __anext__(self) -> Event:
        if self._state == "new":
            await self.start()
        if self._ended and self._queue.empty():
            return self._raise_end()
        item = await self._queue.get()
        if item is _END:
            return self._raise_end()
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[no-any-return]

    def _raise_end(self) -> Event:
        if self._end_error is not None:
            raise self._end_error
        raise StopAsyncIteration

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- The client's side ----------------------------------------------------------------

    def _resume_field(self) -> dict[str, Any] | None:
        if self._state == "starting":
            if not self._initial_resume:
                return None
        elif not self._client.resume:
            return None
        if not self._wildcard:
            last = self._positions.get("")
            if last is not None:
                return {"epoch": last.epoch, "offset": last.offset}
            return {"since_ms": self._since_ms} if self._since_ms is not None else None
        resume: dict[str, Any] = {}
        if self._since_ms is not None:
            resume["since_ms"] = self._since_ms
        if self._positions:
            resume["positions"] = {
                ch: {"epoch": p.epoch, "offset": p.offset} for ch, p in self._positions.items()
            }
        return resume or None

    async def _frame(self) -> dict[str, Any]:
        """The ``subscribe`` frame, with ``resume`` from the last delivered positions."""
        auth = self._auth or self._client.auth
        body = compact_json({"channel": self.channel})
        frame: dict[str, Any] = {
            "type": "subscribe",
            "id": self.id,
            "channel": self.channel,
            "authorization": await auth.ws_fields(self._client.endpoint, body),
        }
        resume = self._resume_field()
        if resume is not None:
            frame["resume"] = resume
        return frame

    async def _send_subscribe(self, *, first: bool) -> Mapping[str, Any]:
        """Send ``subscribe`` on the current socket and return the answer (raising refusals)."""
        client = self._client
        ws = await client._socket()
        frame = await self._frame()
        loop = asyncio.get_running_loop()
        self._ack = loop.create_future()
        client._subs[self.id] = self
        await client._send(ws, frame)
        try:
            answer = await asyncio.wait_for(asyncio.shield(self._ack), client.operation_timeout)
        except asyncio.TimeoutError:
            raise OperationTimeoutError(f"no answer to subscribe {self.channel}") from None
        finally:
            self._ack = None
        if answer.get("type") != "subscribe_success":
            client._subs.pop(self.id, None)
            raise server_error("subscribe", answer.get("errors"))
        return answer

    def _on_ack(self, frame: Mapping[str, Any]) -> None:
        """A ``subscribe_success``/``subscribe_error`` (or ``error``) for this id."""
        if self._ack is not None and not self._ack.done():
            self._ack.set_result(frame)
            return
        if self._state != "active":
            return
        # The answer to a resubscribe sent by the client after a reconnect.
        if frame.get("type") == "subscribe_success":
            self._check_resume(frame, initial=False)
            return
        error = server_error("subscribe", frame.get("errors"))
        if isinstance(error, LimitExceededError):
            # Too many resumes in progress: the server asks for a short, growing delay.
            self._retry = asyncio.get_running_loop().create_task(self._resubscribe_later())
            return
        self._client._forget(self)
        self._state = "closed"
        self._finish(error)

    def _on_connection_lost(self) -> None:
        if self._ack is not None and not self._ack.done():
            self._ack.set_exception(ConnectionLostError("connection lost before subscribe_success"))

    async def _resubscribe_later(self) -> None:
        attempt = 0
        backoff = self._client.backoff
        while self._state == "active":
            await asyncio.sleep(backoff.delay(attempt) if backoff else 0.5)
            attempt += 1
            try:
                answer = await self._send_subscribe(first=False)
            except LimitExceededError:
                continue
            except ConnectionLostError:
                return  # the reconnect resubscribes
            except HeraldError as e:
                self._client._forget(self)
                self._state = "closed"
                self._finish(e)
                return
            self._check_resume(answer, initial=False)
            return

    def _check_resume(self, answer: Mapping[str, Any], *, initial: bool) -> None:
        resume = answer.get("resume")
        if not isinstance(resume, Mapping):
            return
        replayed = resume.get("replayed")
        if isinstance(replayed, int):
            self.replayed += replayed
        if resume.get("recovered") is False:
            gap = ResumeGapError(self.channel, str(resume.get("reason", "unknown")))
            self.gaps.append(gap)
            log.warning("%s", gap)
            if self._strict:
                self._client._forget(self)
                self._state = "closed"
                self._finish(gap)

    async def _on_data(self, frame: Mapping[str, Any]) -> None:
        if self._state not in ("starting", "active"):
            return
        raw = frame.get("event")
        if not isinstance(raw, str):
            return
        position = Position.from_wire(frame.get("position"))
        if position is not None:
            key = (position.channel or self.channel) if self._wildcard else ""
            last = self._positions.get(key)
            if last is not None and last.epoch == position.epoch and position.offset <= last.offset:
                return  # already delivered: a replay overlapping what arrived live
            self._positions[key] = position
        channel = position.channel if position and position.channel else None
        if channel is None and not self._wildcard:
            channel = self.channel
        await self._queue.put(
            Event(raw=raw, channel=channel, position=position, subscription=self.channel)
        )

    def _finish(self, error: BaseException | None, *, drop_queued: bool = False) -> None:
        """End the iteration, after the queued events unless ``drop_queued``."""
        if self._ended:
            return
        self._ended = True
        self._end_error = error
        if drop_queued:
            while not self._queue.empty():
                self._queue.get_nowait()
        try:
            self._queue.put_nowait(_END)
        except asyncio.QueueFull:
            pass  # the consumer finds the end when it has drained the queue

    def _client_closed(self, error: BaseException | None) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._state = "closed"
        if self._ack is not None and not self._ack.done():
            self._ack.set_exception(error or ConnectionLostError("client closed"))
        self._finish(error)
