"""Helpers for the trigger engine's integration tests: a throwaway PostgreSQL database with the
schema, HTTP receivers that can be told to fail, a real MCP server from the `mcp` SDK, a
minimal SMTP server, and event factories. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from psycopg import sql

from chainlake.events import db

SERVER = "postgresql://postgres@127.0.0.1:5432/"
CHAIN = 31337
WALLET = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"


_TEMPLATE: list[str] = []


def _template() -> str:
    """A migrated database to copy from (CREATE DATABASE ... TEMPLATE is much faster than
    running the migrations for every test); dropped when the test process exits."""
    if not _TEMPLATE:
        name = f"chainlake_test_tmpl_{uuid.uuid4().hex[:10]}"
        db.migrate(SERVER + name)
        _TEMPLATE.append(name)
        atexit.register(db.drop_database, SERVER + name)
    return _TEMPLATE[0]


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A fresh database at the latest schema; dropped afterwards."""
    name = f"chainlake_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER + "postgres", autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_template())
            )
        )
    try:
        yield SERVER + name
    finally:
        db.drop_database(SERVER + name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- HTTP receiver -------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class Receiver:
    """Records every request; `responses` (status, headers, body) are served in order, then
    `default`."""

    responses: list[tuple[int, dict[str, str], Any]] = field(default_factory=list)
    default: tuple[int, dict[str, str], Any] = (200, {}, {"ok": True})
    requests: list[Request] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_response(self) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            return self.responses.pop(0) if self.responses else self.default

    def by_key(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.requests:
            k = r.headers.get("idempotency-key", "")
            counts[k] = counts.get(k, 0) + 1
        return counts


@contextlib.contextmanager
def receiver(**kwargs: Any) -> Iterator[Receiver]:
    rec = Receiver(**kwargs)

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            status, headers, payload = rec.next_response()
            with rec.lock:
                rec.requests.append(
                    Request(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                        time.time(),
                    )
                )
            # bytes go out as they are, in plain text (Slack answers `ok`); the rest as JSON
            raw_reply = isinstance(payload, bytes)
            if raw_reply:
                data = payload
            else:
                data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-type", "text/plain" if raw_reply else "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


# ---- MCP server ----------------------------------------------------------------------------


@dataclass
class McpServer:
    url: str
    calls: list[dict[str, Any]]
    auth_headers: list[str | None]


@contextlib.contextmanager
def mcp_server() -> Iterator[McpServer]:
    """A real MCP server (the `mcp` SDK's MCPServer over Streamable HTTP, served by uvicorn)."""
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    calls: list[dict[str, Any]] = []
    auth: list[str | None] = []
    server = MCPServer("agent-under-test", log_level="WARNING")

    @server.tool()
    def receive_feedback(agent_id: int, score: int, client: str = "", file_uri: str = "") -> dict:
        """Record feedback an agent was given."""
        calls.append({"agent_id": agent_id, "score": score, "client": client, "file_uri": file_uri})
        return {"stored": True, "count": len(calls)}

    app = server.streamable_http_app(json_response=True)

    async def asgi(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            auth.append((headers.get(b"authorization") or b"").decode() or None)
        await app(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    t = threading.Thread(target=uv.run, daemon=True)
    t.start()
    deadline = time.time() + 20
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    assert uv.started, "MCP server did not start"
    try:
        yield McpServer(f"http://127.0.0.1:{port}/mcp", calls, auth)
    finally:
        uv.should_exit = True
        t.join(timeout=10)


# ---- SMTP server ---------------------------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[dict[str, Any]]


@contextlib.contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """Just enough SMTP (EHLO, MAIL, RCPT, DATA, QUIT) to receive a message."""
    messages: list[dict[str, Any]] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            def say(line: str) -> None:
                self.wfile.write((line + "\r\n").encode())

            say("220 localhost test SMTP")
            mail: dict[str, Any] = {"rcpt": []}
            while True:
                line = self.rfile.readline().decode(errors="replace").rstrip("\r\n")
                if not line:
                    return
                cmd = line.split(" ", 1)[0].upper()
                if cmd in ("EHLO", "HELO"):
                    say("250 localhost")
                elif cmd == "MAIL":
                    mail["from"] = line.split(":", 1)[1].strip()
                    say("250 OK")
                elif cmd == "RCPT":
                    mail["rcpt"].append(line.split(":", 1)[1].strip())
                    say("250 OK")
                elif cmd == "DATA":
                    say("354 end with .")
                    data = []
                    while True:
                        dl = self.rfile.readline().decode(errors="replace")
                        if dl.rstrip("\r\n") == ".":
                            break
                        data.append(dl)
                    mail["data"] = "".join(data)
                    messages.append(mail)
                    mail = {"rcpt": []}
                    say("250 queued")
                elif cmd == "QUIT":
                    say("221 bye")
                    return
                else:
                    say("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield Mailbox(server.server_address[1], messages)
    finally:
        server.shutdown()
        server.server_close()


# ---- events --------------------------------------------------------------------------------


def feedback(
    block: int, *, agent_id: int = 1, score: int = 20, log_index: int = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "chain_id": CHAIN, "block_number": block, "block_hash": f"0x{block:064x}",
        "transaction_hash": f"0x{block + 10**6:064x}", "log_index": log_index,
        "registry": "reputation", "event_type": "NewFeedback", "agent_id": agent_id,
        "timestamp": 1_790_000_000 + block * 2, "score": score,
        "client_address": "0x" + "12" * 20, **extra,
    }  # fmt: skip


def transfer(block: int, amount: int, *, to: str = WALLET, log_index: int = 0) -> dict[str, Any]:
    return {
        "chain_id": CHAIN, "block_number": block, "block_hash": f"0x{block:064x}",
        "transaction_hash": f"0x{block + 2 * 10**6:064x}", "log_index": log_index,
        "registry": "erc20", "event_type": "Transfer", "timestamp": 1_790_000_000 + block * 2,
        "token_address": "0x" + "aa" * 20, "from_address": "0x" + "bb" * 20,
        "to_address": to, "amount": amount,
    }  # fmt: skip


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()
