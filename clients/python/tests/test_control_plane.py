"""Herald's AppSync control plane with the unmodified AWS CLI and boto3: only the endpoint URL
differs from talking to AWS. What they read must be the server's TOML configuration
(conftest.herald_config) and what they created; what they create must serve clients at once.
Every test that creates something deletes it again: the server is shared."""

from __future__ import annotations

import asyncio
import json
import os
import time
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from conftest import API_KEY, CONTROL_ADMIN, CONTROL_API_ID, REGION, Herald, unique
from herald_events import ApiKey, EventsClient, UnauthorizedError

ALL_MODES = [
    {"authType": mode}
    for mode in (
        "API_KEY",
        "AMAZON_COGNITO_USER_POOLS",
        "OPENID_CONNECT",
        "AWS_LAMBDA",
        "AWS_IAM",
    )
]


def control_url(herald: Herald) -> str:
    return f"http://127.0.0.1:{herald.port}"


def appsync(herald: Herald, secret: str = CONTROL_ADMIN[1]) -> Any:
    return boto3.client(
        "appsync",
        endpoint_url=control_url(herald),
        region_name=REGION,
        aws_access_key_id=CONTROL_ADMIN[0],
        aws_secret_access_key=secret,
    )


def aws_cli() -> list[str]:
    """The `aws` of this virtualenv (awscli from PyPI), else one on PATH."""
    beside = Path(sys.executable).parent / "aws"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("aws")
    if found is None:
        pytest.fail("the AWS CLI is not installed: pip install awscli")
    return [found]


