"""Wallets, portfolios and alerts (`config/portfolios.yaml`), validated on load.

```yaml
wallets:
  - name: treasury                # unique; portfolios refer to wallets by name or address
    address: "0x…"                # 20-byte hex, stored lowercase
    chain: devnet                 # a chain of chains.yaml
    kind: eoa                     # eoa (default) | contract
    active: true
portfolios:
  - id: core-treasury             # the portfolio_id of every analytics table
    name: Core treasury
    chain: devnet                 # its home chain; optional when every wallet is on one chain
    risk_profile: moderate        # conservative | moderate | aggressive | custom
    target_allocation: {ETH: 0.6, USDC: 0.4}   # optional, weights summing to 1
    wallets: [treasury, "0x…"]
alerts:
  - name: Low treasury balance
    description: …
    query: Alert me when the treasury holds less than 10 ETH    # natural language
    expression: wallet_balances.filter(pl.col("balance") < 10)   # a Python expression
    parameters: {wallet: treasury, threshold: 10, token: ETH}
    active: true
risk:                             # optional
  min_observations: {30: 20, 90: 60}   # per window: fewer daily returns leave figures null
```

A portfolio's wallets may live on several chains. Its snapshots and risk are partitioned by
(chain, day) like everything else, under its home chain (`chain`, required when its wallets span
chains): the home chain's day of `analytics/portfolio_snapshots` depends on that day's balances
and prices of every chain the portfolio holds wallets on, values each holding on its own chain's
close and sums in USD. Wallets of other chains than the home chain are referred to by name (or
by an address that is a wallet on one chain only).

Every error names the file, the entry and the field.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chainlake.config import ChainConfig, ConfigError, normalize_address
from chainlake.risk import DEFAULT_MIN_OBSERVATIONS, WINDOWS

DEFAULT_PORTFOLIOS_CONFIG = "config/portfolios.yaml"
PORTFOLIO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
# Stable ids across reloads: the same wallet, portfolio or alert always gets the same UUID.
_NAMESPACE = uuid.UUID("5b0c7c1e-3f6a-4c1e-9a57-9e1f0c2d4b11")


def stable_id(kind: str, key: str) -> uuid.UUID:
    """The catalog id of an entry: a UUID derived from its kind and natural key."""
    return uuid.uuid5(_NAMESPACE, f"{kind}:{key}")


class WalletConfig(BaseModel):
    """A tracked wallet: its address on one chain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=128)
    address: str
    chain: str
    kind: Literal["eoa", "contract"] = "eoa"
    active: bool = True

    _addr = field_validator("address", mode="before")(lambda v: normalize_address(v))

    @property
    def id(self) -> uuid.UUID:
        """The wallet's stable id, derived from its chain and address."""
        return stable_id("wallet", f"{self.chain}:{self.address}")


class PortfolioConfig(BaseModel):
    """A portfolio of wallets on one or more chains, with its risk profile and target
    allocation; `chain` is its home chain (whose partitions hold its snapshots and risk)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    chain: str | None = None
    risk_profile: Literal["conservative", "moderate", "aggressive", "custom"] = "moderate"
    target_allocation: dict[str, float] = Field(default_factory=dict)
    active: bool = True
    wallets: tuple[str, ...] = Field(min_length=1)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not PORTFOLIO_ID_RE.match(v):
            raise ValueError(
                f"{v!r} must be 1-64 letters, digits or '_.:-', starting with a letter or digit"
            )
        return v

    @field_validator("target_allocation")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if v:
            if any(w < 0 for w in v.values()):
                raise ValueError("weights must not be negative")
            if abs(sum(v.values()) - 1.0) > 1e-9:
                raise ValueError(f"weights sum to {sum(v.values())}, not 1")
        return v


class AlertConfig(BaseModel):
    """An alert of portfolios.yaml: a question in natural language and its expression."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=255)
    description: str | None = None
    query: str = Field(min_length=1, description="the alert in natural language")
    expression: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    active: bool = True

    @field_validator("expression")
    @classmethod
    def _expression(cls, v: str | None) -> str | None:
        if v is not None:
            # The trigger engine's safe grammar: anything outside it is refused on load, with a
            # message pointing at the offending part (never eval); so is a column the frame the
            # expression reads does not have (a caret under the misspelt name).
            from chainlake.events.alerts import check_alert_columns

            check_alert_columns(v)
        return v

    @property
    def id(self) -> uuid.UUID:
        """The alert's stable id, derived from its name."""
        return stable_id("alert", self.name)


