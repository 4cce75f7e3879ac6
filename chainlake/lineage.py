"""What an analytics row was computed from: its lineage.

Every `analytics/portfolio_snapshots` and `analytics/risk_metrics` row carries the Delta table
versions of the inputs behind it (`balances_version`, `prices_version`,
`token_transfers_version`, `native_transfers_version`) and the block range of its chain-day
(`first_block`, `last_block`). The assets read each table's version once before reading it and
then read *at* that version, so the recorded version is exactly what was read; `chainlake
explain` reads the same versions back by time travel (`chainlake.explain`).

A lineage is also written as one short text, `balances=3,prices=5,token_transfers=2,
native_transfers=2,blocks=17-32`, which the materialisation's metadata shows per chain-day and
`chainlake explain --lineage` takes back: a row replaced by a later re-materialisation can
still be explained from the text its materialisation recorded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from chainlake.config import ChainConfig
from chainlake.lake import DeltaStore
from chainlake.state import cached_day_range

# lineage column -> the Delta table whose version it records
VERSION_COLUMNS: dict[str, str] = {
    "balances_version": "balances",
    "prices_version": "token_prices",
    "token_transfers_version": "token_transfers",
    "native_transfers_version": "native_transfers",
}
BLOCK_COLUMNS = ("first_block", "last_block")
LINEAGE_COLUMNS = (*VERSION_COLUMNS, *BLOCK_COLUMNS)
# the short names of the lineage text
_TEXT_NAMES = {
    "balances_version": "balances",
    "prices_version": "prices",
    "token_transfers_version": "token_transfers",
    "native_transfers_version": "native_transfers",
}


@dataclass(frozen=True)
class Lineage:
    """The Delta versions read and the block range of one chain-day. A version is None when
    the table did not exist when read; the block range None for a day without blocks."""

    balances_version: int | None = None
    prices_version: int | None = None
    token_transfers_version: int | None = None
    native_transfers_version: int | None = None
    first_block: int | None = None
    last_block: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Lineage:
        """The lineage columns of a row (a dict or a named row)."""
        return cls(**{c: None if row.get(c) is None else int(row[c]) for c in LINEAGE_COLUMNS})

    def as_row(self) -> dict[str, int | None]:
        """The lineage columns, by name."""
        return asdict(self)

    def versions(self) -> dict[str, int | None]:
        """Delta table name -> the version read."""
        return {table: getattr(self, column) for column, table in VERSION_COLUMNS.items()}

    def to_text(self) -> str:
        """`balances=3,prices=5,token_transfers=2,native_transfers=2,blocks=17-32` (a version
        or range not recorded is `-`)."""
        parts = [
            f"{name}={'-' if getattr(self, column) is None else getattr(self, column)}"
            for column, name in _TEXT_NAMES.items()
        ]
        blocks = (
            "-"
            if self.first_block is None or self.last_block is None
            else f"{self.first_block}-{self.last_block}"
        )
        return ",".join([*parts, f"blocks={blocks}"])

    @classmethod
    def parse(cls, text: str) -> Lineage:
        """The lineage of a `to_text` string.

        Raises:
            ValueError: A part is missing, unknown, repeated or not a number; the message
                names it and the form expected.
        """
        form = "balances=N,prices=N,token_transfers=N,native_transfers=N,blocks=FIRST-LAST"
        by_name = {name: column for column, name in _TEXT_NAMES.items()}
        values: dict[str, int | None] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = part.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or (name not in by_name and name != "blocks"):
                raise ValueError(f"lineage part {part!r} is not one of {form}")
            if (by_name[name] if name != "blocks" else "first_block") in values:
                raise ValueError(f"lineage part {name!r} is given twice")
            try:
                if name == "blocks":
                    first, dash, last = value.partition("-")
                    if value == "-":
                        values["first_block"] = values["last_block"] = None
                        continue
                    if not dash:
                        raise ValueError
                    values["first_block"], values["last_block"] = int(first), int(last)
                else:
                    values[by_name[name]] = None if value == "-" else int(value)
            except ValueError:
                raise ValueError(f"lineage part {part!r}: not a number (form: {form})") from None
        missing = [n for c, n in _TEXT_NAMES.items() if c not in values]
        missing += [] if "first_block" in values else ["blocks"]
        if missing:
            raise ValueError(f"lineage {text!r} lacks {', '.join(missing)} (form: {form})")
        return cls(**values)


def read_versions(store: DeltaStore, chain: ChainConfig) -> dict[str, int | None]:
    """The current version of each input table of the analytics (None: absent), read once
    before reading them so each read can be made at that version."""
    return {table: store.current_version(chain, table) for table in VERSION_COLUMNS.values()}


def day_block_range(
    store: DeltaStore, chain: ChainConfig, day: dt.date
) -> tuple[int | None, int | None]:
    """The block range of a chain-day: remembered for a closed day (`_state/day_ranges`), else
    the day's blocks in raw/blocks (the open day, up to its newest); (None, None) without."""
    remembered = cached_day_range(store, chain, day)
    if remembered is not None:
        return remembered.first_block, remembered.last_block
    lf = store.scan(chain, "blocks")
    if lf is None:
        return None, None
    lo, hi = (
        lf.filter(pl.col("date") == day)
        .select(pl.col("block_number").min().alias("lo"), pl.col("block_number").max().alias("hi"))
        .collect()
        .row(0)
    )
    return (None, None) if lo is None else (int(lo), int(hi))


