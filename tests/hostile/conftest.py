"""The hostile-node suite's chain (see helpers.py): read-only, shared by a module's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chain_helpers import Anvil, Filler, anvil_node, day_ts
from tests.hostile.helpers import D1, D2, D3


@pytest.fixture(scope="module")
def node() -> Iterator[Anvil]:
    with anvil_node(genesis_ts=day_ts(D1)) as n:
        f = Filler(n)
        f.deploy_emitter(day_ts(D1, 60))  # block 1
        for i in range(4):  # blocks 2..5
            f.block(day_ts(D1, 3_600 + i * 600), transfers=2, logs=1, salt=i)
        for i in range(3):  # blocks 6..8
            f.block(day_ts(D2, 3_600 + i * 600), transfers=1, logs=2, salt=10 + i)
        f.block(day_ts(D3, 60), transfers=1, logs=0)  # block 9 closes D2
        yield n
