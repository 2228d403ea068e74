"""Every authorization mode against a real Herald: connect, subscribe, publish over the socket
and over HTTP, with the mode's credentials; and the refusals, as typed exceptions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import API_KEY, IAM_ALL, IAM_READER, IAM_SESSION, REGION, Herald, unique

from herald_events import (
    ApiKey,
    Auth,
    BadRequestError,
    CognitoUserPools,
    EventsClient,
    Jwt,
    LambdaAuthorizer,
    OpenIdConnect,
    SigV4,
    Subscription,
    UnauthorizedError,
)

T = 10


def _isolate_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS configuration of this machine may leak into botocore's credential chain."""
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
    ):
        monkeypatch.delenv(name, raising=False)


def make_auth(mode: str, herald: Herald, monkeypatch: pytest.MonkeyPatch) -> Auth:
    ident = herald.identity
    if mode == "api_key":
        return ApiKey(API_KEY)
    if mode == "oidc":
        return OpenIdConnect(ident.oidc_token("alice"))
    if mode == "oidc_async_provider":

        async def token() -> str:
            return ident.oidc_token("alice-refreshing")

        return Jwt(token)
    if mode == "cognito":
        return CognitoUserPools(ident.cognito_token("bob"))
    if mode == "lambda":
        return LambdaAuthorizer("allow-python")
    if mode == "iam_static":
        return SigV4(*IAM_ALL, region=REGION)
    if mode == "iam_session":
        return SigV4(*IAM_SESSION, region=REGION)
    if mode == "iam_environment":
        _isolate_aws_env(monkeypatch)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", IAM_SESSION[0])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", IAM_SESSION[1])
        monkeypatch.setenv("AWS_SESSION_TOKEN", IAM_SESSION[2])
        monkeypatch.setenv("AWS_REGION", REGION)
        return SigV4()
    raise AssertionError(mode)


async def next_event(sub: Subscription) -> Any:
    return await asyncio.wait_for(sub.__anext__(), T)


MODES = [
    "api_key",
    "oidc",
    "oidc_async_provider",
    "cognito",
    "lambda",
    "iam_static",
    "iam_session",
    "iam_environment",
]


