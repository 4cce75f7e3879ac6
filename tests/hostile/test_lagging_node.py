"""A node that is behind is not a reorg, and a reorg deeper than the chain's
`max_reorg_depth` is not repaired without the operator's say-so: in both cases every stored
day stays as it was, and the run fails with a message saying what to do.

Each test has its own anvil: three days are materialised from the node itself, then the
next run sees a lagging node (a proxy capping its head) or a deep reorg (snapshot, revert,
other blocks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from tests.chain_helpers import Anvil, Filler, anvil_node, day_ts
from tests.hostile.helpers import (
    RAW,
    assert_no_secret,
    event_text,
    redacted_url,
    retried,
    run_raw,
    secret_url,
    step_failure,
    write_chain,
)
from tests.hostile.proxy import HostileProxy

pytestmark = pytest.mark.integration

E1 = dt.date(2026, 11, 20)
E2, E3, E4, E5 = (E1 + dt.timedelta(days=i) for i in range(1, 5))


@pytest.fixture
def node() -> Iterator[Anvil]:
    with anvil_node(genesis_ts=day_ts(E1)) as n:
        yield n


def _fill(f: Filler) -> None:
    """E1: blocks 0..5, E2: 6..9, E3: 10..13, E4: 14..15, closed by 16 in E5."""
    f.deploy_emitter(day_ts(E1, 60))
    for day, count in ((E1, 4), (E2, 4), (E3, 4), (E4, 2)):
        for i in range(count):
            f.block(day_ts(day, 3_600 + i * 600), transfers=1 + i % 2, logs=1, salt=i)
    f.block(day_ts(E5, 60), transfers=1, logs=0)


def _per_day(root: Path) -> dict[str, dict[dt.date, int]]:
    """Rows per day of each raw table."""
    out = {}
    for t in RAW:
        df = pl.read_delta(str(root / "devnet" / "local" / t))
        out[t] = dict(df.group_by("date").len().iter_rows())
    return out


def _materialize(root: Path, *days: dt.date) -> None:
    for day in days:
        result = run_raw(root, day)
        assert result.success, event_text(result)[-3000:]
        assert all(c.passed for c in result.get_asset_check_evaluations())


def test_lagging_node_deletes_nothing_and_the_next_url_serves(
    node: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _fill(Filler(node))
    root = tmp_path / "delta"
    monkeypatch.setenv("CHAINS_CONFIG", str(write_chain(tmp_path / "c.yaml", [node.url])))
    _materialize(root, E1, E2, E3)
    before = _per_day(root)
    assert before["blocks"] == {E1: 6, E2: 4, E3: 4}

    with HostileProxy(node.url, head=7) as lagging:  # its head is in E2; the checkpoint is 13
        cfg = write_chain(tmp_path / "lag.yaml", [secret_url(lagging.port)])
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        result = run_raw(root, E4)
        assert not result.success
        cls, message, text = step_failure(result)
        for fragment in (redacted_url(lagging.port), "behind", "head is block 7", "block 13"):
            assert fragment in message, message
        assert cls == "Failure" and not retried(result)
        assert _per_day(root) == before
        assert not (root / "devnet" / "local" / "_state" / "reorgs").exists()
        assert_no_secret(text, event_text(result), caplog.text)

        # with a second URL that is up to date, the run reads from it and succeeds
        cfg = write_chain(tmp_path / "two.yaml", [secret_url(lagging.port), node.url])
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        _materialize(root, E4)
    after = _per_day(root)
    assert {t: {d: n for d, n in c.items() if d != E4} for t, c in after.items()} == before
    assert after["blocks"][E4] == 2
    assert not (root / "devnet" / "local" / "_state" / "reorgs").exists()


def test_reorg_deeper_than_max_reorg_depth_changes_nothing_until_allowed(
    node: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Filler(node)
    f.deploy_emitter(day_ts(E1, 60))
    for i in range(4):  # blocks 2..5
        f.block(day_ts(E1, 3_600 + i * 600), salt=i)
    snap = node.rpc("evm_snapshot")
    for i in range(6):  # blocks 6..11, abandoned below
        f.block(day_ts(E2, 3_600 + i * 600), salt=10 + i)
    f.block(day_ts(E3, 60), transfers=1, logs=0)  # block 12 closes E2
    root = tmp_path / "delta"
    cfg = write_chain(tmp_path / "c.yaml", [node.url], max_reorg_depth=3)
    monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
    _materialize(root, E1, E2)
    tables = {t: pl.read_delta(str(root / "devnet" / "local" / t)) for t in RAW}

    # another chain from block 5 on: blocks 6..11 differ, 7 blocks deep from the checkpoint (11)
    assert node.rpc("evm_revert", [snap]) is True
    f.nonce = int(node.rpc("eth_getTransactionCount", [f.sender, "pending"]), 16)
    for i in range(7):
        f.block(day_ts(E2, 3_700 + i * 600), transfers=1, logs=2, salt=50 + i)
    f.block(day_ts(E3, 90), transfers=1, logs=0)

    result = run_raw(root, E3)
    assert not result.success
    cls, message, _ = step_failure(result)
    for fragment in ("max_reorg_depth", "3", "checkpoint", "chainlake/allow_deep_reorg"):
        assert fragment in message, message
    assert cls == "Failure" and not retried(result)
    for t in RAW:
        assert pl.read_delta(str(root / "devnet" / "local" / t)).equals(tables[t]), t
    assert not (root / "devnet" / "local" / "_state" / "reorgs").exists()

    # the operator's deliberate repair: the run tag the message names
    result = run_raw(root, E3, tags={"chainlake/allow_deep_reorg": "true"})
    assert result.success, event_text(result)[-3000:]
    audit = pl.read_delta(str(root / "devnet" / "local" / "_state" / "reorgs"))
    assert sorted(audit["block_number"].to_list()) == list(range(6, 12))
    blocks = pl.read_delta(str(root / "devnet" / "local" / "blocks"))
    hashes = dict(blocks.select("block_number", "block_hash").iter_rows())
    for n in range(6, 13):
        assert hashes[n] == node.rpc("eth_getBlockByNumber", [hex(n), False])["hash"]
