"""Endpoint forms: AWS hosts (HTTP and realtime), custom domains, Herald's plain HTTP."""

import pytest

from herald_events import ConfigurationError, Endpoint

AWS_HTTP = "abcdefghijklmnopqrstuvwxyz.appsync-api.us-east-1.amazonaws.com"
AWS_REALTIME = "abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    "given",
    [
        f"https://{AWS_HTTP}/event",
        AWS_HTTP,
        f"https://{AWS_HTTP}",
        f"wss://{AWS_REALTIME}/event/realtime",
        AWS_REALTIME,
    ],
)
def test_aws_forms_resolve_to_both_hosts(given: str) -> None:
    e = Endpoint.parse(given)
    # amplify-js's test vector: the HTTP endpoint and its realtime URL.
    assert e.http_url == f"https://{AWS_HTTP}/event"
    assert e.realtime_url == f"wss://{AWS_REALTIME}/event/realtime"
    assert e.host == AWS_HTTP  # auth objects carry the HTTP host, also on the realtime host
    assert e.region == "us-east-1"


def test_china_regions_keep_their_suffix() -> None:
    e = Endpoint.parse(
        "https://abcdefghijklmnopqrstuvwxyz.appsync-api.cn-north-1.amazonaws.com.cn/event"
    )
    assert e.realtime_url == (
        "wss://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.cn-north-1.amazonaws.com.cn/event/realtime"
    )
    assert e.region == "cn-north-1"


def test_herald_plain_http_keeps_a_plain_socket() -> None:
    e = Endpoint.parse("http://127.0.0.1:8080/event")
    assert e.http_url == "http://127.0.0.1:8080/event"
    assert e.realtime_url == "ws://127.0.0.1:8080/event/realtime"
    assert e.host == "127.0.0.1:8080"
    assert e.region is None


def test_custom_domain() -> None:
    e = Endpoint.parse("https://events.example.com/event")
    assert e.realtime_url == "wss://events.example.com/event/realtime"
    assert e.host == "events.example.com"
    assert Endpoint.parse(
        "https://events.example.com/event", "wss://rt.example.com/x"
    ).realtime_url == ("wss://rt.example.com/x")


@pytest.mark.parametrize("bad", ["ftp://x/event", "http:///event", "https://user:pw@host/event"])
def test_bad_endpoints_are_refused(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        Endpoint.parse(bad)


async def test_resubscribes_carry_resume_except_on_aws() -> None:
    from herald_events import ApiKey, EventsClient

    async def resubscribe_frame(client: EventsClient) -> dict:
        sub = client.subscribe("/chat/room")
        sub._state = "active"  # as after its first subscribe_success
        sub._since_ms = 1
        return await sub._frame()

    herald = EventsClient("http://127.0.0.1:8080/event", ApiKey("k"))
    assert "since_ms" in (await resubscribe_frame(herald))["resume"]
    aws = EventsClient(f"https://{AWS_HTTP}/event", ApiKey("k"))
    assert not aws.resume and "resume" not in await resubscribe_frame(aws)
    custom = EventsClient("https://events.example.com/event", ApiKey("k"), resume=False)
    assert "resume" not in await resubscribe_frame(custom)
