"""herald_events: an asyncio client for AWS AppSync Events and Herald.

::

    from herald_events import ApiKey, EventsClient

    async with EventsClient("http://127.0.0.1:8080/event", ApiKey("da2-…")) as client:
        async with client.subscribe("/default/*") as sub:
            await client.publish("/default/greetings", {"hello": "world"})
            async for event in sub:
                print(event.channel, event.data)
"""

from .auth import ApiKey, Auth, CognitoUserPools, Jwt, LambdaAuthorizer, OpenIdConnect, SigV4
from .backoff import Backoff
from .client import EventsClient
from .endpoint import Endpoint
from .errors import (
    BadRequestError,
    ConfigurationError,
    ConflictError,
    ConnectionFailedError,
    ConnectionLostError,
    HeraldError,
    LimitExceededError,
    OperationTimeoutError,
    PayloadTooLargeError,
    ResumeGapError,
    ServerError,
    UnauthorizedError,
)
from .event import Event, Position
from .history import HistoryPage
from .publish import Failed, Published, PublishResult
from .subscription import Subscription

__version__ = "0.1.0"

__all__ = [
    "ApiKey",
    "Auth",
    "Backoff",
    "BadRequestError",
    "CognitoUserPools",
    "ConfigurationError",
    "ConflictError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "Endpoint",
    "Event",
    "EventsClient",
    "Failed",
    "HeraldError",
    "HistoryPage",
    "Jwt",
    "LambdaAuthorizer",
    "LimitExceededError",
    "OpenIdConnect",
    "OperationTimeoutError",
    "PayloadTooLargeError",
    "Position",
    "PublishResult",
    "Published",
    "ResumeGapError",
    "ServerError",
    "SigV4",
    "Subscription",
    "UnauthorizedError",
]
