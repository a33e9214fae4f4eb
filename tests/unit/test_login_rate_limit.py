"""The API server's login rate limit (roles/airflow/files/plugins), driven as ASGI."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parents[2] / "roles/airflow/files/plugins/login_rate_limit.py"
spec = importlib.util.spec_from_file_location("login_rate_limit", PLUGIN)
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def downstream(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def call(app, path: str, method: str = "POST", client: str = "203.0.113.7") -> tuple[int, dict]:
    sent = []

    async def send(message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "client": (client, 50000)}
    asyncio.run(app(scope, None, send))
    return sent[0]["status"], dict(sent[0]["headers"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(clock):
    return plugin.LoginRateLimit(downstream, "5 per 40 second", clock=clock)


def test_the_sixth_token_request_in_the_window_is_refused(app) -> None:
    assert [call(app, "/airflow/auth/token")[0] for _ in range(5)] == [201] * 5
    status, headers = call(app, "/airflow/auth/token")
    assert status == 429
    assert headers[b"retry-after"] == b"40"


def test_the_form_login_counts_too(app) -> None:
    for _ in range(5):
        call(app, "/airflow/auth/login/")
    assert call(app, "/airflow/auth/token")[0] == 429


def test_each_client_has_its_own_attempts(app) -> None:
    for _ in range(6):
        call(app, "/auth/token", client="198.51.100.1")
    assert call(app, "/auth/token", client="198.51.100.2")[0] == 201


def test_other_requests_are_not_counted(app) -> None:
    for _ in range(20):
        assert call(app, "/airflow/api/v2/dags", method="GET")[0] == 201
        assert call(app, "/airflow/auth/token", method="GET")[0] == 201
        assert call(app, "/airflow/api/v2/dags/x/dagRuns")[0] == 201
    assert call(app, "/airflow/auth/token")[0] == 201


def test_attempts_come_back_when_the_window_has_passed(app, clock) -> None:
    for _ in range(5):
        call(app, "/auth/token")
    clock.now += 39
    status, headers = call(app, "/auth/token")
    assert (status, headers[b"retry-after"]) == (429, b"1")
    clock.now += 1
    assert call(app, "/auth/token")[0] == 201


def test_a_refused_attempt_does_not_extend_the_wait(app, clock) -> None:
    for _ in range(5):
        call(app, "/auth/token")
    for _ in range(50):
        assert call(app, "/auth/token")[0] == 429
    clock.now += 40
    assert call(app, "/auth/token")[0] == 201


def test_memory_is_bounded_by_the_number_of_clients(app, monkeypatch) -> None:
    monkeypatch.setattr(plugin, "MAX_CLIENTS", 100)
    for n in range(150):
        call(app, "/auth/token", client=f"10.0.{n >> 8}.{n & 255}")
    assert len(app.seen) == 100
    assert "10.0.0.149" in app.seen
    assert "10.0.0.0" not in app.seen  # the oldest went first


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5 per 40 second", (5, 40)), ("10 per minute", (10, 60)), ("3 per 2 hours", (3, 7200))],
)
def test_limits_are_read_in_flask_limiter_words(text, expected) -> None:
    assert plugin.parse_limit(text) == expected


@pytest.mark.parametrize("text", ["", "5", "0 per minute", "five per minute", "5 per fortnight", "5/minute"])
def test_an_unreadable_limit_names_the_expected_form(text) -> None:
    with pytest.raises(ValueError, match="expected '<attempts> per"):
        plugin.parse_limit(text)


def test_the_plugin_registers_the_middleware_with_the_configured_limit() -> None:
    (entry,) = plugin.LoginRateLimitPlugin.fastapi_root_middlewares
    assert entry["middleware"] is plugin.LoginRateLimit
    assert plugin.parse_limit(entry["kwargs"]["limit"])
