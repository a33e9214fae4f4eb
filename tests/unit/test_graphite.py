"""Graphite plaintext lines: names, tags, values, timestamps."""

from __future__ import annotations

import socket
import threading

import pytest

from btc_usd.graphite import Sample, format_line, send


def test_line_has_sorted_tags_value_and_whole_seconds() -> None:
    sample = Sample("exchange_rate", {"source": "coinbase", "base": "BTC", "quote": "USD"}, 64090.5, 1764180000)
    assert format_line(sample) == "exchange_rate;base=BTC;quote=USD;source=coinbase 64090.5 1764180000\n"


def test_value_keeps_full_precision_and_exponents() -> None:
    assert format_line(Sample("x", {}, 0.1 + 0.2, 1)) == "x 0.30000000000000004 1\n"
    assert format_line(Sample("x", {}, 1e-07, 1)) == "x 1e-07 1\n"
    assert format_line(Sample("x", {}, 3, 1)) == "x 3.0 1\n"


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (Sample("exchange rate", {}, 1.0, 1), "not Prometheus-compatible"),
        (Sample("exchange.rate", {}, 1.0, 1), "not Prometheus-compatible"),
        (Sample("x", {"source": "coin base"}, 1.0, 1), "Graphite tag values take"),
        (Sample("x", {"source": "a;b=c"}, 1.0, 1), "Graphite tag values take"),
        (Sample("x", {"source": "a~b"}, 1.0, 1), "Graphite tag values take"),
        (Sample("x", {"source": ""}, 1.0, 1), "Graphite tag values take"),
        (Sample("x", {"source": "coinbase\n"}, 1.0, 1), "Graphite tag values take"),  # would end the line
        (Sample("x\n", {}, 1.0, 1), "not Prometheus-compatible"),
        (Sample("x", {"source\n": "v"}, 1.0, 1), "tag name"),
        (Sample("x", {"bad-tag": "v"}, 1.0, 1), "tag name 'bad-tag'"),
        (Sample("x", {"name": "v"}, 1.0, 1), "tag name 'name'"),
        (Sample("x", {}, float("nan"), 1), "finite number"),
        (Sample("x", {}, float("inf"), 1), "finite number"),
        (Sample("x", {}, 1.0, 1.5), "whole unix seconds"),  # type: ignore[arg-type]
        (Sample("x", {}, 1.0, -1), "whole unix seconds"),
    ],
)
def test_lines_graphite_cannot_carry_are_refused(sample: Sample, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        format_line(sample)


def test_send_delivers_every_line_over_tcp() -> None:
    received = bytearray()
    with socket.create_server(("127.0.0.1", 0)) as server:

        def accept() -> None:
            conn, _ = server.accept()
            with conn:
                while chunk := conn.recv(65536):
                    received.extend(chunk)

        thread = threading.Thread(target=accept)
        thread.start()
        samples = [Sample("exchange_rate", {"base": "BTC"}, float(i), 1764180000 + i) for i in range(1000)]
        assert send(samples, "127.0.0.1", server.getsockname()[1], timeout=5) == 1000
        thread.join(5)
    lines = received.decode().splitlines()
    assert len(lines) == 1000
    assert lines[999] == "exchange_rate;base=BTC 999.0 1764180999"


def test_a_bad_sample_sends_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, pytest.raises(ValueError, match="bad name"):
        send([Sample("ok", {}, 1.0, 1), Sample("bad name", {}, 1.0, 1)], "127.0.0.1", server.getsockname()[1], 5)
