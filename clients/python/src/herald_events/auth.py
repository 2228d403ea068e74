"""The five AppSync Events authorization modes, as credentials a client carries.

Each one produces the fields of a WebSocket ``authorization`` object (connect, subscribe,
publish) and the headers of an HTTP publish. The WebSocket object always includes ``host``: the
HTTP host of the API, also when the socket is on the realtime host.

* :class:`ApiKey` — ``API_KEY`` (``x-api-key``).
* :class:`Jwt` — ``AMAZON_COGNITO_USER_POOLS`` and ``OPENID_CONNECT`` (``Authorization: <jwt>``;
  the server picks the provider from the token's issuer). :class:`CognitoUserPools` and
  :class:`OpenIdConnect` are the same class under the mode's name.
* :class:`LambdaAuthorizer` — ``AWS_LAMBDA`` (``Authorization: <token>``).
* :class:`SigV4` — ``AWS_IAM``, signed by botocore (``pip install herald-events[sigv4]``), from
  static keys or the usual environment/profile credential chain.

Tokens may be given as a string or as a function (plain or ``async``) returning one, called for
every operation, so a refreshed token is used after a reconnect.
"""

from __future__ import annotations

import inspect
import json
import os
from typing import Any, Awaitable, Callable, Union

from .endpoint import Endpoint
from .errors import ConfigurationError

#: A token, or a function returning the current one.
TokenSource = Union[str, Callable[[], Union[str, Awaitable[str]]]]


class Auth:
    """Credentials for one authorization mode. Subclass to add one."""

    async def ws_fields(self, endpoint: Endpoint, body: str) -> dict[str, str]:
        """The ``authorization`` object of a WebSocket operation whose signed body (for SigV4) is
        ``body``: ``{}`` for connect, ``{"channel":…}`` for subscribe,
        ``{"channel":…,"events":[…]}`` for publish."""
        raise NotImplementedError

    async def http_headers(
        self, endpoint: Endpoint, body: bytes, *, method: str = "POST", url: str | None = None
    ) -> dict[str, str]:
        """The headers that authorize an HTTP request: by default ``POST`` of ``body`` to
        ``endpoint.http_url``; Herald's ``GET /event/history`` passes its method and URL."""
        raise NotImplementedError


class ApiKey(Auth):
    """``API_KEY``: an API key (``da2-…`` on AWS, any configured key on Herald)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __repr__(self) -> str:
        return "ApiKey(***)"

    async def ws_fields(self, endpoint: Endpoint, body: str) -> dict[str, str]:
        return {"host": endpoint.host, "x-api-key": self.key}

    async def http_headers(
        self, endpoint: Endpoint, body: bytes, *, method: str = "POST", url: str | None = None
    ) -> dict[str, str]:
        return {"x-api-key": self.key}


async def _resolve(token: TokenSource) -> str:
    if isinstance(token, str):
        return token
    value = token()
    if inspect.isawaitable(value):
        value = await value
    if not isinstance(value, str):
        raise ConfigurationError("a token function must return a string")
    return value


class _AuthorizationHeader(Auth):
    """A token sent as ``Authorization``, as the JWT and Lambda modes do."""

    def __init__(self, token: TokenSource) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"{type(self).__name__}(***)"

    async def ws_fields(self, endpoint: Endpoint, body: str) -> dict[str, str]:
        return {"host": endpoint.host, "Authorization": await _resolve(self.token)}

    async def http_headers(
        self, endpoint: Endpoint, body: bytes, *, method: str = "POST", url: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": await _resolve(self.token)}


class Jwt(_AuthorizationHeader):
    """``AMAZON_COGNITO_USER_POOLS`` or ``OPENID_CONNECT``: a JWT (Cognito ID or access token, or
    your IdP's token)."""


#: ``AMAZON_COGNITO_USER_POOLS``: a Cognito ID or access token.
CognitoUserPools = Jwt
#: ``OPENID_CONNECT``: a token from the configured OpenID Connect issuer.
OpenIdConnect = Jwt


class LambdaAuthorizer(_AuthorizationHeader):
    """``AWS_LAMBDA``: any token your authorizer (a Lambda on AWS, a webhook on Herald) accepts."""


# The headers AppSync's WebSocket SigV4 signs besides host and the date (docs/authorization.md).
_WS_SIGNED = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}


