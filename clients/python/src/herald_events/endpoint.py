"""Where to connect: the HTTP endpoint, the realtime (WebSocket) endpoint and the host name that
goes into every authorization object, from one endpoint as a user writes it.

Accepted forms:

* AWS: ``https://<id>.appsync-api.<region>.amazonaws.com/event``, the bare host
  ``<id>.appsync-api.<region>.amazonaws.com`` (as ``aws appsync get-api`` prints it), or the
  realtime forms (``wss://<id>.appsync-realtime-api.<region>.amazonaws.com/event/realtime``).
  The realtime host is the HTTP host with ``appsync-api`` replaced by ``appsync-realtime-api``.
* A custom domain or Herald: ``https://events.example.com/event`` (socket at
  ``wss://events.example.com/event/realtime``) or ``http://127.0.0.1:8080/event`` (socket at
  ``ws://127.0.0.1:8080/event/realtime``: unlike amplify-js, plain HTTP keeps a plain socket).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigurationError

_AWS_HOST = re.compile(
    r"^(?P<id>[a-z0-9]+)\.(?P<kind>appsync-api|appsync-realtime-api)\.(?P<region>[a-z0-9-]+)"
    r"\.amazonaws\.com(?:\.cn)?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Endpoint:
    """The resolved endpoints of one Events API."""

    #: ``POST`` URL for HTTP publishes, e.g. ``https://…appsync-api…/event``.
    http_url: str
    #: WebSocket URL, e.g. ``wss://…appsync-realtime-api…/event/realtime``.
    realtime_url: str
    #: The HTTP host (with a non-default port), sent as ``host`` in authorization objects even
    #: on the realtime host, as AppSync requires.
    host: str
    #: The AWS region read from an AWS host name, else None.
    region: str | None

    @classmethod
    def parse(cls, endpoint: str, realtime_endpoint: str | None = None) -> Endpoint:
        """Resolve ``endpoint`` (any form above); ``realtime_endpoint`` overrides the derived
        socket URL (for a proxy that serves it elsewhere)."""
        text = endpoint.strip()
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
            raise ConfigurationError(f"not an Events endpoint: {endpoint!r}")
        secure = scheme in ("https", "wss")
        netloc = parts.netloc
        if "@" in netloc:
            raise ConfigurationError("credentials do not belong in the endpoint URL")
        path = parts.path.rstrip("/")
        if path.endswith("/realtime"):
            path = path[: -len("/realtime")]
        if not path:
            path = "/event"

        aws = _AWS_HOST.match(parts.hostname)
        region = aws.group("region").lower() if aws else None
        http_netloc = netloc
        realtime_netloc = netloc
        if aws:
            http_netloc = netloc.replace(".appsync-realtime-api.", ".appsync-api.")
            realtime_netloc = http_netloc.replace(".appsync-api.", ".appsync-realtime-api.")
        http_url = f"{'https' if secure else 'http'}://{http_netloc}{path}"
        realtime_url = f"{'wss' if secure else 'ws'}://{realtime_netloc}{path}/realtime"
        if realtime_endpoint is not None:
            realtime_url = realtime_endpoint
        return cls(http_url=http_url, realtime_url=realtime_url, host=http_netloc, region=region)
