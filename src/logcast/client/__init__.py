"""The Python client of the logcast HTTP API; every terminal tool is built on it.

```python
from logcast.client import Client

with Client("http://127.0.0.1:8080") as logcast:
    for event in logcast.stream("web"):
        if event.is_line:
            print(event.log.message)
```

`AsyncClient` is the same over asyncio. Both raise `logcast.errors.ClientError`.
"""

from logcast.client._async import AsyncClient
from logcast.client._common import LogPage, ProcessInfo
from logcast.client._sync import Client
from logcast.client.events import ClientEventType, ConnectionState, Event
from logcast.client.settings import Settings, resolve
from logcast.schemas import Host

__all__ = [
    "AsyncClient",
    "Client",
    "ClientEventType",
    "ConnectionState",
    "Event",
    "Host",
    "LogPage",
    "ProcessInfo",
    "Settings",
    "resolve",
]
