"""The names of one chainlake instance: its PostgreSQL databases, from one variable.

Two checkouts on one machine share one PostgreSQL server; each has an instance of its own, so
neither sees the other's runs, events or deliveries. The instance's name is
`CHAINLAKE_INSTANCE` when set, else derived from the checkout's absolute path:
`chainlake_<folder>_<hash>` (the folder's name in lowercase letters, digits and `_`, cut to
fit, and the first 8 hex digits of the SHA-256 of the path), so two clones never get the same
name, whatever their folders are called. The instance has two databases on 127.0.0.1:5432
(user `postgres`), each replaced by an explicit URL:

| database | name | set instead by |
|---|---|---|
| Dagster storage (runs, event logs, schedules) | `<instance>_dagster` | `DAGSTER_POSTGRES_URL` |
| events, triggers, deliveries | `<instance>_events` | `POSTGRES_URL` |

A name is at most 55 bytes of lowercase letters, digits and `_`, starting with a letter or
`_`, so that both database names are PostgreSQL identifiers that need no quoting and stay
within its 63-byte limit.

Standard library only, and runnable before the environment is built (the Makefile asks it
with the system Python): `python3 -m chainlake.instance_names [name|dagster-url|events-url]`.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

INSTANCE_VARIABLE = "CHAINLAKE_INSTANCE"
DAGSTER_URL_VARIABLE = "DAGSTER_POSTGRES_URL"
EVENTS_URL_VARIABLE = "POSTGRES_URL"
# The checkout this library runs from (an editable install: the repository itself).
CHECKOUT = Path(__file__).resolve().parents[1]

DAGSTER_SUFFIX = "_dagster"
EVENTS_SUFFIX = "_events"
# PostgreSQL truncates identifiers past NAMEDATALEN - 1 = 63 bytes.
MAX_IDENTIFIER_BYTES = 63
MAX_NAME_LENGTH = MAX_IDENTIFIER_BYTES - max(len(DAGSTER_SUFFIX), len(EVENTS_SUFFIX))
HASH_LENGTH = 8
PREFIX = "chainlake_"
# Dagster's storage goes through SQLAlchemy and must name psycopg2: a bare postgresql:// picks
# psycopg 3 under SQLAlchemy 2.1 and breaks Dagster's LISTEN/NOTIFY. The events code is libpq.
SERVER = "postgres@127.0.0.1:5432"
DAGSTER_URL_TEMPLATE = f"postgresql+psycopg2://{SERVER}/<instance>{DAGSTER_SUFFIX}"
EVENTS_URL_TEMPLATE = f"postgresql://{SERVER}/<instance>{EVENTS_SUFFIX}"

_NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
_NOT_SLUG_RE = re.compile(r"[^a-z0-9]+")


class InstanceNameError(ValueError):
    """CHAINLAKE_INSTANCE holds something that cannot name databases."""


def check_name(value: str) -> str:
    """`value` if it can name an instance's databases.

    Raises:
        InstanceNameError: It is empty, too long, or has anything but lowercase letters,
            digits and `_` (the message names the variable and shows the value's start).
    """
    if _NAME_RE.fullmatch(value) and len(value) <= MAX_NAME_LENGTH:
        return value
    shown = value if len(value) <= 40 else value[:40] + "…"
    raise InstanceNameError(
        f"{INSTANCE_VARIABLE}={shown!r} cannot name databases: use 1 to {MAX_NAME_LENGTH} "
        "lowercase letters, digits and '_', starting with a letter or '_'"
    )


def default_name(checkout: Path = CHECKOUT) -> str:
    """The instance name of the checkout at `checkout` when CHAINLAKE_INSTANCE is unset:
    `chainlake_<folder>_<first 8 hex digits of the SHA-256 of its absolute path>`."""
    path = str(checkout.resolve())
    digest = hashlib.sha256(path.encode()).hexdigest()[:HASH_LENGTH]
    room = MAX_NAME_LENGTH - len(PREFIX) - 1 - HASH_LENGTH
    slug = _NOT_SLUG_RE.sub("_", checkout.resolve().name.lower()).strip("_")[:room].rstrip("_")
    return check_name(f"{PREFIX}{slug or 'checkout'}_{digest}")


def name(environ: Mapping[str, str] | None = None, checkout: Path = CHECKOUT) -> str:
    """The instance's name: CHAINLAKE_INSTANCE (unset or empty: the checkout's default).

    Raises:
        InstanceNameError: CHAINLAKE_INSTANCE is set to something that cannot name databases.
    """
    env = os.environ if environ is None else environ
    value = env.get(INSTANCE_VARIABLE) or ""
    return check_name(value) if value else default_name(checkout)


@dataclass(frozen=True)
class InstanceNames:
    """One instance's name and the names and default URLs of its two databases."""

    instance: str

    @property
    def dagster_database(self) -> str:
        """The Dagster storage database: `<instance>_dagster`."""
        return self.instance + DAGSTER_SUFFIX

    @property
    def events_database(self) -> str:
        """The events database: `<instance>_events`."""
        return self.instance + EVENTS_SUFFIX

    @property
    def dagster_url(self) -> str:
        """The Dagster storage's SQLAlchemy URL on the local server (psycopg2 driver)."""
        return f"postgresql+psycopg2://{SERVER}/{self.dagster_database}"

    @property
    def events_url(self) -> str:
        """The events database's libpq URL on the local server."""
        return f"postgresql://{SERVER}/{self.events_database}"


def names(environ: Mapping[str, str] | None = None, checkout: Path = CHECKOUT) -> InstanceNames:
    """The names of this instance (CHAINLAKE_INSTANCE, else the checkout's default).

    Raises:
        InstanceNameError: CHAINLAKE_INSTANCE is set to something that cannot name databases.
    """
    return InstanceNames(name(environ, checkout))


def dagster_postgres_url(environ: Mapping[str, str] | None = None) -> str:
    """DAGSTER_POSTGRES_URL when set, else the instance's `<instance>_dagster` database."""
    env = os.environ if environ is None else environ
    return env.get(DAGSTER_URL_VARIABLE) or names(env).dagster_url


def events_postgres_url(environ: Mapping[str, str] | None = None) -> str:
    """POSTGRES_URL when set, else the instance's `<instance>_events` database."""
    env = os.environ if environ is None else environ
    return env.get(EVENTS_URL_VARIABLE) or names(env).events_url


_WHAT = {
    "name": lambda: name(),
    "dagster-url": lambda: dagster_postgres_url(),
    "events-url": lambda: events_postgres_url(),
}


def main(argv: list[str]) -> int:
    """Print the instance's name or one of its URLs; the exit status."""
    what = argv[0] if argv else "name"
    if what not in _WHAT or len(argv) > 1:
        sys.stderr.write(f"usage: python -m chainlake.instance_names [{'|'.join(_WHAT)}]\n")
        return 2
    try:
        sys.stdout.write(_WHAT[what]() + "\n")
    except InstanceNameError as e:
        sys.stderr.write(f"chainlake.instance_names: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