class RiskSettings(BaseModel):
    """How much history a risk figure needs: per window (days), the fewest daily returns."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_observations: dict[int, int] = Field(default_factory=lambda: dict(DEFAULT_MIN_OBSERVATIONS))

    @field_validator("min_observations")
    @classmethod
    def _within_windows(cls, v: dict[int, int]) -> dict[int, int]:
        for window, n in v.items():
            if window not in WINDOWS:
                raise ValueError(
                    f"window {window} is not one of the risk windows {list(WINDOWS)} (days)"
                )
            if not 1 <= n <= window:
                raise ValueError(
                    f"{window}-day window: {n} is not between 1 and {window} daily returns"
                )
        return {**DEFAULT_MIN_OBSERVATIONS, **v}


class PortfolioBook(BaseModel):
    """The validated file. Portfolios' `wallets` are resolved to lowercase addresses, each
    portfolio's `chain` (home chain) is set, and `members` holds each portfolio's wallets as
    (chain, address) pairs."""

    model_config = ConfigDict(frozen=True)

    wallets: tuple[WalletConfig, ...] = ()
    portfolios: tuple[PortfolioConfig, ...] = ()
    alerts: tuple[AlertConfig, ...] = ()
    risk: RiskSettings = RiskSettings()
    members: Mapping[str, tuple[tuple[str, str], ...]] = Field(default_factory=dict)

    def chains_of(self, portfolio: PortfolioConfig) -> list[str]:
        """Every chain `portfolio` holds wallets on, its home chain first."""
        others = sorted({c for c, _ in self.members.get(portfolio.id, ())} - {portfolio.chain})
        return [c for c in (portfolio.chain,) if c is not None] + others

    def linked_chains(self, home: str) -> list[str]:
        """The other chains the active portfolios homed on `home` hold wallets on: their days
        are inputs of `home`'s snapshots."""
        return sorted({c for p in self.portfolios_on(home) for c in self.chains_of(p)} - {home})

    def portfolio_members(self, home: str) -> pl.DataFrame:
        """(portfolio_id, chain, address) of every wallet of the active portfolios homed on
        `home`, on whichever chain the wallet is."""
        rows = [
            (p.id, c, a)
            for p in self.portfolios_on(home)
            for c, a in self.members.get(p.id, ((home, a) for a in p.wallets))
        ]
        return pl.DataFrame(
            rows,
            schema={"portfolio_id": pl.String, "chain": pl.String, "address": pl.String},
            orient="row",
        )

    def tracked_wallets(self, chain: str) -> list[WalletConfig]:
        """Active wallets of `chain` (the ones `core/balances` follows)."""
        return [w for w in self.wallets if w.chain == chain and w.active]

    def portfolios_on(self, chain: str) -> list[PortfolioConfig]:
        """The active portfolios homed on `chain`."""
        return [p for p in self.portfolios if p.chain == chain and p.active]

    def portfolio_wallets(self, chain: str) -> pl.DataFrame:
        """(portfolio_id, address) of the wallets on `chain` of the active portfolios homed
        there."""
        rows = [
            (p.id, a)
            for p in self.portfolios_on(chain)
            for c, a in self.members.get(p.id, ((chain, a) for a in p.wallets))
            if c == chain
        ]
        return pl.DataFrame(
            rows, schema={"portfolio_id": pl.String, "address": pl.String}, orient="row"
        )


