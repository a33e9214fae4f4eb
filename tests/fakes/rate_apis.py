"""A local stand-in for the rate APIs, speaking their real wire formats.

One FakeRateAPI serves every source's paths (Alpha Vantage, Coinbase, Kraken,
Bitstamp ticker and OHLC) on 127.0.0.1; tests start one per source and switch
its ``mode`` to reproduce each failure the real services show.
Shapes: shared/reference/sources.md.
"""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PRICES = {("BTC", "USD"): 64090.5, ("ETH", "USD"): 3150.25, ("BTC", "EUR"): 59011.75}
KRAKEN = {"BTC": "XBT"}
# A made-up universe for load tests: bases S0000-S9999, each quoted in four currencies.
SYNTHETIC_QUOTES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0}


def price_of(base: str, quote: str) -> float | None:
    """The fakes' price of a pair (PRICES, or the synthetic universe); None if unknown."""
    if (base, quote) in PRICES:
        return PRICES[(base, quote)]
    if re.fullmatch(r"S[0-9]{4}", base) and quote in SYNTHETIC_QUOTES:
        return round((10 + int(base[1:])) * SYNTHETIC_QUOTES[quote], 2)
    return None


def synthetic_pairs(count: int) -> list[str]:
    """``count`` pairs of the synthetic universe, four quotes per base."""
    quotes = list(SYNTHETIC_QUOTES)
    return [f"S{i // len(quotes):04d}/{quotes[i % len(quotes)]}" for i in range(count)]


AV_QUOTA = (
    "We have detected your API key as {key} and our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove "
    "all daily rate limits."
)
AV_BAD_KEY = (
    "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
)

# Modes every fake understands; the last six are what a hostile or broken source sends.
MODES = (
    "ok", "throttled", "error", "http_500", "http_429", "not_json", "slow", "stale", "malformed",
    "redirect", "trickle", "nested", "huge", "nan", "inf",
)  # fmt: skip
HUGE_BYTES = 3 * 1024 * 1024


