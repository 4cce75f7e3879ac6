"""What the devnet generator produced: a frozen, JSON-serialisable description of the chain.

Addresses are lowercase hex. ``data/devnet/manifest.json`` holds ``DevnetManifest.to_json()``,
the devnet's own record; the pipelines do not read it. Its ``registries`` section (identity /
reputation / validation -> address) goes into the generated chains.yaml as the chain's
``contracts:`` (``tools.devnet.configs.chain_entry``), which is what ``events/chain_events`` reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PRICE_DECIMALS = 8


@dataclass(frozen=True)
class TokenInfo:
    """A token deployed on the devnet, with its price feed."""

    symbol: str
    address: str
    decimals: int
    price_feed: str
    price_feed_decimals: int = PRICE_DECIMALS


@dataclass(frozen=True)
class WalletInfo:
    """A dev account the generator uses, by name and role; `tracked` ones go into
    portfolios.yaml."""

    name: str
    address: str
    tracked: bool
    role: str


@dataclass(frozen=True)
class PortfolioInfo:
    """A portfolio of the generated portfolios.yaml, by wallet names."""

    name: str
    description: str
    wallets: tuple[str, ...]  # wallet names


@dataclass(frozen=True)
class DayBlocks:
    """The blocks generated for one UTC day."""

    date: dt.date
    first_block: int
    last_block: int

    @property
    def count(self) -> int:
        """The number of blocks of the day."""
        return self.last_block - self.first_block + 1


@dataclass(frozen=True)
class DevnetManifest:
    """What was generated and where it lives; JSON round-trips with ``to_dict``/``from_dict``."""

    rpc_url: str
    chain_id: int
    seed: int
    start_date: dt.date
    days: int
    blocks_per_day: int
    txs_per_block: int
    genesis_timestamp: int
    head_block: int
    day_blocks: tuple[DayBlocks, ...]
    native_symbol: str
    native_price_feed: str  # ETH/USD
    tokens: tuple[TokenInfo, ...]
    registries: Mapping[str, str]  # identity / reputation / validation -> address
    contracts: Mapping[str, str]  # factory, faulty
    wallets: tuple[WalletInfo, ...]
    portfolios: tuple[PortfolioInfo, ...]
    stats: Mapping[str, int] = field(default_factory=dict)  # transactions by kind, "failed"

    @property
    def end_date(self) -> dt.date:
        """The last generated day."""
        return self.start_date + dt.timedelta(days=self.days - 1)

    @property
    def tracked_wallets(self) -> tuple[WalletInfo, ...]:
        """The wallets that go into portfolios.yaml."""
        return tuple(w for w in self.wallets if w.tracked)

    @property
    def price_feeds(self) -> dict[str, str]:
        """Price-feed address by symbol, ETH included."""
        return {self.native_symbol: self.native_price_feed} | {
            t.symbol: t.price_feed for t in self.tokens
        }

    def blocks_of(self, day: dt.date) -> DayBlocks:
        """The blocks of `day`; KeyError if it was not generated."""
        for d in self.day_blocks:
            if d.date == day:
                return d
        raise KeyError(f"{day} is not a generated day ({self.start_date} .. {self.end_date})")

    def wallet(self, name: str) -> WalletInfo:
        """The wallet named `name`; KeyError if there is none."""
        for w in self.wallets:
            if w.name == name:
                return w
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON values (dates as ISO text)."""

        def convert(v: Any) -> Any:
            if isinstance(v, dt.date):
                return v.isoformat()
            if dataclasses.is_dataclass(v) and not isinstance(v, type):
                return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
            if isinstance(v, Mapping):
                return {k: convert(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [convert(x) for x in v]
            return v

        return convert(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DevnetManifest:
        """The manifest from `to_dict`'s output."""
        return cls(
            rpc_url=raw["rpc_url"],
            chain_id=int(raw["chain_id"]),
            seed=int(raw["seed"]),
            start_date=dt.date.fromisoformat(raw["start_date"]),
            days=int(raw["days"]),
            blocks_per_day=int(raw["blocks_per_day"]),
            txs_per_block=int(raw["txs_per_block"]),
            genesis_timestamp=int(raw["genesis_timestamp"]),
            head_block=int(raw["head_block"]),
            day_blocks=tuple(
                DayBlocks(dt.date.fromisoformat(d["date"]), d["first_block"], d["last_block"])
                for d in raw["day_blocks"]
            ),
            native_symbol=raw["native_symbol"],
            native_price_feed=raw["native_price_feed"],
            tokens=tuple(TokenInfo(**t) for t in raw["tokens"]),
            registries=dict(raw["registries"]),
            contracts=dict(raw["contracts"]),
            wallets=tuple(WalletInfo(**w) for w in raw["wallets"]),
            portfolios=tuple(
                PortfolioInfo(p["name"], p["description"], tuple(p["wallets"]))
                for p in raw["portfolios"]
            ),
            stats=dict(raw.get("stats", {})),
        )

    def to_json(self) -> str:
        """The manifest as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DevnetManifest:
        """The manifest from `to_json`'s output."""
        return cls.from_dict(json.loads(text))
