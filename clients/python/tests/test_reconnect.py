"""Reconnect with resume: while a publisher keeps publishing, the subscriber's connection is cut
(or goes silent) several times; every event still arrives exactly once, in order."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from conftest import API_KEY, CONNECTION_TIMEOUT_MS, Herald, Proxy, unique

from herald_events import (
    ApiKey,
    Backoff,
    ConnectionFailedError,
    EventsClient,
    LambdaAuthorizer,
    Position,
    Subscription,
    UnauthorizedError,
)

FAST = Backoff(initial=0.05, maximum=0.5)


async def collect(sub: Subscription, want: dict[str, int], into: dict[str, list[int]]) -> None:
    """Read until every channel in ``want`` has delivered its last sequence number."""
    async for event in sub:
        assert event.channel is not None
        into[event.channel].append(event.data["seq"])
        if all(into[ch] and into[ch][-1] == last for ch, last in want.items()):
            return


async def test_cut_connections_lose_and_duplicate_nothing(herald: Herald, proxy: Proxy) -> None:
    seg = unique("resume")
    a, b, c = (f"/hist/{seg}/{x}" for x in "abc")
    total = 600
    # a and b from the start; c only from the first cut on, so the wildcard learns it while
    # reconnecting (replayed from the subscription's start time, not from a position).
    plan = [a if i % 2 == 0 else b for i in range(total // 3)] + [
        (a, b, c)[i % 3] for i in range(total - total // 3)
    ]
    expected: dict[str, list[int]] = defaultdict(list)
    for seq, ch in enumerate(plan):
        expected[ch].append(seq)

    subscriber = EventsClient(proxy.endpoint, ApiKey(API_KEY), backoff=FAST)
    publisher = EventsClient(herald.endpoint, ApiKey(API_KEY))
    try:
        exact = await subscriber.subscribe(a).start()
        wildcard = await subscriber.subscribe(f"/hist/{seg}/*").start()
        got_exact: dict[str, list[int]] = defaultdict(list)
        got_wild: dict[str, list[int]] = defaultdict(list)
        readers = [
            asyncio.create_task(collect(exact, {a: expected[a][-1]}, got_exact)),
            asyncio.create_task(
                collect(wildcard, {ch: seqs[-1] for ch, seqs in expected.items()}, got_wild)
            ),
        ]
        cuts = 0
        for seq, ch in enumerate(plan):
            # Alternate the two ways of publishing; socket publishes are the publisher's own.
            via = "socket" if seq % 2 else "http"
            await publisher.publish(ch, {"seq": seq}, via=via)  # type: ignore[arg-type]
            if seq in (total // 3, total // 2, 2 * total // 3, 5 * total // 6):
                cuts += proxy.sever()
            if seq % 20 == 0:
                await asyncio.sleep(0.01)  # let the subscriber read (and reconnect) meanwhile
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    finally:
        await subscriber.close()
        await publisher.close()

    assert cuts == 4 and subscriber.reconnects >= 4
    assert dict(got_exact) == {a: expected[a]}
    assert dict(got_wild) == dict(expected)
    assert exact.gaps == [] and wildcard.gaps == []
    assert exact.replayed > 0 and wildcard.replayed > 0


async def test_silence_past_connection_timeout_reconnects_and_resumes(
    herald: Herald, proxy: Proxy
) -> None:
    seg = unique("silent")
    channel = f"/hist/{seg}"
    subscriber = EventsClient(proxy.endpoint, ApiKey(API_KEY), backoff=FAST)
    publisher = EventsClient(herald.endpoint, ApiKey(API_KEY))
    try:
        sub = await subscriber.subscribe(channel).start()
        assert subscriber.connection_timeout_ms == CONNECTION_TIMEOUT_MS  # from connection_ack
        await publisher.publish(channel, {"seq": 0})
        assert (await asyncio.wait_for(sub.__anext__(), 10)).data == {"seq": 0}
        # The server goes silent (no ka, no data) without closing: only the timeout can tell.
        proxy.freeze()
        started = time.monotonic()
        await publisher.publish(channel, {"seq": 1})
        event = await asyncio.wait_for(sub.__anext__(), CONNECTION_TIMEOUT_MS / 1000 + 10)
        waited = time.monotonic() - started
        assert event.data == {"seq": 1}
        assert subscriber.reconnects == 1
        assert waited >= CONNECTION_TIMEOUT_MS / 1000 * 0.9
        await publisher.publish(channel, {"seq": 2})
        assert (await asyncio.wait_for(sub.__anext__(), 10)).data == {"seq": 2}
    finally:
        await subscriber.close()
        await publisher.close()


async def test_keepalives_keep_an_idle_connection_open(herald: Herald) -> None:
    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        await client.connect()
        # Idle for longer than connectionTimeoutMs: the ka frames keep it alive.
        deadline = time.monotonic() + CONNECTION_TIMEOUT_MS / 1000 * 1.5
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert client.keepalives >= 5
        assert client.connected and client.reconnects == 0


async def test_resume_from_a_saved_position(herald: Herald) -> None:
    channel = f"/hist/{unique('saved')}"
    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        result = await client.publish(channel, {"n": 1}, {"n": 2}, {"n": 3})
        first = result.successful[0].position
        assert isinstance(first, Position)
        async with client.subscribe(channel, resume_from=first) as sub:
            assert sub.replayed == 2
            got = [(await asyncio.wait_for(sub.__anext__(), 10)).data for _ in range(2)]
            assert got == [{"n": 2}, {"n": 3}]
        gone = Position(epoch="1", offset=1)
        async with client.subscribe(channel, resume_from=gone) as sub:
            assert [g.reason for g in sub.gaps] == ["epoch_changed"]


async def test_giving_up_ends_the_iteration_with_a_typed_error(
    herald: Herald, proxy: Proxy
) -> None:
    seg = unique("gone")
    client = EventsClient(
        proxy.endpoint, ApiKey(API_KEY), backoff=Backoff(initial=0.01, max_attempts=3)
    )
    try:
        sub = await client.subscribe(f"/default/{seg}").start()
        await proxy.stop_listening()
        proxy.sever()
        with pytest.raises(ConnectionFailedError, match="gave up reconnecting after 3 attempts"):
            await asyncio.wait_for(sub.__anext__(), 10)
        with pytest.raises(ConnectionFailedError):  # the client is finished too
            await client.publish(f"/default/{seg}", 1, via="socket")
    finally:
        await client.close()


async def test_without_reconnecting_a_lost_socket_ends_subscriptions(
    herald: Herald, proxy: Proxy
) -> None:
    client = EventsClient(proxy.endpoint, ApiKey(API_KEY), backoff=None)
    try:
        sub = await client.subscribe(f"/default/{unique('once')}").start()
        proxy.sever()
        with pytest.raises(ConnectionFailedError, match="reconnecting is off"):
            await asyncio.wait_for(sub.__anext__(), 10)
    finally:
        await client.close()


async def test_close_while_waiting_to_reconnect_is_prompt(herald: Herald, proxy: Proxy) -> None:
    client = EventsClient(proxy.endpoint, ApiKey(API_KEY), backoff=Backoff(initial=30))
    sub = await client.subscribe(f"/default/{unique('closing')}").start()
    proxy.sever()
    while client.connected:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await client.close()
    assert time.monotonic() - started < 2
    with pytest.raises(StopAsyncIteration):
        await sub.__anext__()


async def test_a_refused_reconnect_ends_the_subscriptions(herald: Herald, proxy: Proxy) -> None:
    token = {"value": "allow-until-revoked"}
    auth = LambdaAuthorizer(lambda: token["value"])  # asked again on every connect
    client = EventsClient(proxy.endpoint, auth, backoff=FAST)
    try:
        sub = await client.subscribe(f"/default/{unique('revoked')}").start()
        token["value"] = "deny-revoked"
        proxy.sever()
        with pytest.raises(UnauthorizedError) as refused:
            await asyncio.wait_for(sub.__anext__(), 10)
        assert refused.value.operation == "connect"
    finally:
        await client.close()


async def test_a_socket_publish_during_a_reconnect_waits_for_the_new_socket(
    herald: Herald, proxy: Proxy
) -> None:
    channel = f"/hist/{unique('waits')}"
    async with EventsClient(proxy.endpoint, ApiKey(API_KEY), backoff=FAST) as client:
        async with client.subscribe(channel) as sub:
            proxy.sever()
            while client.connected:  # the reader notices the cut
                await asyncio.sleep(0.01)
            assert (await client.publish(channel, "after the cut", via="socket")).ok
            assert client.reconnects == 1
            assert (await asyncio.wait_for(sub.__anext__(), 10)).data == "after the cut"
