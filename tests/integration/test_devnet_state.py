"""A saved devnet chain comes back as it was: `make demo` saves it (`Anvil.dump_state`), `make
dev` starts it detached with `python -m tools.devnet up --state … --block-time …` and `down`
writes it back. The same blocks (hashes, receipts), the historical state `core/balances` reads
at each day's last block, new blocks at the interval and never stamped before the saved
chain's last block, and the blocks mined meanwhile kept by `down` for the next `up`."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tools.devnet.anvil import Anvil, free_port
from tools.devnet.cli import devnet
from tools.devnet.generator import generate

pytestmark = pytest.mark.integration

START = dt.date(2025, 3, 1)
BALANCE_OF = "0x70a08231"


def rpc(url: str, method: str, *params: Any) -> Any:
    body = httpx.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=30
    ).json()
    assert "error" not in body, f"{method}: {body.get('error')}"
    return body["result"]


def cli(*args: str) -> str:
    result = CliRunner().invoke(devnet, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_saved_chain_comes_back_with_its_blocks_history_and_clock(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with Anvil(genesis=START) as node:
        manifest = generate(
            node.rpc_url, start=START, days=2, blocks_per_day=6, txs_per_block=4, seed=3
        )
        url = node.rpc_url
        # a last block stamped after the wall clock (a day that ends today, cut late)
        future = int(time.time()) + 900
        rpc(url, "evm_setNextBlockTimestamp", hex(future))
        rpc(url, "evm_mine")
        head = int(rpc(url, "eth_blockNumber"), 16)
        token = manifest.tokens[0].address
        wallets = [w.address for w in manifest.wallets][:4]
        lasts = [d.last_block for d in manifest.day_blocks]
        saved = _read(url, range(head + 1), lasts, wallets, token)
        node.dump_state(state_file)
    snapshot = json.loads(state_file.read_text())
    assert snapshot["best_block_number"] == head
    assert len(snapshot["historical_states"]) >= head  # every block's state, not just the head

    port = free_port()
    state_dir = str(tmp_path / "node")
    try:
        out = cli(
            "up", "--state-dir", state_dir, "--port", str(port), "--state", str(state_file),
            "--block-time", "1",
        )  # fmt: skip
        assert f"head block {head} of" in out and "a block every 1s" in out, out
        url = f"http://127.0.0.1:{port}"
        assert _read(url, range(head + 1), lasts, wallets, token) == saved
        deadline = time.monotonic() + 30
        while int(rpc(url, "eth_blockNumber"), 16) < head + 2:
            assert time.monotonic() < deadline, "no new blocks at a 1 s interval"
            time.sleep(0.2)
        stamps = [
            int(rpc(url, "eth_getBlockByNumber", hex(n), False)["timestamp"], 16)
            for n in range(head, head + 3)
        ]
        assert stamps[0] == future and stamps[0] < stamps[1] < stamps[2], stamps
        mined_head = int(rpc(url, "eth_blockNumber"), 16)
        mined_hash = rpc(url, "eth_getBlockByNumber", hex(mined_head), False)["hash"]
    finally:
        out = cli("down", "--state-dir", state_dir)
    assert out.strip() == "devnet stopped"

    # `down` wrote the chain back: the next `up` starts past the blocks mined meanwhile
    try:
        cli("up", "--state-dir", state_dir, "--port", str(port), "--state", str(state_file))
        url = f"http://127.0.0.1:{port}"
        # the snapshot `down` wrote held anvil's extra block 0 of the first load; `up` dropped it
        geneses = [
            b
            for b in json.loads(state_file.read_text())["blocks"]
            if b["header"]["number"] in ("0x0", 0)
        ]
        assert len(geneses) == 1, [b["header"]["timestamp"] for b in geneses]
        assert int(rpc(url, "eth_blockNumber"), 16) >= mined_head
        assert rpc(url, "eth_getBlockByNumber", hex(mined_head), False)["hash"] == mined_hash
        assert _read(url, range(head + 1), lasts, wallets, token) == saved
    finally:
        cli("down", "--state-dir", state_dir)


def test_up_without_a_saved_chain_says_where_it_looked(tmp_path: Path) -> None:
    missing = tmp_path / "state.json"
    result = CliRunner().invoke(
        devnet, ["up", "--state-dir", str(tmp_path), "--state", str(missing)]
    )
    assert result.exit_code == 1
    assert f"no saved chain at {missing}; `make demo` writes" in result.output


def _read(
    url: str, blocks: range, lasts: list[int], wallets: list[str], token: str
) -> dict[str, Any]:
    """Block hashes, the receipts of each day's last block, and native and token balances at
    each day's last block (what core/balances asks)."""
    return {
        "hashes": [rpc(url, "eth_getBlockByNumber", hex(n), False)["hash"] for n in blocks],
        "receipts": [rpc(url, "eth_getBlockReceipts", hex(n)) for n in lasts],
        "balances": [
            (
                rpc(url, "eth_getBalance", w, hex(n)),
                rpc(
                    url,
                    "eth_call",
                    {"to": token, "data": BALANCE_OF + w[2:].rjust(64, "0")},
                    hex(n),
                ),
            )
            for n in lasts
            for w in wallets
        ],
    }
