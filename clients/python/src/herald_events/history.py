"""A page of Herald's ``GET /event/history`` (docs/extensions.md): a channel's stored events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .event import Event, Position


@dataclass(frozen=True)
class HistoryPage:
    """Stored events of one channel, oldest first."""

    channel: str
    events: list[Event] = field(default_factory=list)
    #: The channel's newest position: page on (``since=`` the last event's position) until the
    #: last event reaches it.
    top: Position | None = None
    #: False when ``since`` could not be served; ``reason`` says why (``expired``,
    #: ``epoch_changed``, …).
    recovered: bool = True
    reason: str | None = None

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> HistoryPage:
        channel = str(value.get("channel", ""))
        events = []
        for item in value.get("events") or []:
            if not isinstance(item, Mapping) or not isinstance(item.get("event"), str):
                continue
            wire = item.get("position")
            position = Position.from_wire(
                {**wire, "channel": channel, "time_ms": item.get("time_ms")}
                if isinstance(wire, Mapping)
                else None
            )
            events.append(
                Event(raw=item["event"], channel=channel, position=position, subscription=channel)
            )
        reason = value.get("reason")
        return cls(
            channel=channel,
            events=events,
            top=Position.from_wire(value.get("top")),
            recovered=value.get("recovered") is not False,
            reason=str(reason) if reason is not None else None,
        )
