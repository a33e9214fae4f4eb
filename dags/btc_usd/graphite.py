"""Graphite plaintext lines with tags: ``name;tag=value VALUE UNIX_SECONDS``."""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Prometheus-compatible metric and label names, so the series query the same way.
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_TAG_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
# Graphite has no escaping: spaces, ';', '~' and '=' would break the line, so refuse them.
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.:/+-]+\Z")


@dataclass(frozen=True)
class Sample:
    """One point of one series."""

    name: str
    tags: Mapping[str, str]
    value: float
    timestamp: int
    key: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", tuple(sorted({**self.tags, "__name__": self.name}.items())))


def format_line(sample: Sample) -> str:
    """Render one sample; raise ValueError for anything Graphite cannot carry."""
    if not _NAME.match(sample.name):
        raise ValueError(f"metric name {sample.name!r} is not Prometheus-compatible")
    parts = [sample.name]
    for tag, value in sorted(sample.tags.items()):
        if not _TAG_NAME.match(tag) or tag == "name":
            raise ValueError(f"tag name {tag!r} is not allowed")
        if not _TAG_VALUE.match(value):
            raise ValueError(f"tag {tag}={value!r}: Graphite tag values take letters, digits and _.:/+- only")
        parts.append(f"{tag}={value}")
    value = float(sample.value)
    if not math.isfinite(value):
        raise ValueError(f"value of {sample.name} is {value}, Graphite needs a finite number")
    if isinstance(sample.timestamp, bool) or not isinstance(sample.timestamp, int) or sample.timestamp < 0:
        raise ValueError(f"timestamp {sample.timestamp!r} must be whole unix seconds")
    return f"{';'.join(parts)} {value!r} {sample.timestamp}\n"


def send(samples: Iterable[Sample], host: str, port: int, timeout: float) -> int:
    """Send samples over one TCP connection; return the number of lines sent."""
    lines = [format_line(sample) for sample in samples]
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall("".join(lines).encode("ascii"))
        conn.shutdown(socket.SHUT_WR)
    return len(lines)
