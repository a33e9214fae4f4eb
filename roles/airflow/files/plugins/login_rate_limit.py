"""Login attempts per client address, for Airflow's API server.

The FAB auth manager limits its login form (Flask-Limiter), but not its token
API (POST /auth/token), which a script can call as often as it likes. This
middleware counts every POST to either, per client address (X-Forwarded-For,
taken by uvicorn from the proxy), and answers 429 once a client has used up its
attempts in the window. The limit is [fab] auth_rate_limit ("5 per 40 second").
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict, deque
from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

LOGIN_PATHS = ("/auth/token", "/auth/login")
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
MAX_CLIENTS = 10_000  # addresses remembered at once; the oldest is forgotten first


def parse_limit(text: str) -> tuple[int, float]:
    """ "5 per 40 second" -> (5, 40.0); "10 per minute" -> (10, 60.0)."""
    match = re.fullmatch(r"\s*(\d+)\s+per\s+(?:(\d+)\s+)?(second|minute|hour)s?\s*", text)
    if match is None or int(match[1]) < 1:
        raise ValueError(f"login rate limit {text!r}: expected '<attempts> per [<n>] second|minute|hour'")
    return int(match[1]), int(match[2] or 1) * UNIT_SECONDS[match[3]]


class LoginRateLimit:
    """ASGI middleware: at most ``attempts`` login POSTs per client in ``window`` seconds."""

    def __init__(self, app, limit: str, clock=time.monotonic) -> None:
        self.app = app
        self.attempts, self.window = parse_limit(limit)
        self.clock = clock
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].rstrip("/").endswith(LOGIN_PATHS):
            retry_after = self.take((scope.get("client") or ("unknown",))[0])
            if retry_after:
                await self.refuse(send, retry_after)
                return
        await self.app(scope, receive, send)

    def take(self, client: str) -> int:
        """Record one attempt; the seconds to wait when none is left, else 0."""
        now = self.clock()
        times = self.seen.pop(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        self.seen[client] = times
        if len(self.seen) > MAX_CLIENTS:
            self.seen.popitem(last=False)
        if len(times) >= self.attempts:
            return max(1, int(times[0] + self.window - now + 0.999))
        times.append(now)
        return 0

    @staticmethod
    async def refuse(send, retry_after: int) -> None:
        body = json.dumps({"detail": f"Too many login attempts; retry in {retry_after} s"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _limit() -> str:
    from airflow.configuration import conf

    return conf.get("fab", "auth_rate_limit", fallback="5 per 40 second")


class LoginRateLimitPlugin(AirflowPlugin):
    name = "login_rate_limit"
    fastapi_root_middlewares: ClassVar[list[dict]] = [
        {"name": "login_rate_limit", "middleware": LoginRateLimit, "kwargs": {"limit": _limit()}}
    ]