def portfolios_config_path() -> Path:
    """The portfolios file: `$PORTFOLIOS_CONFIG`, else config/portfolios.yaml."""
    return Path(os.environ.get("PORTFOLIOS_CONFIG") or DEFAULT_PORTFOLIOS_CONFIG)


def _errors(path: Path, section: str, index: int, label: str, err: ValidationError) -> str:
    out = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(entry)"
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{path}: {section}[{index}] {label!r}: field {field!r}: {msg}")
    return "\n".join(out)


def _entries(raw: Mapping[str, Any], section: str, path: Path) -> list[Any]:
    entries = raw.get(section)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: '{section}:' must be a list")
    return entries


def _label(entry: Any, key: str, index: int) -> str:
    if isinstance(entry, Mapping) and entry.get(key) is not None:
        return str(entry[key])
    return f"#{index}"


def parse_portfolios(
    raw: Any, chains: Mapping[str, ChainConfig], *, path: str | Path = DEFAULT_PORTFOLIOS_CONFIG
) -> PortfolioBook:
    """Validate an already-parsed YAML document against the configured chains."""
    path = Path(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping with 'wallets', 'portfolios', 'alerts'")
    unknown = set(raw) - {"wallets", "portfolios", "alerts", "risk"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)}")
    problems: list[str] = []

    wallets: list[WalletConfig] = []
    by_name: dict[str, WalletConfig] = {}
    by_address: dict[tuple[str, str], WalletConfig] = {}
    addresses: dict[str, list[WalletConfig]] = {}
    for i, entry in enumerate(_entries(raw, "wallets", path)):
        label = _label(entry, "name", i)
        where = f"{path}: wallets[{i}] {label!r}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping, got {entry!r}")
            continue
        try:
            w = WalletConfig.model_validate(dict(entry))
        except ValidationError as e:
            problems.append(_errors(path, "wallets", i, label, e))
            continue
        if w.chain not in chains:
            problems.append(
                f"{where}: field 'chain': unknown chain {w.chain!r}; configured chains: "
                f"{', '.join(sorted(chains)) or '(none)'}"
            )
            continue
        if w.name in by_name:
            problems.append(f"{where}: field 'name': duplicate wallet name {w.name!r}")
            continue
        if (w.chain, w.address) in by_address:
            other = by_address[(w.chain, w.address)].name
            problems.append(
                f"{where}: field 'address': duplicate of wallet {other!r} ({w.address} on {w.chain})"
            )
            continue
        by_name[w.name] = w
        by_address[(w.chain, w.address)] = w
        addresses.setdefault(w.address, []).append(w)
        wallets.append(w)

    portfolios: list[PortfolioConfig] = []
    members_of: dict[str, tuple[tuple[str, str], ...]] = {}
    seen_ids: set[str] = set()
    for i, entry in enumerate(_entries(raw, "portfolios", path)):
        label = _label(entry, "id", i)
        where = f"{path}: portfolios[{i}] {label!r}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping, got {entry!r}")
            continue
        try:
            p = PortfolioConfig.model_validate(dict(entry))
        except ValidationError as e:
            problems.append(_errors(path, "portfolios", i, label, e))
            continue
        if p.id in seen_ids:
            problems.append(f"{where}: field 'id': duplicate portfolio id {p.id!r}")
            continue
        if p.chain is not None and p.chain not in chains:
            problems.append(
                f"{where}: field 'chain': unknown chain {p.chain!r}; configured chains: "
                f"{', '.join(sorted(chains)) or '(none)'}"
            )
            continue
        members: list[WalletConfig] = []
        bad = False
        for ref in p.wallets:
            member = _resolve(ref, p.chain, by_name, addresses)
            if isinstance(member, str):
                problems.append(f"{where}: field 'wallets': {member}")
                bad = True
            else:
                members.append(member)
        if bad:
            continue
        member_chains = sorted({w.chain for w in members})
        chain = p.chain or (member_chains[0] if len(member_chains) == 1 else None)
        if chain is None:
            problems.append(
                f"{where}: field 'chain': its wallets are on chains {member_chains}; set "
                "'chain' to its home chain, the one whose days hold its snapshots and risk"
            )
            continue
        if chain not in member_chains:
            problems.append(
                f"{where}: field 'chain': home chain {chain!r} holds none of its wallets "
                f"(they are on {member_chains})"
            )
            continue
        pairs = tuple(dict.fromkeys((w.chain, w.address) for w in members))
        if len(pairs) != len(p.wallets):
            problems.append(f"{where}: field 'wallets': a wallet is listed twice")
            continue
        seen_ids.add(p.id)
        members_of[p.id] = pairs
        resolved = tuple(dict.fromkeys(a for _, a in pairs))
        portfolios.append(p.model_copy(update={"chain": chain, "wallets": resolved}))

    alerts: list[AlertConfig] = []
    alert_names: set[str] = set()
    for i, entry in enumerate(_entries(raw, "alerts", path)):
        label = _label(entry, "name", i)
        where = f"{path}: alerts[{i}] {label!r}"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a mapping, got {entry!r}")
            continue
        try:
            a = AlertConfig.model_validate(dict(entry))
        except ValidationError as e:
            problems.append(_errors(path, "alerts", i, label, e))
            continue
        if a.name in alert_names:
            problems.append(f"{where}: field 'name': duplicate alert name {a.name!r}")
            continue
        alert_names.add(a.name)
        alerts.append(a)

    risk = RiskSettings()
    if raw.get("risk") is not None:
        if not isinstance(raw["risk"], Mapping):
            problems.append(f"{path}: 'risk:' must be a mapping (min_observations: {{30: 20}})")
        else:
            try:
                risk = RiskSettings.model_validate(dict(raw["risk"]))
            except ValidationError as e:
                for err in e.errors():
                    field = ".".join(str(p) for p in err["loc"])
                    msg = err["msg"].removeprefix("Value error, ")
                    problems.append(f"{path}: risk: field {field!r}: {msg}")

    if problems:
        raise ConfigError("\n".join(problems))
    return PortfolioBook(
        wallets=tuple(wallets),
        portfolios=tuple(portfolios),
        alerts=tuple(alerts),
        risk=risk,
        members=members_of,
    )


