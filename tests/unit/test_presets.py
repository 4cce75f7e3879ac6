"""Chain presets: a chain added by name, preset and RPC URLs from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainlake.config import ConfigError, load_chains
from chainlake.presets import PRESETS, block_reward


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "chains.yaml"
    path.write_text("chains:\n" + body)
    return path


def test_every_issue_chain_has_a_preset() -> None:
    assert set(PRESETS) == {
        "ethereum", "base", "optimism", "arbitrum", "polygon", "avalanche", "devnet"
    }  # fmt: skip
    assert {p.chain_id for p in PRESETS.values()} == {1, 8453, 10, 42161, 137, 43114, 31337}


def test_name_preset_and_urls_from_the_environment(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("BASE_RPC_URLS", "http://127.0.0.1:8547, http://127.0.0.1:8548")
    monkeypatch.setenv("ETH_RPC_URL", "http://127.0.0.1:8545")
    path = _write(
        tmp_path,
        '  - {name: base, preset: base, rpc_urls: ["${BASE_RPC_URLS}"]}\n'
        '  - {name: eth, preset: ethereum, rpc_urls: "${ETH_RPC_URL}", trace_method: none}\n',
    )
    chains = load_chains(path)
    base, eth = chains["base"], chains["eth"]
    assert base.rpc_urls == ("http://127.0.0.1:8547", "http://127.0.0.1:8548")
    assert (base.chain_id, base.network, base.subnet) == (8453, "base", "mainnet")
    assert (base.fee_model, base.confirmations, base.trace_method) == ("op-stack", 10, "auto")
    assert base.block_time == 2.0 and base.max_reorg_depth == 64  # a rollup: shallow
    assert (eth.chain_id, eth.fee_model, eth.block_rewards) == (1, "ethereum", "ethereum")
    assert eth.trace_method == "none"  # the entry wins over its preset
    assert eth.max_reorg_depth == 128


def test_errors_name_the_file_the_chain_and_the_field(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("NOPE_RPC_URL", raising=False)
    path = _write(tmp_path, '  - {name: x, preset: base, rpc_urls: ["${NOPE_RPC_URL}"]}\n')
    with pytest.raises(
        ConfigError, match=r"chains.yaml: chain 'x': field 'rpc_urls': .*NOPE_RPC_URL .*not set"
    ):
        load_chains(path)
    path = _write(tmp_path, '  - {name: x, preset: solana, rpc_urls: ["http://127.0.0.1:1"]}\n')
    with pytest.raises(ConfigError, match=r"chain 'x'.*unknown preset 'solana'; known: arbitrum"):
        load_chains(path)
    path = _write(
        tmp_path, '  - {name: x, preset: base, rpc_urls: ["http://127.0.0.1:1"], trace_method: x}\n'
    )
    with pytest.raises(ConfigError, match=r"field 'trace_method': .*'x' is not a trace method"):
        load_chains(path)


def test_the_shipped_config_is_still_valid() -> None:
    chains = load_chains("config/chains.yaml")
    devnet = chains["devnet"]
    assert devnet.trace_method == "auto" and devnet.fee_model == "ethereum"


def test_ethereum_block_rewards_by_era() -> None:
    assert block_reward(1) == 5 * 10**18
    assert block_reward(4_370_000) == 3 * 10**18
    assert block_reward(7_280_000) == 2 * 10**18
    assert block_reward(15_537_393) == 2 * 10**18
    assert block_reward(15_537_394) == 0
