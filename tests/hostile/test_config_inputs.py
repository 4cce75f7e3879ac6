"""Hostile chains.yaml entries: each is refused with the file, the chain and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from chainlake.config import ConfigError, load_chains

ENTRY = """chains:
  - name: devnet
    network: devnet
    subnet: local
    chain_id: 31337
    rpc_urls: {urls}
    start_date: 2026-11-01
{extra}"""


@pytest.mark.parametrize(
    ("urls", "extra", "field"),
    [
        ("8545", "", "rpc_urls"),
        ("[8545]", "", "rpc_urls"),
        ("{a: b}", "", "rpc_urls"),
        ("true", "", "rpc_urls"),
        ("[]", "", "rpc_urls"),
        ('["http://127.0.0.1:8545"]', "    max_reorg_depth: 0\n", "max_reorg_depth"),
        ('["http://127.0.0.1:8545"]', "    max_reorg_depth: deep\n", "max_reorg_depth"),
    ],
)
def test_bad_entry_names_file_chain_and_field(
    tmp_path: Path, urls: str, extra: str, field: str
) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text(ENTRY.format(urls=urls, extra=extra))
    with pytest.raises(ConfigError) as err:
        load_chains(path)
    msg = str(err.value)
    assert f"{path}: chain 'devnet': field '{field}'" in msg, msg
    assert len(msg.splitlines()) <= 2, msg


def test_max_reorg_depth_defaults_by_kind_of_chain(tmp_path: Path) -> None:
    path = tmp_path / "chains.yaml"
    path.write_text(ENTRY.format(urls='["http://127.0.0.1:8545"]', extra=""))
    assert load_chains(path)["devnet"].max_reorg_depth == 64
    path.write_text(
        ENTRY.format(urls='["http://127.0.0.1:8545"]', extra="")
        .replace("network: devnet", "network: ethereum")
        .replace("subnet: local", "subnet: mainnet")
        .replace("chain_id: 31337", "chain_id: 1")
    )
    assert load_chains(path)["devnet"].max_reorg_depth == 128
    path.write_text(path.read_text().replace("chain_id: 1", "chain_id: 8453"))  # Base, an L2
    assert load_chains(path)["devnet"].max_reorg_depth == 64
    path.write_text(
        ENTRY.format(urls='["http://127.0.0.1:8545"]', extra="    max_reorg_depth: 7\n")
    )
    assert load_chains(path)["devnet"].max_reorg_depth == 7
