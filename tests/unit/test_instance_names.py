"""An instance of one's own: the names of a checkout's databases (chainlake/instance_names.py),
where the resources, the CLI, `python -m chainlake.instance` and the Makefile get them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import click
import pytest

from chainlake import instance, instance_names
from chainlake.instance_names import InstanceNameError

ROOT = Path(__file__).resolve().parents[2]
# A name PostgreSQL takes unquoted (and folds to itself): what `psql -d NAME` expects.
UNQUOTED_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")
HOSTILE = [
    "x; DROP DATABASE postgres",
    'a"b',
    "Alice",  # PostgreSQL folds unquoted names to lowercase: `alice` would be another database
    "a-b",
    "../etc",
    "a b",
    " alice",
    "alice\n",
    "1abc",
    "café",
    "a" * (instance_names.MAX_NAME_LENGTH + 1),
    "x" * 10_000,
    "$(rm -rf ~)",
]


def _database_names(n: instance_names.InstanceNames) -> list[str]:
    return [n.dagster_database, n.events_database]


def test_two_checkouts_get_different_names_and_one_checkout_always_the_same(
    tmp_path: Path,
) -> None:
    # two clones with the same folder name, as `git clone` makes them
    a = tmp_path / "alice" / "chainlake"
    b = tmp_path / "bob" / "chainlake"
    for p in (a, b):
        p.mkdir(parents=True)
    name_a, name_b = instance_names.default_name(a), instance_names.default_name(b)
    assert name_a != name_b
    assert name_a.startswith("chainlake_chainlake_") and name_b.startswith("chainlake_chainlake_")
    # the same checkout, however it is reached, keeps its databases
    assert instance_names.default_name(a) == name_a
    (tmp_path / "link").symlink_to(a)
    assert instance_names.default_name(tmp_path / "link") == name_a
    assert instance_names.names({}, checkout=a) != instance_names.names({}, checkout=b)
    assert set(_database_names(instance_names.names({}, checkout=a))).isdisjoint(
        _database_names(instance_names.names({}, checkout=b))
    )


@pytest.mark.parametrize(
    "folder",
    ["main", "Chain Lake (copy)", "ünïcödé-ποτάμι", "...", "x" * 200, "a.b-c_d", "2026"],
)
def test_default_names_are_unquoted_identifiers_within_63_bytes(
    tmp_path: Path, folder: str
) -> None:
    checkout = tmp_path / folder
    checkout.mkdir()
    n = instance_names.names({}, checkout=checkout)
    assert UNQUOTED_IDENTIFIER.fullmatch(n.instance), n.instance
    for db_name in _database_names(n):
        assert UNQUOTED_IDENTIFIER.fullmatch(db_name), db_name
        assert len(db_name.encode()) <= instance_names.MAX_IDENTIFIER_BYTES, db_name
    # the folder's name is there when it has anything usable, to tell instances apart by eye
    slug = re.sub(r"[^a-z0-9]+", "_", folder.lower()).strip("_")
    if slug:
        assert n.instance.startswith(f"chainlake_{slug[:20]}")


def test_the_variable_wins_over_the_checkout(tmp_path: Path) -> None:
    n = instance_names.names({"CHAINLAKE_INSTANCE": "alice"}, checkout=tmp_path)
    assert (n.instance, n.dagster_database, n.events_database) == (
        "alice",
        "alice_dagster",
        "alice_events",
    )
    assert n.dagster_url == "postgresql+psycopg2://postgres@127.0.0.1:5432/alice_dagster"
    assert n.events_url == "postgresql://postgres@127.0.0.1:5432/alice_events"
    # empty counts as unset, as for every other variable
    assert instance_names.name({"CHAINLAKE_INSTANCE": ""}, checkout=tmp_path) == (
        instance_names.default_name(tmp_path)
    )


def test_the_longest_accepted_name_still_fits_postgresql() -> None:
    longest = "a" * instance_names.MAX_NAME_LENGTH
    n = instance_names.names({"CHAINLAKE_INSTANCE": longest})
    assert max(len(d.encode()) for d in _database_names(n)) == 63


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(InstanceNameError) as raised:
        instance_names.names({"CHAINLAKE_INSTANCE": value})
    message = str(raised.value)
    assert message.startswith("CHAINLAKE_INSTANCE=")
    assert "lowercase letters, digits and '_'" in message
    assert len(message) < 200 and "\n" not in message


def test_explicit_urls_win_and_need_no_instance_name() -> None:
    # databases of this test's own (never connected to): no fixed name another checkout has
    own = f"chainlake_test_{uuid.uuid4().hex[:8]}"
    env = {
        "CHAINLAKE_INSTANCE": "not a name",  # never looked at: both URLs are given
        "DAGSTER_POSTGRES_URL": f"postgresql+psycopg2://u@db:5432/{own}_dagster",
        "POSTGRES_URL": f"postgresql://u@db:5432/{own}_events",
    }
    assert instance_names.dagster_postgres_url(env) == env["DAGSTER_POSTGRES_URL"]
    assert instance_names.events_postgres_url(env) == env["POSTGRES_URL"]
    only_events = {"CHAINLAKE_INSTANCE": "bob", "POSTGRES_URL": env["POSTGRES_URL"]}
    assert instance_names.events_postgres_url(only_events) == env["POSTGRES_URL"]
    assert instance_names.dagster_postgres_url(only_events).endswith("/bob_dagster")


def test_the_instance_knows_which_urls_are_its_own(tmp_path: Path) -> None:
    own = instance.resolve({"CHAINLAKE_INSTANCE": "carol", "DAGSTER_HOME": str(tmp_path)})
    assert (own.name, own.own_dagster_url, own.own_events_url) == ("carol", True, True)
    assert own.dagster_home == tmp_path.resolve()
    # the Makefile exports the derived Dagster URL: still the instance's own
    exported = instance.resolve(
        {"CHAINLAKE_INSTANCE": "carol", "DAGSTER_POSTGRES_URL": own.dagster_url}
    )
    assert exported.own_dagster_url and exported.dagster_home == instance.DEFAULT_DAGSTER_HOME
    # another database than the instance's (a name of the test's own; never connected to)
    other = f"postgresql://u@prod:5432/chainlake_test_{uuid.uuid4().hex[:8]}_events"
    elsewhere = instance.resolve({"CHAINLAKE_INSTANCE": "carol", "POSTGRES_URL": other})
    assert elsewhere.own_dagster_url and not elsewhere.own_events_url
    # what another terminal evaluates to join the instance
    lines = instance.shell_env(own).splitlines()
    assert lines == [
        "export CHAINLAKE_INSTANCE=carol",
        f"export DAGSTER_HOME={tmp_path.resolve()}",
        "export DAGSTER_POSTGRES_URL=postgresql+psycopg2://postgres@127.0.0.1:5432/carol_dagster",
        "export POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/carol_events",
    ]


def test_the_events_resource_and_the_cli_default_to_the_instances_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli.commands.options import postgres_url
    from resources.postgres import PostgresResource

    monkeypatch.delenv("POSTGRES_URL", raising=False)
    monkeypatch.setenv("CHAINLAKE_INSTANCE", "dave")
    expected = "postgresql://postgres@127.0.0.1:5432/dave_events"
    assert PostgresResource().database_url() == expected
    assert postgres_url(None) == expected
    assert postgres_url("postgresql://x@h/y") == "postgresql://x@h/y"
    # read when used, not when the code loaded
    monkeypatch.setenv("CHAINLAKE_INSTANCE", "erin")
    assert PostgresResource().database_url().endswith("/erin_events")
    monkeypatch.setenv("POSTGRES_URL", "postgresql://u@db:5432/other")
    assert PostgresResource().database_url() == "postgresql://u@db:5432/other"
    assert PostgresResource(url="postgresql://u@db:5432/set").database_url().endswith("/set")
    monkeypatch.delenv("POSTGRES_URL")
    monkeypatch.setenv("CHAINLAKE_INSTANCE", "x;y")
    with pytest.raises(InstanceNameError, match="CHAINLAKE_INSTANCE"):
        PostgresResource().database_url()
    with pytest.raises(click.UsageError, match="CHAINLAKE_INSTANCE"):
        postgres_url(None)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CHAINLAKE_INSTANCE", "DAGSTER_POSTGRES_URL", "POSTGRES_URL")
        and not k.startswith(("MAKE", "MFLAGS"))
    }
    env.update(extra)
    return env


def test_the_script_the_makefile_runs_answers_with_the_system_python() -> None:
    """The Makefile asks `python3 -m chainlake.instance_names` before .venv exists: the module
    must run on the standard library alone (`-S -s -E`: no site-packages, no PYTHON* variables;
    `-m` from the root puts the checkout on the path, as for make)."""
    run = [sys.executable, "-S", "-s", "-E", "-m", "chainlake.instance_names"]
    out = subprocess.run(
        [*run, "dagster-url"], cwd=ROOT, env=_clean_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == instance_names.names({}).dagster_url
    bad = subprocess.run(
        [*run, "name"],
        cwd=ROOT,
        env=_clean_env(CHAINLAKE_INSTANCE="Robert'); DROP TABLE students;--"),
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("chainlake.instance_names: CHAINLAKE_INSTANCE=\"Robert')")


def _make_exports(**extra: str) -> str:
    show = "show-url: ; @echo $$DAGSTER_POSTGRES_URL"
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", show, "show-url"],
        cwd=ROOT,
        env=_clean_env(**extra),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_the_makefile_exports_the_libraries_dagster_url() -> None:
    assert _make_exports() == instance_names.names({}).dagster_url
    assert _make_exports(CHAINLAKE_INSTANCE="frank") == (
        "postgresql+psycopg2://postgres@127.0.0.1:5432/frank_dagster"
    )
    explicit = "postgresql+psycopg2://u@db:5432/mine"
    assert _make_exports(DAGSTER_POSTGRES_URL=explicit) == explicit


def test_cli_tracebacks_go_to_a_folder_of_the_instances(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cli.main import _log_folder

    monkeypatch.delenv("CHAINLAKE_LOG_DIR", raising=False)
    monkeypatch.setenv("CHAINLAKE_INSTANCE", "gina")
    gina = _log_folder()
    monkeypatch.setenv("CHAINLAKE_INSTANCE", "hank")
    assert gina.name == "chainlake-gina" and _log_folder() == gina.parent / "chainlake-hank"
    # the error being logged may be the variable itself: the log still has a place
    monkeypatch.setenv("CHAINLAKE_INSTANCE", "not a name")
    assert _log_folder().name == "chainlake-unnamed"
    monkeypatch.setenv("CHAINLAKE_LOG_DIR", str(tmp_path))
    assert _log_folder() == tmp_path
