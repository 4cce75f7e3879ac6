"""Shared fixtures.

Local chain (``tools.devnet``), both session-scoped and started only when a test asks:

- ``anvil``: a fresh anvil node (genesis ``DEVNET_START`` at midnight UTC, 20 dev accounts,
  mining on demand); tests that use it share it for the session, so add blocks, don't assume
  an empty chain.
- ``devnet``: another node holding a small generated chain (3 days × 20 blocks × 10 txs,
  seed 7) and its ``DevnetManifest``. Treat it as read-only.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tools.devnet.anvil import Anvil
    from tools.devnet.manifest import DevnetManifest

# The operator's settings for trigger actions (README "Triggers"), as a deployment whose
# receivers run on this machine would set them: the tests' receivers listen on 127.0.0.1 and
# their triggers name the receivers' URLs in these variables. Set before anything reads them
# (Dagster runs started by the tests inherit them); the tests of the refusals unset them.
os.environ.setdefault("CHAINLAKE_ACTION_ALLOW_HOSTS", "127.0.0.1,::1")
os.environ.setdefault("CHAINLAKE_ACTION_SECRETS", "HOOK,HOOK_URL,TG_TOKEN")

# A shell that starts the suite in the background can leave SIGINT/SIGTERM ignored, and an
# ignored signal stays ignored across exec: every process a test starts would then outlive its
# terminate() (a multiprocessing pool's `with` block waited forever on a worker it had sent
# SIGTERM). The suite's processes get the default dispositions back.
for _sig, _default in (
    (signal.SIGINT, signal.default_int_handler),
    (signal.SIGTERM, signal.SIG_DFL),
):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, _default)

DEVNET_START = dt.date(2025, 1, 1)
DEVNET_DAYS = 3
DEVNET_BLOCKS_PER_DAY = 20
DEVNET_TXS_PER_BLOCK = 10
DEVNET_SEED = 7


@dataclass(frozen=True)
class Devnet:
    node: Anvil
    manifest: DevnetManifest

    @property
    def rpc_url(self) -> str:
        return self.node.rpc_url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `slow` first, the rest in their usual order. `make test` runs two
    pytest-xdist workers that take a module at a time in this order (the Makefile turns off
    xdist's own reordering, which puts modules with few tests last): the long modules start
    at once and the short ones fill in around them, instead of a five-minute module starting
    near the end and running alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    from tools.devnet.anvil import Anvil

    with Anvil(genesis=DEVNET_START) as node:
        yield node


@pytest.fixture(scope="session")
def devnet() -> Iterator[Devnet]:
    from tools.devnet.anvil import Anvil
    from tools.devnet.generator import generate

    with Anvil(genesis=DEVNET_START) as node:
        manifest = generate(
            node.rpc_url,
            start=DEVNET_START,
            days=DEVNET_DAYS,
            blocks_per_day=DEVNET_BLOCKS_PER_DAY,
            txs_per_block=DEVNET_TXS_PER_BLOCK,
            seed=DEVNET_SEED,
        )
        yield Devnet(node=node, manifest=manifest)


def _defs_state_storage_is_reset_in_order_only() -> None:
    """Dagster 1.13.27 keeps "the current defs-state storage" in a context variable, set by
    `DagsterInstance.__enter__` through a context manager held in the instance's ExitStack, whose
    exit sets the variable back to what it held before. Two ways that exit comes late, at
    whatever moment the garbage collector reaches the abandoned stack, and then puts back the
    storage of an older instance that no longer exists:

    - `DagsterInstance.__exit__` disposes the instance without closing that stack;
    - an evaluation context made by `build_schedule_context`/`build_sensor_context` opens its
      instance on first use and is rarely closed by a test.

    The next `materialize()` anywhere in the process then fails with "Attempted to resolve
    undefined DagsterInstance weakref" or opens a deleted runs.db (seen in clean CI runs, in a
    module fixture after test_schedules.py). Here an instance's exit closes its stack at once,
    and a context manager closed by the garbage collector leaves the variable alone."""
    from contextlib import contextmanager

    from dagster import DagsterInstance
    from dagster._core.storage.defs_state import base

    dispose_on_exit = DagsterInstance.__exit__

    def exit_and_close(self: DagsterInstance, *exc: object) -> None:
        try:
            dispose_on_exit(self, *exc)  # type: ignore[arg-type]
        finally:
            stack = getattr(self, "_exit_stack", None)
            if stack is not None:
                stack.close()

    @contextmanager
    def set_defs_state_storage(storage: object) -> Iterator[None]:
        token = base._current_storage.set(storage)  # type: ignore[arg-type]
        collected = False
        try:
            yield
        except GeneratorExit:
            collected = True  # closed by the garbage collector, out of order
            raise
        finally:
            if not collected:
                try:
                    base._current_storage.reset(token)
                except ValueError:
                    base._current_storage.set(None)

    DagsterInstance.__exit__ = exit_and_close  # type: ignore[method-assign,assignment]
    base.set_defs_state_storage = set_defs_state_storage  # type: ignore[assignment]


_defs_state_storage_is_reset_in_order_only()


@pytest.fixture(autouse=True)
def _fresh_defs_state_storage() -> Iterator[None]:
    """Each test starts and ends with no Dagster defs-state storage (see
    `_defs_state_storage_is_reset_in_order_only`)."""
    from dagster._core.storage.defs_state import base

    # Set, not restored: restoring the value from before the test could bring back a storage
    # another test leaked (seen once in a full run: a later materialize() opened a deleted
    # instance's runs.db). Nothing is meant to survive a test boundary here.
    base._current_storage.set(None)
    yield
    base._current_storage.set(None)
