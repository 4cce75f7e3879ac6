"""Hostile node answers, one case file each in `nodes/`: the raw asset runs one day through a
proxy that answers like that node (`proxy.HostileProxy`), at a URL carrying credentials.

Every case must end the same way: the run fails at once (a data error, not retried) with an
error naming what was wrong (the fragments the case expects), nothing is written to Delta,
and no credential of the URL shows in the error, the run's events or the logs.

A case file (JSON):

- `about`: what the node does.
- `answer`: a rule of `HostileProxy` (method, then result / patch / patch_transactions /
  body_bytes), or `head`: the node's head capped at that block.
- `day` (optional): "D1" (default) or "D2", the partition to run.
- `chain` (optional): fields of the chains.yaml entry to override (chain_id, confirmations).
- `rpc` (optional): options of the RpcResource (max_response_bytes, ...).
- `expect`: fragments the error message must contain; `{url}` stands for the proxy's URL as
  chainlake may show it (credentials redacted).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.chain_helpers import Anvil
from tests.hostile.helpers import (
    D1,
    D2,
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

CASES = sorted((Path(__file__).parent / "nodes").glob("*.json"))


def _case(path: Path) -> dict[str, Any]:
    case = json.loads(path.read_text())
    assert {"about", "expect"} <= set(case) and ("answer" in case or "head" in case), path
    return case


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_hostile_answer_fails_clearly_and_writes_nothing(
    path: Path,
    node: Anvil,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = _case(path)
    caplog.set_level(logging.DEBUG)
    rules = [case["answer"]] if "answer" in case else []
    with HostileProxy(node.url, head=case.get("head"), rules=rules) as proxy:
        cfg = write_chain(
            tmp_path / "chains.yaml", [secret_url(proxy.port)], **case.get("chain", {})
        )
        monkeypatch.setenv("CHAINS_CONFIG", str(cfg))
        root = tmp_path / "delta"
        result = run_raw(root, {"D1": D1, "D2": D2}[case.get("day", "D1")], rpc=case.get("rpc"))

    assert not result.success
    cls, message, text = step_failure(result)
    for fragment in case["expect"]:
        fragment = fragment.replace("{url}", redacted_url(proxy.port))
        assert fragment in message, f"{path.name}: {fragment!r} not in: {message}"
    assert cls == "Failure" and not retried(result), f"{path.name}: retried ({cls}): {message}"
    assert not any((root / "devnet" / "local" / t).exists() for t in RAW), "written"
    assert_no_secret(text, event_text(result), caplog.text)