class SigV4(Auth):
    """``AWS_IAM``: requests signed with SigV4 for service ``appsync``, by botocore.

    Args:
        access_key_id, secret_access_key, session_token: static credentials. Leave them out to
            use botocore's credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
            ``AWS_SESSION_TOKEN``, profiles, instance roles), refreshed as botocore does.
        region: the signing region; by default the one in an AWS endpoint's host name, else
            ``AWS_REGION``/``AWS_DEFAULT_REGION`` or the profile's.
    """

    def __init__(
        self,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        *,
        region: str | None = None,
    ) -> None:
        try:
            import botocore.auth  # type: ignore[import-untyped]
            import botocore.awsrequest  # type: ignore[import-untyped]
            import botocore.credentials  # type: ignore[import-untyped]
            import botocore.session  # type: ignore[import-untyped]
        except ImportError as e:  # botocore is an optional extra
            raise ConfigurationError(
                "SigV4 needs botocore: pip install 'herald-events[sigv4]'"
            ) from e
        self._botocore_auth = botocore.auth
        self._request_cls = botocore.awsrequest.AWSRequest
        self._region = region
        self._session = None
        if (access_key_id is None) != (secret_access_key is None):
            raise ConfigurationError("give both access_key_id and secret_access_key, or neither")
        self._credentials: Any
        if access_key_id is not None and secret_access_key is not None:
            self._credentials = botocore.credentials.Credentials(
                access_key_id, secret_access_key, session_token
            )
        else:
            self._session = botocore.session.get_session()
            self._credentials = self._session.get_credentials()
            if self._credentials is None:
                raise ConfigurationError("SigV4: botocore found no AWS credentials")

    def __repr__(self) -> str:
        return "SigV4(***)"

    def _region_for(self, endpoint: Endpoint) -> str:
        region = self._region or endpoint.region or os.environ.get("AWS_REGION")
        if region is None and self._session is None:
            import botocore.session

            self._session = botocore.session.get_session()
        if region is None and self._session is not None:
            region = self._session.get_config_variable("region")
        if not region:
            raise ConfigurationError(
                "SigV4 needs a region: pass region=…, or set AWS_REGION (AWS hosts name theirs)"
            )
        return str(region)

    def _sign(
        self,
        endpoint: Endpoint,
        url: str,
        headers: dict[str, str],
        body: bytes,
        method: str = "POST",
    ) -> dict[str, str]:
        # Frozen: a refreshing credential must not change between the key id and the secret.
        credentials = self._credentials.get_frozen_credentials()
        request = self._request_cls(method=method, url=url, data=body, headers=headers)
        signer = self._botocore_auth.SigV4Auth(credentials, "appsync", self._region_for(endpoint))
        signer.add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}

    async def ws_fields(self, endpoint: Endpoint, body: str) -> dict[str, str]:
        # The synthetic request AppSync verifies: POST https://<http host>/event.
        headers = dict(_WS_SIGNED)
        headers["host"] = endpoint.host
        fields = self._sign(endpoint, f"https://{endpoint.host}/event", headers, body.encode())
        # Spelled as in AppSync's documentation (names are case-insensitive to the server).
        fields["x-amz-date"] = fields.pop("X-Amz-Date")
        return fields

    async def http_headers(
        self, endpoint: Endpoint, body: bytes, *, method: str = "POST", url: str | None = None
    ) -> dict[str, str]:
        headers = {"host": endpoint.host}
        if method == "POST":
            headers["content-type"] = "application/json"
        return self._sign(endpoint, url or endpoint.http_url, headers, body, method)


def compact_json(value: Any) -> str:
    """JSON as AppSync clients write it (``JSON.stringify``): no spaces, non-ASCII and ``/``
    unescaped. SigV4 signatures cover bodies written this way."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
