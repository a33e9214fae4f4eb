"""HTTP GET of a JSON document from an untrusted source, every failure a one-line reason.

A reply is only accepted as a direct 200 whose body arrives in full, within one
deadline and a size cap: redirects are refused (never followed), a body trickled
byte by byte runs out of time, and any error while reading or decoding becomes
FetchError so the caller can move on to the next source.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from typing import Any

import requests

USER_AGENT = "btc-usd-stack/1.0"
MAX_BODY_BYTES = 2 * 1024 * 1024
_CHUNK_BYTES = 64 * 1024


class FetchError(Exception):
    """The request failed; the message is safe to log (it never holds the URL)."""


class Unavailable(FetchError):
    """The source did not answer in time, refused the connection, or asked us to back off
    (HTTP 429, 5xx): further requests to it now would fail the same way."""


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
    """GET ``url`` and decode its JSON body within ``timeout`` seconds in total.

    The request runs in a daemon thread so that the deadline also bounds what
    socket timeouts cannot (headers or a body sent one byte at a time); a request
    left behind stops at its next read and never delays the caller.
    """
    outcome: dict[str, Any] = {}
    expired = threading.Event()
    worker = threading.Thread(target=_fetch, args=(url, params, timeout, expired, outcome), daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        expired.set()
        raise Unavailable(f"no complete reply within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    body: bytes = outcome["body"]
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        preview = body[:60].decode("utf-8", "replace")
        raise FetchError(f"reply is not JSON: {preview!r}") from None


def _fetch(url: str, params: dict[str, str] | None, timeout: float, expired: threading.Event, outcome: dict) -> None:
    try:
        outcome["body"] = _read_body(url, params, timeout, expired)
    except FetchError as exc:
        outcome["error"] = exc
    except requests.Timeout:  # the socket's share of the same deadline
        outcome["error"] = Unavailable(f"no complete reply within {timeout:g} s")
    except requests.ConnectionError as exc:
        outcome["error"] = Unavailable(f"cannot connect: {_root_cause(exc)}")
    except Exception as exc:  # whatever a hostile reply triggers is this source's failure
        outcome["error"] = FetchError(f"broken reply: {type(exc).__name__}")


def _read_body(url: str, params: dict[str, str] | None, timeout: float, expired: threading.Event) -> bytes:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    with (
        requests.Session() as session,
        session.get(url, params=params, headers=headers, timeout=timeout, allow_redirects=False, stream=True) as reply,
    ):
        status = reply.status_code
        if 300 <= status < 400:
            raise FetchError(f"HTTP {status} redirect refused: a source must answer directly")
        if status == 429:
            raise Unavailable("rate limited (HTTP 429)")
        if status >= 500:
            raise Unavailable(f"HTTP {status} {' '.join(str(reply.reason or '').split())[:60]}".rstrip())
        if status != 200:
            raise FetchError(f"HTTP {status} {' '.join(str(reply.reason or '').split())[:60]}".rstrip())
        declared = reply.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise FetchError(f"reply is larger than {MAX_BODY_BYTES} bytes")
        body = bytearray()
        while chunk := reply.raw.read1(_CHUNK_BYTES, decode_content=True):
            if expired.is_set():
                raise FetchError("deadline passed while reading")
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise FetchError(f"reply is larger than {MAX_BODY_BYTES} bytes")
        return bytes(body)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a connection error, without the URL."""
    while exc.__context__ is not None or exc.__cause__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc)
    return " ".join(text.split(": ")[-1].split())[:80] or type(exc).__name__
