from pathlib import Path

import pytest

from chainlake.config import ConfigError, get_chain, load_chains

GOOD = """
chains:
  - name: devnet
    network: devnet
    subnet: local
    chain_id: 31337
    rpc_urls: ["http://127.0.0.1:8545", "http://127.0.0.1:8546"]
    confirmations: 2
    start_date: 2026-11-01
    tokens:
      - {symbol: USDC, address: "0x5FbDB2315678afecb367f032d93F642f64180aa3", decimals: 6}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "chains.yaml"
    p.write_text(text)
    return p


def test_good_config_loads_and_normalises(tmp_path: Path) -> None:
    chains = load_chains(write(tmp_path, GOOD))
    devnet = chains["devnet"]
    assert devnet.rpc_urls == ("http://127.0.0.1:8545", "http://127.0.0.1:8546")
    assert devnet.tokens[0].address == "0x5fbdb2315678afecb367f032d93f642f64180aa3"
    assert devnet.token("usdc").decimals == 6


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t.replace("    chain_id: 31337\n", ""), "chain_id"),
        (lambda t: t.replace("chain_id: 31337", "chain_id: thirty"), "chain_id"),
        (lambda t: t.replace("start_date: 2026-11-01", "start_date: yesterday"), "start_date"),
        (
            lambda t: t.replace('["http://127.0.0.1:8545", "http://127.0.0.1:8546"]', '["ws://x"]'),
            "rpc_urls",
        ),
        (lambda t: t.replace("decimals: 6", "decimals: -1"), "tokens.0.decimals"),
        (
            lambda t: t.replace("0x5FbDB2315678afecb367f032d93F642f64180aa3", "0x123"),
            "tokens.0.address",
        ),
        (lambda t: t.replace("subnet: local", "subnet: local\n    colour: blue"), "colour"),
    ],
)
def test_bad_config_names_file_chain_and_field(tmp_path: Path, edit, field: str) -> None:
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(ConfigError) as err:
        load_chains(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "chain 'devnet'" in msg
    assert f"field '{field}'" in msg


def test_duplicate_chain_is_refused(tmp_path: Path) -> None:
    body = GOOD.split("chains:\n", 1)[1]
    with pytest.raises(ConfigError, match="duplicate chain name"):
        load_chains(write(tmp_path, "chains:\n" + body + body))


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_chains(write(tmp_path, "chains: [unclosed"))
    with pytest.raises(ConfigError, match="file not found"):
        load_chains(tmp_path / "absent.yaml")


def test_unknown_chain_in_partition_key(tmp_path: Path) -> None:
    chains = load_chains(write(tmp_path, GOOD))
    with pytest.raises(ConfigError, match="unknown chain 'polygon'.*configured chains: devnet"):
        get_chain(chains, "polygon", source="chains.yaml")
