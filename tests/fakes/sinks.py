"""Local receivers of Alertmanager's notifications: a webhook and an SMTP server.

Both listen on every address so containers reach them through the Docker
gateway, and keep what they received for the tests to assert on.
"""

from __future__ import annotations

import email
import email.policy
import json
import socketserver
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server:
    """A socketserver run in a daemon thread."""

    server: socketserver.BaseServer

    def _serve(self, server: socketserver.BaseServer) -> None:
        server.daemon_threads = True  # type: ignore[attr-defined]
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebhookSink(_Server):
    """Collects the JSON bodies POSTed to it (Alertmanager's webhook format)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.payloads: list[dict] = []
        self.arrivals: list[float] = []  # time.monotonic() of each payload, in the same order
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                sink.arrivals.append(time.monotonic())
                sink.payloads.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._serve(ThreadingHTTPServer((host, port), Handler))

    def alerts(self, status: str, before: float | None = None, **labels: str) -> list[dict]:
        """Alerts of ``status`` received so far (or before the time.monotonic() ``before``)
        whose labels include ``labels``."""
        return [
            alert
            for arrived, payload in zip(self.arrivals, self.payloads, strict=False)
            if before is None or arrived < before
            for alert in payload["alerts"]
            if alert["status"] == status and labels.items() <= alert["labels"].items()
        ]

    def first_arrival(self, status: str, **labels: str) -> float | None:
        """When (time.monotonic()) the first payload with such an alert arrived."""
        return next(
            (
                arrived
                for arrived, payload in zip(self.arrivals, self.payloads, strict=False)
                for alert in payload["alerts"]
                if alert["status"] == status and labels.items() <= alert["labels"].items()
            ),
            None,
        )


class SMTPSink(_Server):
    """Just enough SMTP (RFC 5321, no TLS, no auth) to accept mail and keep it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.messages: list[EmailMessage] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(f"{line}\r\n".encode())

            def handle(self) -> None:
                self.reply("220 sink ESMTP")
                while line := self.rfile.readline():
                    verb = line.decode(errors="replace").strip().split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
                    elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        data = []
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            data.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                        sink.messages.append(
                            email.message_from_bytes(b"".join(data), policy=email.policy.default)  # type: ignore[arg-type]
                        )
                        self.reply("250 OK queued")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("502 Command not implemented")

        self._serve(socketserver.ThreadingTCPServer((host, port), Handler))

    def subjects(self) -> list[str]:
        return [str(message["Subject"]) for message in self.messages]

    def text(self, message: EmailMessage) -> str:
        part = message.get_body(preferencelist=("plain", "html"))
        return part.get_content() if part else ""
