"""A publish's answer: which events were accepted, which were refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .event import Position


@dataclass(frozen=True)
class Published:
    """One accepted event."""

    identifier: str
    index: int
    #: Subscriptions it was delivered to on the server that took it (Herald only).
    delivered: int | None = None
    #: Where it was stored, on a Herald history namespace.
    position: Position | None = None


@dataclass(frozen=True)
class Failed:
    """One refused event (for example ``EventTooLargeException``); the others still went out."""

    index: int
    code: str
    message: str
    identifier: str | None = None


@dataclass(frozen=True)
class PublishResult:
    """The ``successful`` and ``failed`` lists of a publish (HTTP 200 or ``publish_success``)."""

    successful: list[Published] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every event was accepted."""
        return not self.failed

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> PublishResult:
        successful = []
        for item in value.get("successful") or []:
            if isinstance(item, Mapping):
                delivered = item.get("delivered")
                successful.append(
                    Published(
                        identifier=str(item.get("identifier", "")),
                        index=int(item.get("index", 0)),
                        delivered=delivered if isinstance(delivered, int) else None,
                        position=Position.from_wire(item.get("position")),
                    )
                )
        failed = []
        for item in value.get("failed") or []:
            if isinstance(item, Mapping):
                identifier = item.get("identifier")
                failed.append(
                    Failed(
                        index=int(item.get("index", 0)),
                        code=str(item.get("code", item.get("errorCode", ""))),
                        message=str(item.get("message", item.get("errorMessage", ""))),
                        identifier=str(identifier) if identifier is not None else None,
                    )
                )
        return cls(successful=successful, failed=failed)
