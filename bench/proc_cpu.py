"""CPU seconds by kind of process while something runs: where a test's or a backfill's CPU goes.

    .venv/bin/python bench/proc_cpu.py OUT.json -- .venv/bin/pytest tests/integration/test_backfill.py

Samples /proc every second: each process's user + system time, the last value seen (a process
that lives less than a second is missed), less what it had used when sampling began; grouped by
what its command line says it is (run worker, forkserver and its forked steps, code server,
daemon...). Written to OUT.json after every sample, and printed when the command ends.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

HZ = os.sysconf("SC_CLK_TCK")
KINDS = (
    ("forkserver import main", "forkserver and its forked steps"),
    ("multiprocessing.spawn", "run workers (multiprocessing spawn)"),
    ("api grpc", "code servers"),
    ("dagster-daemon", "daemon"),
    ("DEFAULT_DAEMON_INTERVAL", "daemon"),
    ("watch_orphans", "orphan watchers"),
    ("anvil", "anvil"),
    ("postgres", "postgres"),
    ("bin/dagster ", "dagster CLI"),
    ("bin/chainlake", "chainlake CLI"),
    ("pytest", "pytest and processes with its paths"),
)


def kind(cmdline: str) -> str:
    for needle, name in KINDS:
        if needle in cmdline:
            return name
    return "other: " + (os.path.basename(cmdline.split(" ", 1)[0]) or "?")


def sample(seen: dict, base: dict, first: bool) -> None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / HZ
        key = (pid, fields[19])  # a pid and its start time: one process
        if first:
            base[key] = cpu
        name = seen.get(key, (kind(cmdline), 0.0))[0]
        seen[key] = (name, cpu - base.get(key, 0.0))


def totals(seen: dict) -> dict[str, list[float]]:
    cpu: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for name, seconds in seen.values():
        cpu[name] += seconds
        count[name] += 1
    return {name: [round(s, 1), count[name]] for name, s in cpu.most_common() if s >= 0.05}


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out, command = Path(sys.argv[1]), sys.argv[3:]
    seen: dict = {}
    base: dict = {}
    sample(seen, base, first=True)
    proc = subprocess.Popen(command)
    done = threading.Event()

    def loop() -> None:
        while not done.wait(1.0):
            sample(seen, base, first=False)
            out.write_text(json.dumps(totals(seen), indent=1))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    code = proc.wait()
    done.set()
    thread.join()
    sample(seen, base, first=False)
    result = totals(seen)
    out.write_text(json.dumps(result, indent=1))
    for name, (seconds, n) in result.items():
        print(f"{seconds:8.1f} CPU-s  {n:5d} processes  {name}")
    print(f"{sum(s for s, _ in result.values()):8.1f} CPU-s in all")
    return code


if __name__ == "__main__":
    sys.exit(main())
