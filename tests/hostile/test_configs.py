"""Hostile configuration files: each is refused at load with one or two lines naming the file,
the chain and the field, before anything reads a node or writes a table.

A case is one file in `tests/hostile/configs/chains/`, whose first line is
`# expect: <text the error must contain>`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chainlake.config import ConfigError, load_chains
from chainlake.portfolios import load_portfolios

CASES = Path(__file__).parent / "configs"
CHAIN_CASES = sorted((CASES / "chains").glob("*.yaml"))


def _expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    return first.removeprefix("# expect: ")


def test_there_are_chain_cases() -> None:
    assert len(CHAIN_CASES) >= 5


@pytest.mark.parametrize("case", CHAIN_CASES, ids=lambda p: p.stem)
def test_hostile_chains_yaml_is_refused_by_name(case: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_chains(case)
    text = str(err.value)
    assert str(case) in text, text
    assert _expected(case) in text, text
    assert len(text.splitlines()) <= 2, text


def test_a_missing_portfolios_file_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chains = load_chains(Path("config/chains.yaml"))
    typo = tmp_path / "portfolio.yml"
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(typo))
    with pytest.raises(ConfigError, match="no such file") as err:
        load_portfolios(chains)
    assert str(typo) in str(err.value) and "PORTFOLIOS_CONFIG" in str(err.value)
    with pytest.raises(ConfigError, match="is a directory"):
        load_portfolios(chains, tmp_path)


def test_tracking_nothing_is_said_explicitly(tmp_path: Path) -> None:
    chains = load_chains(Path("config/chains.yaml"))
    empty = tmp_path / "portfolios.yaml"
    empty.write_text("wallets: []\nportfolios: []\n")
    book = load_portfolios(chains, empty)
    assert book.tracked_wallets("devnet") == []


def test_a_portfolios_typo_leaves_the_catalog_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run fails naming the path; the catalog keeps its wallets (it was emptied before)."""
    import dagster as dg

    from assets.serving.catalog import catalog
    from resources.duckdb import ServingDuckDB

    monkeypatch.setenv("CHAINS_CONFIG", "config/chains.yaml")
    monkeypatch.setenv("PORTFOLIOS_CONFIG", "config/portfolios.yaml")
    duck = ServingDuckDB(database=str(tmp_path / "serving.duckdb"))
    assert dg.materialize([catalog], resources={"duckdb": duck}).success
    with duck.reader() as conn:
        before = conn.execute("SELECT count(*) FROM wallets").fetchone()
    assert before is not None and before[0] > 0

    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(tmp_path / "portfolio.yml"))
    result = dg.materialize([catalog], resources={"duckdb": duck}, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "portfolio.yml: no such file" in str(failure.step_failure_data.error)
    with duck.reader() as conn:
        assert conn.execute("SELECT count(*) FROM wallets").fetchone() == before
