"""Resource settings from the environment, through `dagster.EnvVar` so values stay out of the UI."""

from __future__ import annotations

import os
from typing import TypeVar

import dagster as dg

T = TypeVar("T")


def env(name: str, default: T) -> dg.EnvVar | T:
    """`EnvVar(name)` when the variable is set (Dagster reads it when the resource starts),
    else the embedded default, so a fresh clone runs with no environment at all."""
    return dg.EnvVar(name) if os.environ.get(name) else default
