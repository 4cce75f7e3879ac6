"""Chain configuration (`config/chains.yaml`), validated on load.

Every error names the file, the chain and the field, so a data engineer can fix the YAML
without reading a traceback.

A chain may list the contracts whose logs `events/chain_events` decodes, each with an ABI
shipped in `chainlake/abis/`::

    contracts:
      - {name: identity, address: "0x…", abi: identity_registry, start_block: 0}

A chain without `contracts:` decodes no registry events (its ERC-20 transfers still are).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from chainlake.abis import abi_names
from chainlake.presets import BLOCK_REWARDS, FEE_MODELS, PRESETS, TRACE_SETTINGS

# The first day read for a chain added by its preset alone (no `start_date:`).
PRESET_START_DATE = dt.date(2026, 11, 1)
ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

DEFAULT_CHAINS_CONFIG = "config/chains.yaml"
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
PARTITION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# Devnets and rollups (and their testnets): a reorg there is shallow, if it happens at all.
SHALLOW_REORG_CHAIN_IDS = frozenset(
    {31337, 1337, 10, 8453, 42161, 42170, 324, 59144, 534352, 81457, 1101, 7777777, 34443}
    | {11155420, 84532, 421614}
)


class ConfigError(ValueError):
    """A configuration file is wrong; the message names the file, the entry and the field."""


def normalize_address(value: str) -> str:
    """`value` as a lowercase address; ValueError unless it is `0x` and 40 hex digits."""
    if not isinstance(value, str) or not ADDRESS_RE.match(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return value.lower()


class TokenConfig(BaseModel):
    """An ERC-20 token tracked on a chain, with its optional Chainlink-style price feed.

    Only `address` is needed: `core/tokens` reads the token's name, symbol, decimals and
    total supply from the chain every day. `symbol` and `decimals`, when given, are
    overrides: the symbol labels the token wherever it is shown (the chain's stays in
    `core/tokens.chain_symbol`); decimals are used for a token whose `decimals()` the chain
    does not answer, and must equal the chain's when it does: a different value stops
    `core/tokens` with an error naming the token (a wrong decimals scales every balance and
    value of the token by a power of ten). Files written before decimals were read from the
    chain stay valid: their decimals are checked against the chain the same way.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str | None = Field(default=None, min_length=1, max_length=32)
    address: str
    decimals: int | None = Field(default=None, ge=0, le=77)
    price_feed: str | None = None
    price_feed_decimals: int = Field(default=8, ge=0, le=77)

    _addr = field_validator("address", "price_feed")(
        lambda v: None if v is None else normalize_address(v)
    )


class ContractConfig(BaseModel):
    """A contract whose logs are decoded into events: its address, the ABI (a name from
    `chainlake/abis/`) and the first block to decode (its deployment block, or later)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    address: str
    abi: str
    # strict: a quoted "123" or a `true` is a typo, not a block number
    start_block: int = Field(ge=0, strict=True)

    _addr = field_validator("address")(normalize_address)

    @field_validator("abi")
    @classmethod
    def _abi(cls, v: str) -> str:
        if v not in abi_names():
            raise ValueError(f"unknown ABI {v!r}; known: {', '.join(abi_names())}")
        return v


PATH_SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ChainConfig(BaseModel):
    """One chain of chains.yaml: where its node is, how to read it, and what is tracked on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    # A name from chainlake/presets.py: the chain's id, network, fee model, confirmations,
    # trace method and block time, each overridable here (see _with_preset).
    preset: str | None = None
    network: str = Field(min_length=1)
    subnet: str = Field(min_length=1)
    chain_id: int = Field(gt=0)
    rpc_urls: tuple[str, ...] = Field(min_length=1)
    confirmations: int = Field(default=12, ge=0)
    start_date: dt.date
    native_symbol: str = "ETH"
    native_decimals: int = 18
    max_requests_in_flight: int = Field(default=4, ge=1, le=64)
    batch_size: int = Field(default=50, ge=1, le=1000)
    tokens: tuple[TokenConfig, ...] = ()
    contracts: tuple[ContractConfig, ...] = ()
    # How deep below the checkpoint a reorg is repaired without asking: deeper, the run
    # stops and changes nothing. When absent, 64 on devnets and rollups, 128 elsewhere (see
    # _default_reorg_depth).
    max_reorg_depth: int = Field(default=128, ge=1, strict=True)
    # How fees are paid and where they go (chainlake/presets.py: ethereum, op-stack,
    # arbitrum, burn-all); how traces are read (auto, trace_block, debug_trace, none: with
    # none, value moved by internal calls is not in core/native_balance_movements);
    # proof-of-work block rewards (ethereum, none); seconds between blocks.
    fee_model: str = "ethereum"
    trace_method: str = "auto"
    block_rewards: str = "none"
    block_time: float = Field(default=12.0, gt=0)

    @field_validator("fee_model")
    @classmethod
    def _fee_model(cls, v: str) -> str:
        if v not in FEE_MODELS:
            raise ValueError(f"{v!r} is not a fee model; known: {', '.join(FEE_MODELS)}")
        return v

    @field_validator("trace_method")
    @classmethod
    def _trace_method(cls, v: str) -> str:
        if v not in TRACE_SETTINGS:
            raise ValueError(f"{v!r} is not a trace method; known: {', '.join(TRACE_SETTINGS)}")
        return v

    @field_validator("block_rewards")
    @classmethod
    def _block_rewards(cls, v: str) -> str:
        if v not in BLOCK_REWARDS:
            raise ValueError(
                f"{v!r} is not a block reward schedule; known: {', '.join(BLOCK_REWARDS)}"
            )
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_reorg_depth(cls, data: Any) -> Any:
        # rollups and devnets reorg shallowly if at all; elsewhere 128 blocks is four
        # Ethereum epochs, twice the depth finality leaves open
        data = _with_preset(data)
        if isinstance(data, dict) and "max_reorg_depth" not in data:
            shallow = (
                data.get("network") == "devnet" or data.get("chain_id") in SHALLOW_REORG_CHAIN_IDS
            )
            data = {**data, "max_reorg_depth": 64 if shallow else 128}
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PARTITION_NAME_RE.match(v):
            raise ValueError(f"{v!r} must be lowercase letters, digits and dashes")
        return v

    @field_validator("network", "subnet")
    @classmethod
    def _path_segment(cls, v: str) -> str:
        # both name a folder under DELTA_ROOT: anything else could write outside it
        if not PATH_SEGMENT_RE.match(v):
            raise ValueError(
                f"{v!r} must be lowercase letters, digits, '-' or '_' (it is a folder name)"
            )
        return v

    @field_validator("rpc_urls", mode="before")
    @classmethod
    def _urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list | tuple):
            raise ValueError(f"expected a list of http(s) URLs, got {v!r}")
        v = [u for url in v for u in _expand_env(url)]
        for url in v:
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return v

    @field_validator("contracts")
    @classmethod
    def _contracts(cls, v: tuple[ContractConfig, ...]) -> tuple[ContractConfig, ...]:
        # one address, one ABI: two entries for an address would decode each log twice
        seen: dict[str, int] = {}
        names: dict[str, int] = {}
        for i, c in enumerate(v):
            if c.address in seen:
                raise ValueError(
                    f"duplicate address {c.address} (entries {seen[c.address]} and {i})"
                )
            if c.name in names:
                raise ValueError(f"duplicate name {c.name!r} (entries {names[c.name]} and {i})")
            seen[c.address] = i
            names[c.name] = i
        return v

    def token(self, symbol_or_address: str) -> TokenConfig:
        """The chain's token with this symbol or address (case-insensitive); KeyError if none."""
        key = symbol_or_address.lower()
        for t in self.tokens:
            if (t.symbol or "").lower() == key or t.address == key:
                return t
        raise KeyError(f"chain {self.name!r} has no token {symbol_or_address!r}")


