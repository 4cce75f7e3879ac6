"""Chain configuration (`config/chains.yaml`), validated on load.

Every error names the file, the chain and the field, so a data engineer can fix the YAML
without reading a traceback.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

DEFAULT_CHAINS_CONFIG = "config/chains.yaml"
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
PARTITION_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ConfigError(ValueError):
    """A configuration file is wrong; the message names the file, the entry and the field."""


def normalize_address(value: str) -> str:
    if not isinstance(value, str) or not ADDRESS_RE.match(value):
        raise ValueError(f"not a 20-byte hex address: {value!r}")
    return value.lower()


class TokenConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    symbol: str = Field(min_length=1, max_length=32)
    address: str
    decimals: int = Field(ge=0, le=77)
    price_feed: str | None = None
    price_feed_decimals: int = Field(default=8, ge=0, le=77)

    _addr = field_validator("address", "price_feed")(
        lambda v: None if v is None else normalize_address(v)
    )


class ChainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
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

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PARTITION_NAME_RE.match(v):
            raise ValueError(f"{v!r} must be lowercase letters, digits and dashes")
        return v

    @field_validator("rpc_urls", mode="before")
    @classmethod
    def _urls(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [v]
        for url in v or ():
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return v

    def token(self, symbol_or_address: str) -> TokenConfig:
        key = symbol_or_address.lower()
        for t in self.tokens:
            if t.symbol.lower() == key or t.address == key:
                return t
        raise KeyError(f"chain {self.name!r} has no token {symbol_or_address!r}")


def _format_validation_error(path: Path, chain: str, err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(entry)"
        parts.append(f"{path}: chain {chain!r}: field {field!r}: {e['msg']}")
    return "\n".join(parts)


def chains_config_path() -> Path:
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
        chains[chain.name] = chain
    return chains


def get_chain(chains: Mapping[str, ChainConfig], name: str, *, source: str = "") -> ChainConfig:
    try:
        return chains[name]
    except KeyError:
        where = f"{source}: " if source else ""
        raise ConfigError(
            f"{where}unknown chain {name!r} in partition key; configured chains: "
            f"{', '.join(sorted(chains)) or '(none)'}"
        ) from None
