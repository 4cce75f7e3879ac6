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
    with pytest.raises(ConfigError, match=r"unknown chain 'polygon'.*configured chains: devnet"):
        get_chain(chains, "polygon", source="chains.yaml")


# ---- contracts: ------------------------------------------------------------------------------

IDENTITY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
REPUTATION = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
WITH_CONTRACTS = (
    GOOD
    + f"""    contracts:
      - {{name: identity, address: "{IDENTITY}", abi: identity_registry, start_block: 0}}
      - {{name: reputation, address: "{REPUTATION}", abi: reputation_registry, start_block: 7}}
"""
)


def test_contracts_load_lowercased_with_their_abi_and_start_block(tmp_path: Path) -> None:
    devnet = load_chains(write(tmp_path, WITH_CONTRACTS))["devnet"]
    assert [(c.name, c.address, c.abi, c.start_block) for c in devnet.contracts] == [
        ("identity", IDENTITY.lower(), "identity_registry", 0),
        ("reputation", REPUTATION.lower(), "reputation_registry", 7),
    ]
    # no `contracts:`: none, not an error
    assert load_chains(write(tmp_path, GOOD))["devnet"].contracts == ()


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        (lambda t: t.replace(IDENTITY, "0x5FbDB2315678afecb367f032d93F642f64180a"),
         "contracts.0.address", "not a 20-byte hex address"),
        (lambda t: t.replace(IDENTITY, "5FbDB2315678afecb367f032d93F642f64180aa3ab"),
         "contracts.0.address", "not a 20-byte hex address"),
        (lambda t: t.replace("abi: reputation_registry", "abi: erc721"),
         "contracts.1.abi", "unknown ABI 'erc721'; known: identity_registry, reputation_registry"),
        (lambda t: t.replace("start_block: 7", "start_block: -1"),
         "contracts.1.start_block", "greater than or equal to 0"),
        (lambda t: t.replace("start_block: 7", 'start_block: "7"'),
         "contracts.1.start_block", "valid integer"),
        (lambda t: t.replace(", start_block: 7", ""), "contracts.1.start_block", "Field required"),
        (lambda t: t.replace(REPUTATION, IDENTITY.lower()),
         "contracts", f"duplicate address {IDENTITY.lower()} (entries 0 and 1)"),
        (lambda t: t.replace("name: reputation,", "name: identity,"),
         "contracts", "duplicate name 'identity' (entries 0 and 1)"),
        (lambda t: t.replace("start_block: 7}", "start_block: 7, colour: blue}"),
         "contracts.1.colour", "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_bad_contract_names_file_chain_and_field(
    tmp_path: Path, edit, field: str, says: str
) -> None:
    path = write(tmp_path, edit(WITH_CONTRACTS))
    with pytest.raises(ConfigError) as err:
        load_chains(path)
    msg = str(err.value)
    assert f"{path}: chain 'devnet': field '{field}': " in msg
    assert says in msg


def test_the_committed_chains_yaml_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    chains = load_chains(root / "config" / "chains.yaml")
    assert "devnet" in chains and chains["devnet"].contracts == ()


def test_a_token_needs_only_its_address(tmp_path: Path) -> None:
    # symbol and decimals are read from the chain (core/tokens); given, they are overrides
    text = GOOD.replace(
        '{symbol: USDC, address: "0x5FbDB2315678afecb367f032d93F642f64180aa3", decimals: 6}',
        '{address: "0x5FbDB2315678afecb367f032d93F642f64180aa3"}',
    )
    (token,) = load_chains(write(tmp_path, text))["devnet"].tokens
    assert (token.address, token.symbol, token.decimals) == (
        "0x5fbdb2315678afecb367f032d93f642f64180aa3",
        None,
        None,
    )
    assert load_chains(write(tmp_path, text))["devnet"].token(token.address) == token
    empty_symbol = GOOD.replace("symbol: USDC", 'symbol: ""')
    with pytest.raises(ConfigError, match=r"field 'tokens\.0\.symbol'"):
        load_chains(write(tmp_path, empty_symbol))