@pytest.mark.parametrize("mode", MODES)
async def test_every_mode_connects_subscribes_and_publishes(
    mode: str, herald: Herald, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = make_auth(mode, herald, monkeypatch)
    seg = unique(mode)
    text = 'héllo "wörld" / ✓\n\u0001'
    async with EventsClient(herald.endpoint, auth) as client:
        await client.connect()  # the connect authorization, in the header- subprotocol
        async with client.subscribe(f"/hist/{seg}/*") as sub:
            over_socket = await client.publish(
                f"/hist/{seg}/a", {"via": "socket", "text": text}, via="socket"
            )
            assert over_socket.ok and over_socket.successful[0].delivered == 1
            first = await next_event(sub)
            assert first.data == {"via": "socket", "text": text}
            assert first.channel == f"/hist/{seg}/a"
            assert first.position is not None and first.position.offset >= 1

            over_http = await client.publish(
                f"/hist/{seg}/b", {"via": "http", "text": text}, [1, None]
            )
            assert over_http.ok and len(over_http.successful) == 2
            second, third = await next_event(sub), await next_event(sub)
            assert (second.data, third.data) == ({"via": "http", "text": text}, [1, None])
            assert second.channel == f"/hist/{seg}/b"


async def test_one_connection_carries_a_different_mode_per_subscription(
    herald: Herald, monkeypatch: pytest.MonkeyPatch
) -> None:
    seg = unique("mixed")
    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        subs = [
            client.subscribe(f"/default/{seg}", auth=make_auth(mode, herald, monkeypatch))
            for mode in ("oidc", "cognito", "lambda", "iam_static")
        ]
        for sub in subs:
            await sub.start()
        await client.publish(
            f"/default/{seg}",
            {"n": 1},
            via="socket",
            auth=make_auth("iam_session", herald, monkeypatch),
        )
        for sub in subs:
            event = await next_event(sub)
            assert event.data == {"n": 1} and event.channel == f"/default/{seg}"
            assert event.position is None  # no history in this namespace


async def test_refusals_raise_typed_errors(herald: Herald) -> None:
    ident = herald.identity
    bad_connects: list[Auth] = [
        ApiKey("da2-not-a-key"),
        LambdaAuthorizer("deny-me"),
        OpenIdConnect(ident.oidc_token("late", exp=1)),  # expired
        SigV4(IAM_ALL[0], "wrong-secret", region=REGION),
        SigV4(IAM_SESSION[0], IAM_SESSION[1], region=REGION),  # session token missing
    ]
    for auth in bad_connects:
        client = EventsClient(herald.endpoint, auth)
        with pytest.raises(UnauthorizedError) as refused:
            await client.connect()
        assert refused.value.operation == "connect"
        assert refused.value.error_type == "UnauthorizedException"
        await client.close()

    seg = unique("refused")
    async with EventsClient(herald.endpoint, LambdaAuthorizer("readonly-python")) as client:
        async with client.subscribe(f"/default/{seg}"):
            pass  # may subscribe...
        with pytest.raises(UnauthorizedError) as refused:  # ...never publish
            await client.publish(f"/default/{seg}", 1, via="socket")
        assert refused.value.operation == "publish"
        with pytest.raises(UnauthorizedError) as refused:
            await client.publish(f"/default/{seg}", 1)
        assert refused.value.operation == "http_publish" and refused.value.status == 401

    async with EventsClient(herald.endpoint, SigV4(*IAM_READER, region=REGION)) as client:
        async with client.subscribe(f"/default/{seg}"):
            pass
        for via in ("socket", "http"):
            with pytest.raises(UnauthorizedError):
                await client.publish(f"/default/{seg}", 1, via=via)  # type: ignore[arg-type]

    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        with pytest.raises(UnauthorizedError):  # unknown namespace: refused like a bad key
            await client.subscribe(f"/nowhere/{seg}").start()
        with pytest.raises(BadRequestError):
            await client.publish(f"/default/{seg}/*", 1, via="socket")
        with pytest.raises(BadRequestError) as bad:
            await client.publish(f"/default/{seg}/*", 1)
        assert bad.value.status == 400
        # The connection survived every refusal.
        assert (await client.publish(f"/default/{seg}", 1, via="socket")).ok


async def test_iteration_subscribes_and_client_close_ends_it(herald: Herald) -> None:
    seg = unique("iter")
    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        got: list[Any] = []

        async def consume() -> None:
            async for event in client.subscribe(f"/default/{seg}/*"):
                got.append(event.data)

        task = asyncio.create_task(consume())
        # Publish until the iteration, which subscribes on its first step, sees one.
        for i in range(200):
            await client.publish(f"/default/{seg}/x", i)
            if got:
                break
            await asyncio.sleep(0.02)
        assert got
    await asyncio.wait_for(task, T)  # closing the client ended the loop


@pytest.mark.parametrize("mode", ["api_key", "iam_session"])
async def test_tls_endpoints_as_on_aws(
    mode: str, herald: Herald, monkeypatch: pytest.MonkeyPatch
) -> None:
    """https:// and wss://, as every AWS endpoint is; SigV4 then signs the HTTP body over TLS."""
    seg = unique(f"tls-{mode}")
    client = EventsClient(
        herald.tls_endpoint, make_auth(mode, herald, monkeypatch), ssl=herald.tls_context()
    )
    assert client.endpoint.realtime_url == f"wss://localhost:{herald.port}/event/realtime"
    async with client:
        async with client.subscribe(f"/default/{seg}") as sub:
            await client.publish(f"/default/{seg}", {"over": "https"})
            await client.publish(f"/default/{seg}", {"over": "wss"}, via="socket")
            assert (await next_event(sub)).data == {"over": "https"}
            assert (await next_event(sub)).data == {"over": "wss"}


async def test_leaving_the_loop_unsubscribes(herald: Herald) -> None:
    channel = f"/default/{unique('leave')}"
    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        sub = await client.subscribe(channel).start()
        assert (await client.publish(channel, 1)).successful[0].delivered == 1
        async for event in sub:
            assert event.data == 1
            break
        # asyncio closes the abandoned loop's generator, which unsubscribes.
        for _ in range(500):
            if sub.closed:
                break
            await asyncio.sleep(0.01)
        assert sub.closed and not sub.active
        assert (await client.publish(channel, 2)).successful[0].delivered == 0
