"""Subscribe to everything in the `default` namespace, publish over HTTP and over the socket,
print what arrives.

    python examples/quickstart.py

The endpoint and key default to the README's quick start (`herald serve --api-key
da2-mylocalkey0000000000` on port 8080); EVENTS_ENDPOINT and EVENTS_API_KEY override them.
"""

import asyncio
import os

from herald_events import ApiKey, EventsClient

ENDPOINT = os.environ.get("EVENTS_ENDPOINT", "http://localhost:8080/event")
API_KEY = os.environ.get("EVENTS_API_KEY", "da2-mylocalkey0000000000")


async def main() -> None:
    async with EventsClient(ENDPOINT, ApiKey(API_KEY)) as client:
        # Subscribed once the `async with` is entered; left (unsubscribed) at its end.
        async with client.subscribe("/default/*") as everything:
            await client.publish("/default/greetings", {"hello": "world"})  # over HTTP
            await client.publish("/default/greetings", {"over": "socket"}, via="socket")
            received = 0
            async for event in everything:
                print("received", event.data)
                received += 1
                if received == 2:
                    break


if __name__ == "__main__":
    asyncio.run(main())