def run_aws(herald: Herald, *args: str) -> subprocess.CompletedProcess[str]:
    # Only the credentials and the endpoint: no profile or config file of the caller's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=CONTROL_ADMIN[0],
        AWS_SECRET_ACCESS_KEY=CONTROL_ADMIN[1],
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return subprocess.run(
        [
            *aws_cli(),
            "appsync",
            *args,
            "--endpoint-url",
            control_url(herald),
            "--region",
            REGION,
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_api(api: dict[str, Any], herald: Herald) -> None:
    host = f"127.0.0.1:{herald.port}"
    assert api["apiId"] == CONTROL_API_ID
    assert api["name"] == "Python tests"
    assert api["apiArn"] == f"arn:aws:appsync:us-east-1:000000000000:apis/{CONTROL_API_ID}"
    assert api["dns"] == {"HTTP": host, "REALTIME": host}
    event = api["eventConfig"]
    assert event["connectionAuthModes"] == ALL_MODES
    assert event["defaultPublishAuthModes"] == ALL_MODES
    assert event["defaultSubscribeAuthModes"] == ALL_MODES
    providers = {p["authType"]: p for p in event["authProviders"]}
    assert set(providers) == {m["authType"] for m in ALL_MODES}
    assert providers["OPENID_CONNECT"]["openIDConnectConfig"]["issuer"] == (
        herald.identity.oidc_issuer
    )
    assert providers["OPENID_CONNECT"]["openIDConnectConfig"]["clientId"] == "python-client"
    cognito = providers["AMAZON_COGNITO_USER_POOLS"]["cognitoConfig"]
    assert cognito == {
        "userPoolId": "us-east-1_PythonTest",
        "awsRegion": "us-east-1",
        "appIdClientRegex": "pythonappclient",
    }
    lambda_config = providers["AWS_LAMBDA"]["lambdaAuthorizerConfig"]
    assert lambda_config["authorizerUri"] == f"{herald.identity.hook.url}/authorize"


def test_aws_cli_lists_and_gets_the_api(herald: Herald) -> None:
    listed = run_aws(herald, "list-apis")
    assert listed.returncode == 0, listed.stderr
    apis = json.loads(listed.stdout)["apis"]
    assert len(apis) == 1
    check_api(apis[0], herald)

    got = run_aws(herald, "get-api", "--api-id", CONTROL_API_ID)
    assert got.returncode == 0, got.stderr
    check_api(json.loads(got.stdout)["api"], herald)

    namespaces = run_aws(herald, "list-channel-namespaces", "--api-id", CONTROL_API_ID)
    assert namespaces.returncode == 0, namespaces.stderr
    names = [n["name"] for n in json.loads(namespaces.stdout)["channelNamespaces"]]
    assert names == ["default", "hist"]

    keys = run_aws(herald, "list-api-keys", "--api-id", CONTROL_API_ID)
    assert keys.returncode == 0, keys.stderr
    assert json.loads(keys.stdout)["apiKeys"] == [{"id": API_KEY, "description": "python-tests"}]

    missing = run_aws(herald, "get-api", "--api-id", "nope")
    assert missing.returncode != 0
    assert "NotFoundException" in missing.stderr


def test_boto3_reads_the_configuration(herald: Herald) -> None:
    client = appsync(herald)
    apis = client.list_apis()["apis"]
    assert len(apis) == 1
    check_api(apis[0], herald)
    # boto3 parses `created` as a timestamp.
    assert apis[0]["created"].year >= 2024
    check_api(client.get_api(apiId=CONTROL_API_ID)["api"], herald)

    namespaces = client.list_channel_namespaces(apiId=CONTROL_API_ID)["channelNamespaces"]
    assert [n["name"] for n in namespaces] == ["default", "hist"]
    for ns in namespaces:
        assert ns["apiId"] == CONTROL_API_ID
        assert ns["publishAuthModes"] == ALL_MODES
        assert ns["subscribeAuthModes"] == ALL_MODES
    one = client.get_channel_namespace(apiId=CONTROL_API_ID, name="hist")["channelNamespace"]
    assert one["name"] == "hist"
    assert one["channelNamespaceArn"].endswith(f"apis/{CONTROL_API_ID}/channelNamespace/hist")

    keys = client.list_api_keys(apiId=CONTROL_API_ID)["apiKeys"]
    assert keys == [{"id": API_KEY, "description": "python-tests"}]

    # The paginators follow nextToken.
    pages = client.get_paginator("list_channel_namespaces").paginate(
        apiId=CONTROL_API_ID, PaginationConfig={"PageSize": 1}
    )
    assert [n["name"] for page in pages for n in page["channelNamespaces"]] == ["default", "hist"]


def test_boto3_sees_the_aws_errors(herald: Herald) -> None:
    client = appsync(herald)
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_api(apiId="nope")
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_channel_namespace(apiId=CONTROL_API_ID, name="nope")
    with pytest.raises(client.exceptions.UnauthorizedException):
        appsync(herald, secret="not-the-secret").list_apis()
    # The API itself is the configuration file's, and so are its namespaces and keys.
    with pytest.raises(client.exceptions.BadRequestException) as refused:
        client.delete_api(apiId=CONTROL_API_ID)
    assert "configuration file" in str(refused.value)
    with pytest.raises(client.exceptions.BadRequestException):
        client.delete_api_key(apiId=CONTROL_API_ID, id=API_KEY)
    with pytest.raises(client.exceptions.BadRequestException):
        client.delete_channel_namespace(apiId=CONTROL_API_ID, name="default")
    with pytest.raises(client.exceptions.ConflictException):
        client.create_channel_namespace(apiId=CONTROL_API_ID, name="hist")
    with pytest.raises(client.exceptions.ApiKeyValidityOutOfBoundsException):
        client.create_api_key(apiId=CONTROL_API_ID, expires=int(time.time()) + 60)


CODE = """export function onPublish(ctx) {
  return ctx.events.map((e) => ({ ...e, payload: { by: "cli", was: e.payload } }));
}"""


async def round_trip(herald: Herald, key: str, channel: str, payload: Any) -> Any:
    """Subscribes and publishes with `key` (Herald's Python client); returns what arrived."""
    async with EventsClient(herald.endpoint, ApiKey(key)) as client:
        async with client.subscribe(channel) as sub:
            sent = await client.publish(channel, payload)
            assert sent.ok, sent
            event = await asyncio.wait_for(sub.__anext__(), 10)
            return event.data


def test_aws_cli_creates_a_namespace_and_key_that_serve_at_once(herald: Herald) -> None:
    name = unique("cli")
    made = run_aws(
        herald,
        "create-channel-namespace",
        "--api-id",
        CONTROL_API_ID,
        "--name",
        name,
        "--code-handlers",
        CODE,
        "--publish-auth-modes",
        "authType=API_KEY",
    )
    assert made.returncode == 0, made.stderr
    namespace = json.loads(made.stdout)["channelNamespace"]
    assert namespace["name"] == name and namespace["codeHandlers"] == CODE
    key = None
    try:
        created = run_aws(
            herald, "create-api-key", "--api-id", CONTROL_API_ID, "--description", "from the CLI"
        )
        assert created.returncode == 0, created.stderr
        key = json.loads(created.stdout)["apiKey"]
        assert key["description"] == "from the CLI" and key["expires"] % 3600 == 0
        listed = run_aws(herald, "list-api-keys", "--api-id", CONTROL_API_ID)
        assert key["id"] in [k["id"] for k in json.loads(listed.stdout)["apiKeys"]]

        got = asyncio.run(round_trip(herald, key["id"], f"/{name}/room", {"n": 1}))
        assert got == {"by": "cli", "was": {"n": 1}}

        # Without code the namespace passes events through unchanged.
        updated = run_aws(
            herald, "update-channel-namespace", "--api-id", CONTROL_API_ID, "--name", name
        )
        assert updated.returncode == 0, updated.stderr
        assert "codeHandlers" not in json.loads(updated.stdout)["channelNamespace"]
        got = asyncio.run(round_trip(herald, key["id"], f"/{name}/room", {"n": 2}))
        assert got == {"n": 2}
    finally:
        if key is not None:
            gone = run_aws(
                herald, "delete-api-key", "--api-id", CONTROL_API_ID, "--id", key["id"]
            )
            assert gone.returncode == 0, gone.stderr
        gone = run_aws(
            herald, "delete-channel-namespace", "--api-id", CONTROL_API_ID, "--name", name
        )
        assert gone.returncode == 0, gone.stderr
    missing = run_aws(
        herald, "get-channel-namespace", "--api-id", CONTROL_API_ID, "--name", name
    )
    assert "NotFoundException" in missing.stderr


def test_boto3_manages_keys_and_a_deleted_key_is_refused(herald: Herald) -> None:
    client = appsync(herald)
    expires = int(time.time()) + 30 * 86_400
    key = client.create_api_key(apiId=CONTROL_API_ID, description="boto3", expires=expires)[
        "apiKey"
    ]
    try:
        assert key["expires"] == expires - expires % 3600
        assert key["deletes"] == key["expires"] + 60 * 86_400
        later = expires + 86_400
        changed = client.update_api_key(
            apiId=CONTROL_API_ID, id=key["id"], description="boto3, renewed", expires=later
        )["apiKey"]
        assert changed["description"] == "boto3, renewed"
        assert changed["expires"] == later - later % 3600
        channel = f"/default/{unique('boto3')}"
        assert asyncio.run(round_trip(herald, key["id"], channel, [1])) == [1]
    finally:
        client.delete_api_key(apiId=CONTROL_API_ID, id=key["id"])
    with pytest.raises(UnauthorizedError):
        asyncio.run(round_trip(herald, key["id"], f"/default/{unique('gone')}", [2]))
    with pytest.raises(client.exceptions.NotFoundException):
        client.delete_api_key(apiId=CONTROL_API_ID, id=key["id"])


API_KEY_ONLY = {
    key: [{"authType": "API_KEY"}]
    for key in (
        "authProviders",
        "connectionAuthModes",
        "defaultPublishAuthModes",
        "defaultSubscribeAuthModes",
    )
}


def test_boto3_creates_an_api_that_serves_apart_from_the_first(herald: Herald) -> None:
    client = appsync(herald)
    api = client.create_api(
        name="boto3 second", tags={"team": "python"}, eventConfig=API_KEY_ONLY
    )["api"]
    api_id = api["apiId"]
    try:
        assert api["name"] == "boto3 second" and api["tags"] == {"team": "python"}
        listed = [a["apiId"] for a in client.list_apis()["apis"]]
        assert listed == [CONTROL_API_ID, api_id]
        client.create_channel_namespace(apiId=api_id, name="default")
        key = client.create_api_key(apiId=api_id)["apiKey"]["id"]
        endpoint = f"http://127.0.0.1:{herald.port}/apis/{api_id}/event"
        channel = f"/default/{unique('second')}"

        async def there() -> Any:
            async with EventsClient(endpoint, ApiKey(key)) as events:
                async with events.subscribe(channel) as sub:
                    assert (await events.publish(channel, {"api": "second"})).ok
                    return (await asyncio.wait_for(sub.__anext__(), 10)).data

        assert asyncio.run(there()) == {"api": "second"}

        async def first_key_there() -> None:
            async with EventsClient(endpoint, ApiKey(API_KEY)) as events:
                await events.publish(channel, [1])

        with pytest.raises(UnauthorizedError):
            asyncio.run(first_key_there())
        renamed = client.update_api(apiId=api_id, name="boto3 renamed", eventConfig=API_KEY_ONLY)[
            "api"
        ]
        assert renamed["name"] == "boto3 renamed"
    finally:
        client.delete_api(apiId=api_id)
    with pytest.raises(client.exceptions.NotFoundException):
        client.get_api(apiId=api_id)
