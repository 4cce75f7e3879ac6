"""events/analytics_alerts with an alert that fails when run: it fails alone, reported in the
materialisation's metadata and the failed `expressions_valid` check; the valid alert fires."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml
from test_triggers_assets import DAY, HOT, TREASURY, setup  # noqa: F401  (setup: a fixture)

from assets.events.chain_events import analytics_alerts
from chainlake.events import db

pytestmark = pytest.mark.integration


def test_a_failing_alert_fails_alone(
    setup: dict,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    portfolios = tmp_path / "alerts-portfolios.yaml"
    portfolios.write_text(
        yaml.safe_dump(
            {
                "wallets": [
                    {"name": "treasury", "address": TREASURY, "chain": "devnet"},
                    {"name": "hot", "address": HOT, "chain": "devnet"},
                ],
                "alerts": [
                    # every load check passes; evaluating it fails (text compared with a number)
                    {"name": "Broken", "query": "q",
                     "expression": 'wallet_balances.filter(pl.col("wallet_name") > 5)'},
                    {"name": "Low treasury", "query": "treasury below 10 ETH",
                     "expression": 'wallet_balances.filter((pl.col("wallet_name") == "treasury") '
                                   '& (pl.col("balance") < 10))'},
                ],
            }
        )
    )  # fmt: skip
    monkeypatch.setenv("PORTFOLIOS_CONFIG", str(portfolios))
    result = dg.materialize(
        [analytics_alerts],
        partition_key=f"devnet|{DAY.isoformat()}",
        resources=setup["resources"],
        raise_on_error=False,
    )
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == ("expressions_valid", False)
    assert "cannot compare string with numeric" in check.metadata["Broken"].value
    (mat,) = result.get_asset_materialization_events()
    meta = mat.materialization.metadata
    assert (meta["alerts_failed"].value, meta["fired"].value) == (1, 1)
    with db.connection(setup["url"]) as c:
        fired = c.execute("SELECT data FROM events WHERE registry = 'analytics'").fetchall()
    assert [r["data"]["alert_name"] for r in fired] == ["Low treasury"]
