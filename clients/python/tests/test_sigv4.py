"""What SigV4 signs, checked offline; the server side is in test_auth_modes.py."""

import pytest

from herald_events import ConfigurationError, Endpoint, SigV4


async def test_websocket_fields_sign_the_synthetic_request() -> None:
    endpoint = Endpoint.parse(
        "https://abcdefghijklmnopqrstuvwxyz.appsync-realtime-api.eu-west-2.amazonaws.com/event/realtime"
    )
    fields = await SigV4("AKIDEXAMPLE", "secret", "session-token").ws_fields(endpoint, "{}")
    assert fields["host"] == "abcdefghijklmnopqrstuvwxyz.appsync-api.eu-west-2.amazonaws.com"
    assert fields["accept"] == "application/json, text/javascript"
    assert fields["content-encoding"] == "amz-1.0"
    assert fields["content-type"] == "application/json; charset=UTF-8"
    assert fields["X-Amz-Security-Token"] == "session-token"
    assert len(fields["x-amz-date"]) == 16 and fields["x-amz-date"].endswith("Z")
    auth = fields["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-2/appsync/aws4_request" in auth
    assert (
        "SignedHeaders=accept;content-encoding;content-type;host;x-amz-date;x-amz-security-token,"
        in auth
    )


async def test_a_region_is_required_off_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(ConfigurationError, match="region"):
        await SigV4("AKIDEXAMPLE", "secret").ws_fields(
            Endpoint.parse("http://127.0.0.1:1/event"), "{}"
        )
