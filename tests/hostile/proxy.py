"""A JSON-RPC proxy on 127.0.0.1 that answers like a hostile or broken node: it forwards every
request to a real node and then rewrites the answers of chosen calls (a result replaced or
patched, a giant body), or makes the node look behind (its head capped, blocks past the cap
missing). Any path and query string are accepted, so a URL with credentials and an API key
in its path can point at it.

A rule (a dict, as in `tests/hostile/nodes/*.json` under "answer"):

- `method`: the JSON-RPC method whose answers are rewritten.
- `full` (optional): for `eth_getBlockByNumber`, only calls with this full-transactions flag.
- then one of: `result` (the result replaced by this JSON value), `patch` (merged into the
  result object, or into each object of a list result), `patch_transactions` (merged into
  each transaction of a block), `body_bytes` (the whole HTTP answer replaced by a JSON body
  of about that many bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson

_MISSING = object()


class HostileProxy:
    """`head`: the node's head as the proxy tells it (blocks past it do not exist);
    `rules`: answers to rewrite (see the module docstring). `methods` records every method
    asked, in order."""

    def __init__(
        self, upstream: str, *, head: int | None = None, rules: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        self.upstream = upstream
        self.head = head
        self.rules = list(rules)
        self.methods: list[str] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = self.rfile.read(int(self.headers.get("content-length", 0)))
                body = proxy._answer(payload)
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostileProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def __enter__(self) -> HostileProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------------

    def _answer(self, payload: bytes) -> bytes:
        request = orjson.loads(payload)
        calls = request if isinstance(request, list) else [request]
        with self._lock:
            self.methods.extend(c.get("method", "") for c in calls)
        for rule in self.rules:
            if "body_bytes" in rule and any(self._matches(rule, c) for c in calls):
                pad = "0" * int(rule["body_bytes"])
                return orjson.dumps({"jsonrpc": "2.0", "id": calls[0].get("id"), "result": pad})
        answers: dict[Any, Any] = {}
        forward = []
        for c in calls:
            lagged = self._lagged(c)
            if lagged is not _MISSING:
                answers[c.get("id")] = lagged
            else:
                forward.append(self._capped(c))
        if forward:
            resp = self._http.post(
                self.upstream,
                content=orjson.dumps(forward if isinstance(request, list) else forward[0]),
                headers={"content-type": "application/json"},
            )
            got = orjson.loads(resp.content)
            for item in got if isinstance(got, list) else [got]:
                answers[item.get("id")] = item.get("result")
        out = []
        for c in calls:
            result = answers.get(c.get("id"))
            for rule in self.rules:
                if self._matches(rule, c):
                    result = _rewrite(rule, result)
            out.append({"jsonrpc": "2.0", "id": c.get("id"), "result": result})
        return orjson.dumps(out if isinstance(request, list) else out[0])

    @staticmethod
    def _matches(rule: Mapping[str, Any], call: Mapping[str, Any]) -> bool:
        if call.get("method") != rule["method"]:
            return False
        if "full" in rule:
            params = call.get("params") or []
            return len(params) > 1 and params[1] is rule["full"]
        return True

    def _lagged(self, call: Mapping[str, Any]) -> Any:
        """The answer of a node whose head is `self.head`, for calls past it."""
        if self.head is None:
            return _MISSING
        method, params = call.get("method"), call.get("params") or []
        if method == "eth_blockNumber":
            return hex(self.head)
        if method in ("eth_getBlockByNumber", "eth_getBlockReceipts") and params:
            tag = params[0]
            if isinstance(tag, str) and tag.startswith("0x") and int(tag, 16) > self.head:
                return None
        return _MISSING

    def _capped(self, call: dict[str, Any]) -> dict[str, Any]:
        """`latest` means the capped head."""
        params = call.get("params") or []
        if self.head is not None and params and params[0] in ("latest", "pending", "safe"):
            return {**call, "params": [hex(self.head), *params[1:]]}
        return call


def _rewrite(rule: Mapping[str, Any], result: Any) -> Any:
    if "result" in rule:
        return rule["result"]
    if "patch" in rule:
        if isinstance(result, list):
            return [{**r, **rule["patch"]} if isinstance(r, dict) else r for r in result]
        return {**result, **rule["patch"]} if isinstance(result, dict) else result
    if "patch_transactions" in rule and isinstance(result, dict):
        txs = result.get("transactions") or []
        patched = [{**t, **rule["patch_transactions"]} if isinstance(t, dict) else t for t in txs]
        return {**result, "transactions": patched}
    return result