def day_lineage(
    versions: Mapping[str, int | None], blocks: tuple[int | None, int | None]
) -> Lineage:
    """The lineage of a chain-day from the versions read (table -> version) and its blocks."""
    by_table = {table: column for column, table in VERSION_COLUMNS.items()}
    return Lineage(
        **{by_table[t]: v for t, v in versions.items() if t in by_table},
        first_block=blocks[0],
        last_block=blocks[1],
    )


def lineage_frame(days: Mapping[dt.date, Lineage]) -> pl.DataFrame:
    """(date, lineage columns): one row per day, to join onto that day's rows."""
    return pl.DataFrame(
        [{"date": day, **lin.as_row()} for day, lin in sorted(days.items())],
        schema={"date": pl.Date, **dict.fromkeys(LINEAGE_COLUMNS, pl.Int64)},
    )


def with_lineage(frame: pl.DataFrame, lineage: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` with the lineage columns, joined from `lineage` on its other columns (its key:
    `date`, or `portfolio_id, date`); all null without one (a transform run outside an
    asset records nothing it did not read)."""
    frame = frame.drop([c for c in LINEAGE_COLUMNS if c in frame.columns])
    if lineage is None:
        return frame.with_columns(pl.lit(None, pl.Int64).alias(c) for c in LINEAGE_COLUMNS)
    keys = [c for c in lineage.columns if c not in LINEAGE_COLUMNS]
    return frame.join(
        lineage.select(*keys, *(pl.col(c).cast(pl.Int64) for c in LINEAGE_COLUMNS)),
        on=keys,
        how="left",
    )


def lineage_markdown(rows: Iterable[tuple[str, dt.date, Lineage]]) -> str:
    """A Markdown table of the versions read and the block range per chain-day, with the
    `chainlake explain --lineage` text of each (what the UI shows under a materialisation)."""

    def cell(v: int | None) -> str:
        return "–" if v is None else str(v)

    lines = [
        "| chain | date | balances | token_prices | token_transfers | native_transfers "
        "| blocks | `--lineage` |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for chain, day, lin in rows:
        blocks = (
            "–"
            if lin.first_block is None or lin.last_block is None
            else f"{lin.first_block}–{lin.last_block}"
        )
        versions = " | ".join(cell(v) for v in lin.versions().values())
        lines.append(f"| {chain} | {day} | {versions} | {blocks} | `{lin.to_text()}` |")
    return "\n".join(lines)


def linked_text(linked: Mapping[str, Lineage]) -> str | None:
    """`beta: balances=3,…,blocks=1-8; gamma: …`: the lineage of the other chains' days a
    multi-chain portfolio's row read, by chain name; None without any."""
    return "; ".join(f"{c}: {lin.to_text()}" for c, lin in sorted(linked.items())) or None


def parse_linked(text: str | None) -> dict[str, Lineage]:
    """The chains and lineages of a `linked_text` string (empty for None or "").

    Raises:
        ValueError: A part is not `<chain>: <lineage>` or its lineage does not parse.
    """
    out: dict[str, Lineage] = {}
    for part in (p.strip() for p in (text or "").split(";") if p.strip()):
        chain, sep, rest = part.partition(":")
        if not sep or not chain.strip():
            raise ValueError(f"linked lineage part {part!r} is not '<chain>: <lineage>'")
        out[chain.strip()] = Lineage.parse(rest)
    return out