def _with_preset(data: Any) -> Any:
    """A chains.yaml entry with its preset's fields filling what it leaves out."""
    if isinstance(data, dict) and data.get("preset") is not None:
        preset = PRESETS.get(data["preset"])
        if preset is None:
            raise ValueError(
                f"unknown preset {data['preset']!r}; known: {', '.join(sorted(PRESETS))}"
            )
        data = {"start_date": PRESET_START_DATE, **preset.defaults(), **data}
    return data


def _expand_env(url: Any) -> list[Any]:
    """`${NAME}` in an RPC URL entry read from the environment; a variable holding several
    URLs separated by commas or spaces gives them all, in order."""
    if not isinstance(url, str) or "${" not in url:
        return [url]

    def value(m: re.Match[str]) -> str:
        name = m.group(1)
        if not os.environ.get(name):
            raise ValueError(f"environment variable {name} (in {url!r}) is not set")
        return os.environ[name]

    return ENV_REF_RE.sub(value, url).replace(",", " ").split()


def _format_validation_error(path: Path, chain: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(entry)"
        parts.append(f"{path}: chain {chain!r}: field {field!r}: {e['msg']}")
    return "\n".join(parts)


def chains_config_path() -> Path:
    """The chains file: `$CHAINS_CONFIG`, else config/chains.yaml."""
    return Path(os.environ.get("CHAINS_CONFIG") or DEFAULT_CHAINS_CONFIG)


def load_chains(path: str | Path | None = None) -> dict[str, ChainConfig]:
    """Read and validate chains.yaml; the result is keyed by chain name (the partition key)."""
    p = Path(path) if path is not None else chains_config_path()
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: file not found (set CHAINS_CONFIG or run `make demo`)") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    entries = raw.get("chains") if isinstance(raw, Mapping) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{p}: expected a top-level 'chains:' list with at least one entry")
    chains: dict[str, ChainConfig] = {}
    for i, entry in enumerate(entries):
        label = entry.get("name", f"#{i}") if isinstance(entry, Mapping) else f"#{i}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{p}: chain {label!r}: expected a mapping, got {entry!r}")
        try:
            chain = ChainConfig.model_validate(dict(entry))
        except ValidationError as e:
            raise ConfigError(_format_validation_error(p, str(label), e)) from None
        if chain.name in chains:
            raise ConfigError(f"{p}: chain {chain.name!r}: field 'name': duplicate chain name")
        for other in chains.values():
            # two chains in one set of tables would overwrite each other's days
            if (other.network, other.subnet) == (chain.network, chain.subnet):
                raise ConfigError(
                    f"{p}: chain {chain.name!r}: fields 'network'/'subnet': "
                    f"{chain.network}/{chain.subnet} is already chain {other.name!r}'s"
                )
            if other.chain_id == chain.chain_id:
                raise ConfigError(
                    f"{p}: chain {chain.name!r}: field 'chain_id': {chain.chain_id} is already "
                    f"chain {other.name!r}'s"
                )
        chains[chain.name] = chain
    return chains


def get_chain(chains: Mapping[str, ChainConfig], name: str, *, source: str = "") -> ChainConfig:
    """The chain named `name`; a ConfigError listing the configured chains if there is none."""
    try:
        return chains[name]
    except KeyError:
        where = f"{source}: " if source else ""
        raise ConfigError(
            f"{where}unknown chain {name!r} in partition key; configured chains: "
            f"{', '.join(sorted(chains)) or '(none)'}"
        ) from None