def candle_open(ts: int) -> float:
    """A deterministic price for the OHLC candle starting at ``ts``."""
    return 60000.0 + (ts // 300) % 997 + 0.25


class FakeRateAPI:
    """One fake source, on a free port of 127.0.0.1 unless told otherwise."""

    def __init__(
        self, name: str, mode: str = "ok", delay: float = 15.0, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.name = name
        self.mode = mode
        self.delay = delay
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.redirect_to = "http://127.0.0.1:9/"  # where mode "redirect" points
        self.scale = 1.0  # every price is multiplied by it (an implausible jump, or a real crash)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                fake.requests.append((parts.path, query, dict(self.headers)))
                status, body = fake.reply(parts.path, query, dict(self.headers))
                if fake.mode == "slow":
                    time.sleep(fake.delay)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    if fake.mode == "redirect":
                        self.send_header("Location", fake.redirect_to)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if fake.mode == "trickle":  # a valid reply, one byte every 0.2 s
                        for byte in payload[:200]:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.2)
                        return
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def port(self) -> int:
        return self.server.server_port

    def start(self) -> FakeRateAPI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer_after(self, seconds: float) -> None:
        """Answer every request ``seconds`` late (mode "slow"); 0: at once (mode "ok")."""
        self.mode, self.delay = ("slow", seconds) if seconds else ("ok", 0.0)

    def connection(self, password: str | None = None) -> str:
        """The Airflow connection (JSON form) that points at this fake."""
        conn = {"conn_type": "http", "host": "127.0.0.1", "port": self.port, "schema": "http"}
        if password:
            conn["password"] = password
        return json.dumps(conn)

    # -- replies -------------------------------------------------------------

    def reply(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, object]:
        mode = self.mode
        if mode == "http_500":
            return 500, b"<html>Internal Server Error</html>"
        if mode == "http_429":
            return 429, {"message": "Too Many Requests"}
        if mode == "not_json":
            return 200, b"<html>maintenance</html>"
        if mode == "redirect":
            return 302, b""
        if mode == "nested":
            return 200, b"[" * 100_000 + b"]" * 100_000
        if mode == "huge":
            return 200, b'{"pad": "' + b"x" * HUGE_BYTES + b'"}'
        now = datetime.now(UTC)
        if mode == "stale":
            now = now.replace(year=now.year - 1)
        if path == "/query":
            return self._alphavantage(query, now)
        if path.startswith("/v2/prices/"):
            return self._coinbase(path, headers)
        if path == "/v2/exchange-rates":
            return self._coinbase_rates(query, headers)
        if path == "/0/public/Ticker":
            return self._kraken(query)
        if path.startswith("/api/v2/ticker/"):
            return self._bitstamp_ticker(path, now)
        if path.startswith("/api/v2/ohlc/"):
            return self._bitstamp_ohlc(path, query)
        return 404, {"error": f"no route {path}"}

    def poisoned(self, price: str) -> str | float:
        """The price field as sent: modes "nan" and "inf" send a bare JSON NaN or Infinity."""
        return {"nan": float("nan"), "inf": float("inf")}.get(self.mode, price)

    def _alphavantage(self, query: dict[str, str], now: datetime) -> tuple[int, object]:
        key = query.get("apikey", "")
        if self.mode == "throttled":
            return 200, {"Information": AV_QUOTA.format(key=key)}
        if self.mode == "error" or not key:
            return 200, {"Error Message": AV_BAD_KEY}
        base, quote = query.get("from_currency", ""), query.get("to_currency", "")
        if query.get("function") != "CURRENCY_EXCHANGE_RATE" or price_of(base, quote) is None:
            return 200, {"Error Message": "Invalid API call. Please retry or visit the documentation."}
        rate = price_of(base, quote) * self.scale
        body = {
            "1. From_Currency Code": base,
            "2. From_Currency Name": "Bitcoin",
            "3. To_Currency Code": quote,
            "4. To_Currency Name": "United States Dollar",
            "5. Exchange Rate": self.poisoned(f"{rate:.8f}"),
            "6. Last Refreshed": now.strftime("%Y-%m-%d %H:%M:%S"),
            "7. Time Zone": "UTC",
            "8. Bid Price": f"{rate - 2.5:.8f}",
            "9. Ask Price": f"{rate + 0.5:.8f}",
        }
        if self.mode == "malformed":
            body["5. Exchange Rate"] = "NaN"
        return 200, {"Realtime Currency Exchange Rate": body}

    def _coinbase(self, path: str, headers: dict[str, str]) -> tuple[int, object]:
        if not headers.get("User-Agent"):
            return 400, {"errors": [{"id": "invalid_request", "message": "User-Agent required"}]}
        base, _, quote = path.split("/")[3].partition("-")
        if price_of(base, quote) is None:
            return 404, {"errors": [{"id": "not_found", "message": "Invalid currency"}]}
        return 200, {"data": {"amount": self._coinbase_amount(base, quote), "base": base, "currency": quote}}

    def _coinbase_amount(self, base: str, quote: str) -> str | float:
        return self.poisoned("-1" if self.mode == "malformed" else f"{price_of(base, quote) * self.scale + 1:.2f}")

    def _coinbase_rates(self, query: dict[str, str], headers: dict[str, str]) -> tuple[int, object]:
        """``/v2/exchange-rates?currency=BASE``: every quote of one base (amounts as the spot price's)."""
        if not headers.get("User-Agent"):
            return 400, {"errors": [{"id": "invalid_request", "message": "User-Agent required"}]}
        base = query.get("currency", "")
        quotes = [q for q in ("USD", "EUR", "GBP", "JPY") if price_of(base, q) is not None]
        if not quotes:
            return 400, {"errors": [{"id": "invalid_request", "message": "Invalid currency"}]}
        return 200, {"data": {"currency": base, "rates": {q: self._coinbase_amount(base, q) for q in quotes}}}

    def _kraken(self, query: dict[str, str]) -> tuple[int, object]:
        """Ticker for a comma-separated list of pairs; one unknown pair fails the whole request, as on Kraken."""
        if self.mode in ("throttled", "error"):
            return 200, {"error": ["EAPI:Rate limit exceeded"]}
        codes = {v: k for k, v in KRAKEN.items()}
        result = {}
        for wanted in query.get("pair", "").split(","):
            base, quote = codes.get(wanted[:-3], wanted[:-3]), wanted[-3:]
            if price_of(base, quote) is None:
                return 200, {"error": ["EQuery:Unknown asset pair"]}
            price = price_of(base, quote) * self.scale
            code = KRAKEN.get(base, base)
            name = f"X{code}Z{quote}" if (base, quote) in PRICES else code + quote  # legacy and newer names
            ask, bid = price + 2.1, price + 2.0
            if self.mode == "malformed":
                ask, bid = bid, ask
            result[name] = {
                "a": [f"{ask}", "1", "1.000"],
                "b": [f"{bid}", "2", "2.000"],
                "c": [self.poisoned(f"{price + 2}"), "0.001"],
            }
        return 200, {"error": [], "result": result}

    def _bitstamp_ticker(self, path: str, now: datetime) -> tuple[int, object]:
        symbol = path.split("/")[4].upper()
        price = price_of(symbol[:-3], symbol[-3:])
        if price is None:
            return 404, {"errors": [{"message": "Not found"}]}
        price *= self.scale
        return 200, {
            "last": self.poisoned(f"{price + 3:.2f}"),
            "high": f"{price + 100:.2f}",
            "low": f"{price - 100:.2f}",
            "vwap": f"{price:.2f}",
            "volume": "1234.5",
            "bid": f"{price + 2:.2f}",
            "ask": "oops" if self.mode == "malformed" else f"{price + 4:.2f}",
            "timestamp": str(int(now.timestamp())),
            "open": f"{price - 10:.2f}",
        }

    def _bitstamp_ohlc(self, path: str, query: dict[str, str]) -> tuple[int, object]:
        step, limit = int(query.get("step", "60")), int(query.get("limit", "1000"))
        if step != 300 or not 1 <= limit <= 1000:
            return 400, {"errors": [{"message": "Invalid step or limit"}]}
        end = int(query["end"]) // step * step
        pair = path.split("/")[4]
        rows = []
        for ts in range(end - (limit - 1) * step, end + step, step):
            price = candle_open(ts)
            row = {"timestamp": str(ts), "open": f"{price:.2f}", "high": f"{price + 5:.2f}"}
            row |= {"low": f"{price - 5:.2f}", "close": f"{price + 1:.2f}", "volume": "3.5"}
            rows.append(row)
        return 200, {"data": {"pair": f"{pair[:3].upper()}/{pair[3:].upper()}", "ohlc": rows}}
