"""HTTP GET of a JSON document, with every failure turned into a one-line reason."""

from __future__ import annotations

import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

USER_AGENT = "btc-usd-stack/1.0"
MAX_BODY_BYTES = 2 * 1024 * 1024


class FetchError(Exception):
    """The request failed; the message is safe to log (it never holds the URL)."""


def base_url(host: str | None, schema: str | None, port: int | None, default: str) -> str:
    """Build a base URL from an Airflow Connection's host, schema and port.

    ``host`` may already carry a scheme (``https://api.example.com``); ``schema``
    holds the protocol, as Airflow's HTTP connections do. Anything unset falls
    back to ``default`` (its scheme too).
    """
    if not host:
        return default.rstrip("/")
    if "://" in host:
        url = host
    else:
        scheme = schema if schema in ("http", "https") else urllib.parse.urlsplit(default).scheme
        url = f"{scheme}://{host}"
    if port:
        parts = urllib.parse.urlsplit(url)
        url = parts._replace(netloc=f"{parts.hostname}:{port}").geturl()
    return url.rstrip("/")


def get_json(url: str, params: dict[str, str] | None = None, *, timeout: float) -> Any:
    """GET ``url`` and decode its JSON body; raise FetchError on any failure."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - base URLs come from Connections
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - see above
            if response.status != 200:
                raise FetchError(f"HTTP {response.status}, expected 200")
            body = response.read(MAX_BODY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 429:
            raise FetchError("rate limited (HTTP 429)") from None
        raise FetchError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise FetchError(f"connect timed out after {timeout:g} s") from None
        raise FetchError(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise FetchError(f"read timed out after {timeout:g} s") from None
    except OSError as exc:
        raise FetchError(f"connection failed: {exc.strerror or exc}") from None
    except http.client.HTTPException as exc:
        raise FetchError(f"broken HTTP reply: {type(exc).__name__}") from None
    if len(body) > MAX_BODY_BYTES:
        raise FetchError(f"reply is larger than {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(body)
    except ValueError:
        preview = body[:60].decode("utf-8", "replace")
        raise FetchError(f"reply is not JSON: {preview!r}") from None
