"""Test helpers for issue 3's tests: a local anvil node, quick block filling with ERC-20-style
Transfer logs, and a chains.yaml pointing at given URLs.

`tools.devnet` owns the project's anvil lifecycle and activity generator; these helpers
are the small subset the extraction tests need (fast, fully controlled blocks), kept here so
the tests do not depend on the generator's exact activity mix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

# A contract whose every call emits Transfer(msg.sender, calldata[0:32], calldata[32:64]):
# enough for token_transfers without compiling anything. Runtime code:
#   PUSH1 0x20 CALLDATALOAD PUSH1 0 MSTORE      value -> memory[0:32]
#   PUSH1 0 CALLDATALOAD CALLER PUSH32 topic    topic2=to, topic1=from, topic0
#   PUSH1 0x20 PUSH1 0 LOG3 STOP
_RUNTIME = "602035600052600035337f" + TRANSFER_TOPIC[2:] + "60206000a300"
_INIT = "60" + f"{len(_RUNTIME) // 2:02x}" + "80600b6000396000f3"
EMITTER_BYTECODE = "0x" + _INIT + _RUNTIME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Anvil:
    url: str
    process: subprocess.Popen[bytes]
    cache_dir: str
    # one client: httpx.post() builds a TLS context per call, ~100 ms under load
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=120))

    def rpc(self, method: str, params: Sequence[Any] = ()) -> Any:
        r = self.http.post(
            self.url,
            content=orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
            headers={"content-type": "application/json"},
        )
        body = orjson.loads(r.content)
        if body.get("error"):
            raise RuntimeError(f"{method}: {body['error']}")
        return body["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        r = self.http.post(
            self.url,
            content=orjson.dumps(payload),
            headers={"content-type": "application/json"},
        )
        out = sorted(orjson.loads(r.content), key=lambda x: x["id"])
        for item in out:
            if item.get("error"):
                raise RuntimeError(str(item["error"]))
        return [item["result"] for item in out]

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.cache_dir, ignore_errors=True)


def start_anvil(
    *, genesis_ts: int | None = None, extra: Sequence[str] = (), keep_states: int | None = None
) -> Anvil:
    """anvil on a free port; `keep_states` keeps that many historical states in memory (for
    balances at past blocks), else none are kept."""
    port = free_port()
    cache = tempfile.mkdtemp(prefix="anvil-cache-")
    args = [
        str(ANVIL),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--prune-history",
        *([str(keep_states)] if keep_states else []),
        "--cache-path",
        cache,
        "--no-mining",
        "--silent",
        "--accounts",
        "10",
        "--gas-limit",
        "300000000",
    ]
    if genesis_ts is not None:
        args += ["--timestamp", str(genesis_ts)]
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    node = Anvil(f"http://127.0.0.1:{port}", proc, cache)
    deadline = time.monotonic() + 20
    while True:
        try:
            node.rpc("eth_chainId")
            return node
        except (httpx.HTTPError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                node.stop()
                raise RuntimeError("anvil did not start") from None
            time.sleep(0.05)


@contextlib.contextmanager
def anvil_node(**kwargs: Any) -> Iterator[Anvil]:
    node = start_anvil(**kwargs)
    try:
        yield node
    finally:
        node.stop()


def day_ts(day: dt.date, seconds: int = 0) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp()) + seconds


class Filler:
    """Mines blocks with chosen timestamps, each holding native transfers and Transfer logs."""

    def __init__(self, node: Anvil) -> None:
        self.node = node
        self.accounts: list[str] = node.rpc("eth_accounts")
        self.sender = self.accounts[0]
        self.nonce = int(node.rpc("eth_getTransactionCount", [self.sender, "pending"]), 16)
        self.emitter: str | None = None

    def _send(self, txs: list[dict[str, Any]]) -> list[str]:
        calls = []
        for tx in txs:
            calls.append(
                (
                    "eth_sendTransaction",
                    [{"from": self.sender, "nonce": hex(self.nonce), "gas": hex(100_000), **tx}],
                )
            )
            self.nonce += 1
        return self.node.batch(calls) if calls else []

    def deploy_emitter(self, ts: int) -> str:
        (h,) = self._send([{"data": EMITTER_BYTECODE, "gas": hex(200_000)}])
        self.mine(ts)
        rc = self.node.rpc("eth_getTransactionReceipt", [h])
        self.emitter = rc["contractAddress"]
        return self.emitter

    def mine(self, ts: int) -> None:
        self.node.rpc("evm_setNextBlockTimestamp", [hex(ts)])
        self.node.rpc("evm_mine")

    def block(self, ts: int, *, transfers: int = 2, logs: int = 2, salt: int = 0) -> None:
        """One block at `ts` with `transfers` native transfers and `logs` Transfer events;
        `salt` changes the amounts so a replayed chain gets different hashes."""
        txs: list[dict[str, Any]] = []
        for i in range(transfers):
            txs.append({"to": self.accounts[1 + i % 9], "value": hex(1000 + salt * 7 + i)})
        if logs:
            assert self.emitter, "deploy_emitter first"
            for i in range(logs):
                to = self.accounts[1 + (i + salt) % 9][2:].rjust(64, "0")
                amount = f"{10**18 + salt * 1_000 + i:064x}"
                txs.append({"to": self.emitter, "data": "0x" + to + amount})
        self._send(txs)
        self.mine(ts)

    def head(self) -> int:
        return int(self.node.rpc("eth_blockNumber"), 16)


def write_chains_yaml(
    path: Path,
    urls: Sequence[str],
    *,
    name: str = "devnet",
    start_date: str = "2026-11-01",
    confirmations: int = 0,
    max_in_flight: int = 4,
    batch_size: int = 50,
) -> Path:
    url_list = ", ".join(f'"{u}"' for u in urls)
    path.write_text(
        "chains:\n"
        f"  - name: {name}\n"
        "    network: devnet\n"
        "    subnet: local\n"
        "    chain_id: 31337\n"
        f"    rpc_urls: [{url_list}]\n"
        f"    confirmations: {confirmations}\n"
        f"    start_date: {start_date}\n"
        f"    max_requests_in_flight: {max_in_flight}\n"
        f"    batch_size: {batch_size}\n"
    )
    return path
