"""The contract ABIs shipped in chainlake/abis: the files and the names chains.yaml may use agree,
and the registry ABIs are those the devnet contracts were built with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chainlake.abis import ABI_REGISTRIES, abi_names, load_abi, registry_of

ROOT = Path(__file__).resolve().parents[2]
ABI_DIR = ROOT / "chainlake" / "abis"
BUILD_DIR = ROOT / "tools" / "devnet" / "contracts" / "build"
# shipped ABI name -> the devnet contract it was taken from
DEVNET_CONTRACTS = {
    "identity_registry": "IdentityRegistry",
    "reputation_registry": "ReputationRegistry",
    "validation_registry": "ValidationRegistry",
}


def test_every_file_is_a_known_abi_and_every_name_has_a_file() -> None:
    assert sorted(p.stem for p in ABI_DIR.glob("*.json")) == list(abi_names())
    for name in abi_names():
        abi = load_abi(name)
        assert isinstance(abi, list) and any(item.get("type") == "event" for item in abi), name


@pytest.mark.parametrize("name", sorted(DEVNET_CONTRACTS))
def test_registry_abis_match_the_devnet_build(name: str) -> None:
    artifact = json.loads((BUILD_DIR / f"{DEVNET_CONTRACTS[name]}.json").read_text())
    assert load_abi(name) == artifact["abi"]


def test_unknown_abi_is_refused_with_the_known_names() -> None:
    with pytest.raises(KeyError, match="unknown ABI 'erc721'; known: identity_registry"):
        load_abi("erc721")
    assert registry_of("reputation_registry") == "reputation"
    assert set(ABI_REGISTRIES) == set(DEVNET_CONTRACTS)
