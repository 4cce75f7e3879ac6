"""Optional settings read from the environment when a resource is used, not when code loads.

`dg.EnvVar` as a field value makes Dagster resolve the variable when the run starts and show
its name in the UI, but a variable that is not set then fails the run: Dagster config has no
"this variable, else a default". So a field whose variable is optional stays unset (`None`)
and the resource calls these helpers at run time instead. Either way the value is the one in
the environment of the process that uses the resource, never a value frozen when the code
location was loaded.
"""

from __future__ import annotations

import dagster as dg


def env_str(var: dg.EnvVar, default: str) -> str:
    """The variable's value now, or `default` when it is unset or empty.

    Args:
        var: The variable, e.g. `dg.EnvVar("DUCKDB_PATH")`.
        default: The value when the variable is unset or empty.

    Returns:
        The value to use.
    """
    # Empty counts as unset: docker-compose passes optional settings as `${X:-}`.
    return var.get_value() or default


def env_optional(var: dg.EnvVar) -> str | None:
    """The variable's value now, or None when it is unset or empty.

    Args:
        var: The variable, e.g. `dg.EnvVar("SMTP_PASSWORD")`.

    Returns:
        The value, or None.
    """
    return var.get_value() or None


def env_int(var: dg.EnvVar, default: int) -> int:
    """The variable's value now as an integer, or `default` when it is unset or empty.

    Args:
        var: The variable, e.g. `dg.EnvVar("SMTP_PORT")`.
        default: The value when the variable is unset or empty.

    Returns:
        The value to use.

    Raises:
        ValueError: The variable is set to something that is not an integer (the message
            names the variable; the value is left out, as it may be a secret).
    """
    raw = var.get_value()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {var.env_var_name} is not an integer") from None
