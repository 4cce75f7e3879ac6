"""Users as PostgreSQL login roles: what `chainlake users add` does.

A user's database session runs as their own login role; `users.db_role` names it, and the
row-level security policies of revision 0004 map `current_user` to the user (see that
revision's docstring for who may do what). Only the engine (the tables' owner, with the
CREATEROLE attribute) can add users.

The password never travels in clear: the role gets a SCRAM-SHA-256 verifier computed here, so
neither the server's statement log nor `pg_stat_activity` ever shows it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import unicodedata

from psycopg import sql

from chainlake.events.db import Conn

ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SCRAM_ITERATIONS = 4096


class AccessError(ValueError):
    """A user cannot be added as asked; the message says why, in one line."""


def scram_sha256(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (`CREATE ROLE ... PASSWORD`
    accepts it as is and never sees the password).

    Args:
        password: The password; normalised with NFKC (what SASLprep does to most text).
        salt: 16 random bytes when not given.

    Returns:
        `SCRAM-SHA-256$<iterations>:<salt>$<stored key>:<server key>`, base64 parts.
    """
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac(
        "sha256", unicodedata.normalize("NFKC", password).encode(), salt, SCRAM_ITERATIONS
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def add_user(
    conn: Conn,
    name: str,
    *,
    email: str | None = None,
    password: str | None = None,
    existing_role: bool = False,
) -> str:
    """Create the login role `name` and the `users` row that maps it, in the caller's
    transaction; a `users` row of that username without a role (one made by `triggers apply`)
    gets the role. Returns the user's id.

    Args:
        conn: A connection of the engine (the tables' owner, with CREATEROLE).
        name: The username and the role's name: lowercase letters, digits and `_`.
        email: The user's e-mail (default `<name>@localhost`).
        password: The role's password; None for none (the role then logs in only where
            pg_hba.conf trusts it, or by certificate).
        existing_role: Map a role that already exists instead of creating it.

    Raises:
        AccessError: The name is not a valid role name, the role exists (or does not, with
            `existing_role`), is privileged (superuser, BYPASSRLS, a member of the engine's
            role), or another user already maps it.
    """
    if not ROLE_RE.match(name) or name.startswith("pg_"):
        raise AccessError(
            f"{name!r} is not a valid user name (lowercase letters, digits and '_', at most "
            "63, not starting with a digit or 'pg_')"
        )
    role = conn.execute(
        "SELECT rolsuper, rolbypassrls, "
        "pg_has_role(oid, (SELECT relowner FROM pg_class WHERE oid = 'users'::regclass), "
        "'MEMBER') AS engine FROM pg_roles WHERE rolname = %s",
        (name,),
    ).fetchone()
    if role is not None and not existing_role:
        raise AccessError(f"role {name!r} already exists (pass --existing-role to map it)")
    if role is None and existing_role:
        raise AccessError(f"role {name!r} does not exist")
    if role is not None and (role["rolsuper"] or role["rolbypassrls"] or role["engine"]):
        raise AccessError(
            f"role {name!r} bypasses row security (superuser, BYPASSRLS or a member of the "
            "engine's role): it cannot be a user"
        )
    mapped = conn.execute(
        "SELECT username FROM users WHERE db_role = %s AND username <> %s", (name, name)
    ).fetchone()
    if mapped is not None:
        raise AccessError(f"role {name!r} is already the role of user {mapped['username']!r}")
    if role is None:
        stmt = sql.SQL(
            "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        ).format(sql.Identifier(name))
        if password:
            stmt = sql.SQL("{} PASSWORD {}").format(stmt, sql.Literal(scram_sha256(password)))
        conn.execute(stmt)
    row = conn.execute(
        "INSERT INTO users (username, email, password_hash, db_role) VALUES (%s, %s, '!', %s) "
        "ON CONFLICT (username) DO UPDATE SET db_role = EXCLUDED.db_role "
        "WHERE users.db_role IS NULL OR users.db_role = EXCLUDED.db_role RETURNING id",
        (name, email or f"{name}@localhost", name),
    ).fetchone()
    if row is None:
        raise AccessError(f"user {name!r} already exists with another role")
    return str(row["id"])
