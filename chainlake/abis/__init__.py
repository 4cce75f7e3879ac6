"""Contract ABIs shipped with chainlake, by the name `chains.yaml` gives them (`abi:`).

Each file in this package is a contract's ABI array (`<name>.json`), nothing else. The 8004
registry ABIs were taken from the devnet contracts' build artifacts
(`tools/devnet/contracts/build/*.json`, key `abi`); `tests/unit/test_abis.py` checks they still
agree. Every ABI maps to the `registry` its decoded events carry in the PostgreSQL `events`
table, which must be a row of the `registries` reference table.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

# ABI name (file stem) -> the `events.registry` value of the events decoded with it
ABI_REGISTRIES: dict[str, str] = {
    "identity_registry": "identity",
    "reputation_registry": "reputation",
    "validation_registry": "validation",
}


def abi_names() -> tuple[str, ...]:
    """The ABI names a `contracts:` entry of chains.yaml may use, sorted."""
    return tuple(sorted(ABI_REGISTRIES))


def registry_of(abi: str) -> str:
    """The `events.registry` value of events decoded with the ABI `abi`.

    Raises:
        KeyError: `abi` is not an ABI shipped with chainlake.
    """
    try:
        return ABI_REGISTRIES[abi]
    except KeyError:
        raise KeyError(f"unknown ABI {abi!r}; known: {', '.join(abi_names())}") from None


@cache
def _load(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.json").read_text(encoding="utf-8")


def load_abi(name: str) -> list[dict[str, Any]]:
    """The ABI array of `name` (a fresh copy: callers may change it).

    Raises:
        KeyError: `name` is not an ABI shipped with chainlake.
    """
    registry_of(name)
    abi = json.loads(_load(name))
    if not isinstance(abi, list):
        raise ValueError(f"chainlake/abis/{name}.json: expected a JSON array (an ABI)")
    return abi