def _resolve(
    ref: str,
    chain: str | None,
    by_name: Mapping[str, WalletConfig],
    by_address: Mapping[str, Sequence[WalletConfig]],
) -> WalletConfig | str:
    if ref in by_name:
        return by_name[ref]
    try:
        address = normalize_address(ref)
    except ValueError:
        return f"unknown wallet {ref!r} (neither a wallet name nor an address)"
    every = list(by_address.get(address, ()))
    # on the home chain when it has that address, else the one chain that has it
    candidates = [w for w in every if w.chain == chain] or every
    if not candidates:
        return f"address {address} is not a wallet of the 'wallets' list"
    if len(candidates) > 1:
        return (
            f"address {address} is a wallet on several chains "
            f"({', '.join(sorted(w.chain for w in candidates))}); refer to it by name"
            + ("" if chain else " or set the portfolio's 'chain'")
        )
    return candidates[0]


def load_portfolios(
    chains: Mapping[str, ChainConfig], path: str | Path | None = None
) -> PortfolioBook:
    """Read and validate portfolios.yaml (PORTFOLIOS_CONFIG, else config/portfolios.yaml).

    A missing file is an error naming the path, never an empty book: a typo in
    PORTFOLIOS_CONFIG would otherwise empty the catalog and write empty balances. Tracking
    nothing is said explicitly, with a file whose `wallets:` list is empty."""
    p = Path(path) if path is not None else portfolios_config_path()
    try:
        text = p.read_text()
    except FileNotFoundError:
        source = "PORTFOLIOS_CONFIG" if os.environ.get("PORTFOLIOS_CONFIG") else "the default"
        raise ConfigError(
            f"{p}: no such file ({source}); to track no wallets, give a file with 'wallets: []'"
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a portfolios.yaml file") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    return parse_portfolios(raw, chains, path=p)
