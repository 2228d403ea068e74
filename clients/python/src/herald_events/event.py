"""What a subscription yields: :class:`Event`, with Herald's :class:`Position` on history
namespaces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Position:
    """Where an event is stored in its channel's history (Herald's extension; see
    docs/extensions.md). ``offset`` counts a channel's events without gaps; ``epoch`` names one
    continuous life of that history. Pass one as ``resume_from`` to continue after it."""

    epoch: str
    offset: int
    #: The concrete channel (also for wildcard subscriptions).
    channel: str | None = None
    #: When the server stored the event, ms since the epoch.
    time_ms: int | None = None

    @classmethod
    def from_wire(cls, value: Any) -> Position | None:
        """A position from a frame, or None when it is absent or malformed."""
        if not isinstance(value, Mapping):
            return None
        epoch, offset = value.get("epoch"), value.get("offset")
        if not isinstance(epoch, str) or not isinstance(offset, int) or isinstance(offset, bool):
            return None
        channel = value.get("channel")
        time_ms = value.get("time_ms")
        return cls(
            epoch=epoch,
            offset=offset,
            channel=channel if isinstance(channel, str) else None,
            time_ms=time_ms if isinstance(time_ms, int) and not isinstance(time_ms, bool) else None,
        )


@dataclass(frozen=True)
class Event:
    """One delivered event."""

    #: The event as the publisher sent it: a JSON document, as text.
    raw: str
    #: The channel: the concrete one when the server says (history namespaces), else the
    #: subscription's own channel when it has no wildcard, else None.
    channel: str | None
    #: The stored position on a history namespace, else None.
    position: Position | None
    #: The channel the subscription was made for (may end in ``/*``).
    subscription: str

    @property
    def data(self) -> Any:
        """The event decoded from JSON."""
        return json.loads(self.raw)
