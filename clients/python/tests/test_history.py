"""Herald's GET /event/history: pages, paging to the end, every header mode, refusals."""

from __future__ import annotations

import pytest
from conftest import API_KEY, Herald, unique
from test_auth_modes import make_auth

from herald_events import (
    ApiKey,
    BadRequestError,
    EventsClient,
    Position,
    ResumeGapError,
    UnauthorizedError,
)


@pytest.mark.parametrize("mode", ["api_key", "oidc", "lambda", "iam_static", "iam_session"])
async def test_history_pages_in_every_mode(
    mode: str, herald: Herald, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = f"/hist/{unique(mode)}"
    async with EventsClient(herald.endpoint, make_auth(mode, herald, monkeypatch)) as client:
        for first in range(0, 7, 5):
            await client.publish(channel, *range(first, min(first + 5, 7)))
        page = await client.history(channel, limit=3)
        assert [e.data for e in page.events] == [0, 1, 2]
        assert page.recovered and page.top is not None
        assert page.events[0].channel == channel and page.events[0].position is not None
        rest = await client.history(channel, since=page.events[-1].position)
        assert [e.data for e in rest.events] == [3, 4, 5, 6]
        last = rest.events[-1].position
        assert last is not None and (last.epoch, last.offset) == (page.top.epoch, page.top.offset)
        everything = [e.data async for e in client.read_history(channel, page_size=2)]
        assert everything == list(range(7))


async def test_history_refusals(herald: Herald) -> None:
    channel = f"/hist/{unique('gone')}"
    async with EventsClient(herald.endpoint, ApiKey(API_KEY)) as client:
        await client.publish(channel, 1)
        with pytest.raises(ResumeGapError) as gap:
            async for _ in client.read_history(channel, since=Position(epoch="1", offset=1)):
                pass
        assert gap.value.reason == "epoch_changed"
        with pytest.raises(BadRequestError):  # no history kept there
            await client.history(f"/default/{unique('none')}")
    async with EventsClient(herald.endpoint, ApiKey("da2-wrong")) as client:
        with pytest.raises(UnauthorizedError) as refused:
            await client.history(channel)
        assert refused.value.operation == "history" and refused.value.status == 401
