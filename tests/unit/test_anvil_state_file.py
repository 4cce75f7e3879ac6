"""`repair_state_file` keeps the earliest block 0 of an anvil snapshot and nothing else changes:
anvil 1.7.1 adds a block 0 stamped with the load time at every start from a snapshot, and a
later load may serve it as the genesis (tools/devnet/anvil.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.devnet.anvil import AnvilError, repair_state_file


def _block(number: int, timestamp: int) -> dict:
    return {
        "header": {
            "parentHash": "0x" + "00" * 32,
            "number": hex(number),
            "timestamp": hex(timestamp),
        },
        "transactions": [],
        "ommers": [],
    }


def _snapshot(blocks: list[dict]) -> dict:
    return {
        "block": {"number": "0x2", "timestamp": "0x10"},
        "accounts": {"0xabc": {"balance": "0x1", "nonce": 0}},
        "best_block_number": 2,
        "blocks": blocks,
        "transactions": [{"info": {"transaction_hash": "0x01"}, "block_number": 1}],
        "historical_states": [["0xbeef", {"accounts": {"0xabc": {"balance": "0x2"}}}]],
    }


def test_the_later_genesis_blocks_are_dropped_and_the_rest_is_kept(tmp_path: Path) -> None:
    genesis, stray, later_stray = _block(0, 1_000), _block(0, 9_000), _block(0, 9_500)
    one, two = _block(1, 1_001), _block(2, 1_002)
    path = tmp_path / "state.json"
    path.write_text(json.dumps(_snapshot([stray, one, genesis, two, later_stray])))

    assert repair_state_file(path) == 2
    assert json.loads(path.read_text()) == _snapshot([one, genesis, two])
    before = path.read_bytes()
    assert repair_state_file(path) == 0
    assert path.read_bytes() == before


def test_a_snapshot_with_one_genesis_is_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    # anvil's own layout has no spaces; indentation must not matter either
    path.write_text(json.dumps(_snapshot([_block(0, 1_000), _block(1, 1_001)]), indent=1))
    before = path.read_bytes()
    assert repair_state_file(path) == 0
    assert path.read_bytes() == before


def test_a_file_that_is_no_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("[1, 2]")
    with pytest.raises(AnvilError, match="not an anvil state snapshot"):
        repair_state_file(path)
