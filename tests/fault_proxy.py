"""A small fault-injecting HTTP proxy on 127.0.0.1 for JSON-RPC: it forwards POSTs to a real
node and, on a deterministic schedule, answers instead with the failures public providers
produce: 429 with Retry-After, 500, a stall past the client's timeout, a dropped connection,
a body cut short (against its Content-Length, or with a matching one), non-JSON. It can also
refuse `eth_getLogs` ranges wider than a limit, as providers do, and answer methods a node
does not serve (`refuse_methods`) with JSON-RPC's "method not found"."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson

FAULTS = ("429", "500", "stall", "drop", "short_body", "cut_json", "garbage")


class FaultProxy:
    """`faults`: the kinds to inject, in turn, on every `every`-th request, each `times`
    times; then the proxy forwards faithfully."""

    def __init__(
        self,
        upstream: str,
        *,
        faults: Sequence[str] = FAULTS,
        every: int = 3,
        times: int = 1,
        stall_seconds: float = 2.0,
        retry_after: str = "1",
        max_log_range: int | None = None,
        refuse_methods: Sequence[str] = (),
    ) -> None:
        self.upstream = upstream
        self.refuse_methods = frozenset(refuse_methods)
        self.schedule = [f for _ in range(times) for f in faults]
        self.every = every
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        self.max_log_range = max_log_range
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.concurrent = 0
        self.max_concurrent = 0  # requests being answered at once, at most
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers.get("content-length", 0)))
                with proxy._lock:
                    proxy.concurrent += 1
                    proxy.max_concurrent = max(proxy.max_concurrent, proxy.concurrent)
                try:
                    fault = proxy._next_fault()
                    if fault is not None:
                        proxy._inject(self, fault, payload)
                        return
                    refusal = proxy._refuse_logs(payload) or proxy._refuse_methods(payload)
                    body = refusal or proxy._forward(payload)
                    self._send(200, body)
                finally:
                    with proxy._lock:
                        proxy.concurrent -= 1

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        """Every scheduled fault has been injected."""
        return sum(self.injected.values()) >= len(self.schedule)

    # -- internals ------------------------------------------------------------------------

    def _next_fault(self) -> str | None:
        with self._lock:
            self.requests += 1
            n = sum(self.injected.values())
            if n >= len(self.schedule) or self.requests % self.every:
                return None
            fault = self.schedule[n]
            self.injected[fault] += 1
            return fault

    def _forward(self, payload: bytes) -> bytes:
        resp = self._http.post(
            self.upstream, content=payload, headers={"content-type": "application/json"}
        )
        return resp.content

    def _refuse_methods(self, payload: bytes) -> bytes | None:
        """The answer when `payload` calls a refused method: "method not found" for those
        calls, the node's answers (forwarded as one batch) for the others."""
        if not self.refuse_methods:
            return None
        body = orjson.loads(payload)
        calls = body if isinstance(body, list) else [body]
        refused = [c for c in calls if c.get("method") in self.refuse_methods]
        if not refused:
            return None
        with self._lock:
            self.injected["method_not_found"] += len(refused)
        rest = [c for c in calls if c.get("method") not in self.refuse_methods]
        answers = {}
        if rest:
            for a in orjson.loads(self._forward(orjson.dumps(rest))):
                answers[a["id"]] = a
        out = [
            answers.get(c["id"])
            or {
                "jsonrpc": "2.0",
                "id": c["id"],
                "error": {"code": -32601, "message": f"the method {c['method']} does not exist"},
            }
            for c in calls
        ]
        return orjson.dumps(out if isinstance(body, list) else out[0])

    def _refuse_logs(self, payload: bytes) -> bytes | None:
        if self.max_log_range is None:
            return None
        call = orjson.loads(payload)
        if not isinstance(call, dict) or call.get("method") != "eth_getLogs":
            return None
        flt = call["params"][0]
        span = int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1
        if span <= self.max_log_range:
            return None
        with self._lock:
            self.injected["logs_range"] += 1
        err = {"code": -32005, "message": f"query exceeds max block range {self.max_log_range}"}
        return orjson.dumps({"jsonrpc": "2.0", "id": call.get("id"), "error": err})

    def _inject(self, h: BaseHTTPRequestHandler, fault: str, payload: bytes) -> None:
        send = h._send  # type: ignore[attr-defined]
        if fault == "429":
            send(429, b'{"error":"too many requests"}', {"Retry-After": self.retry_after})
        elif fault == "500":
            send(500, b"internal error")
        elif fault == "garbage":
            send(200, b"<html><body>502 Bad Gateway</body></html>")
        elif fault == "stall":
            with self._lock:  # the client gives up on it: not in flight any more
                self.concurrent -= 1
            time.sleep(self.stall_seconds)
            with self._lock:
                self.concurrent += 1
            _reset(h)
        elif fault == "drop":
            _reset(h)
        elif fault in ("short_body", "cut_json"):
            body = self._forward(payload)
            cut = body[: max(1, len(body) // 2)]
            h.send_response(200)
            h.send_header("content-type", "application/json")
            # short_body: the length promised is not delivered; cut_json: a valid HTTP
            # answer whose JSON ends half-way
            h.send_header("content-length", str(len(body) if fault == "short_body" else len(cut)))
            h.end_headers()
            h.wfile.write(cut)
            h.wfile.flush()
            _reset(h)
        else:
            raise ValueError(f"unknown fault {fault!r}")


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the connections we reset on purpose


def _reset(h: BaseHTTPRequestHandler) -> None:
    """Close the connection with a TCP reset, as a crashing load balancer does."""
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
    except OSError:
        pass
