"""Run a local anvil node (from the project's node_modules) for tests, demos and benchmarks.

Two ways to run it:

- in-process ownership: ``with Anvil(genesis=date(2025, 1, 1)) as node: node.rpc_url`` — the
  node dies with the context (or ``stop()``), and its temporary cache directory is removed;
- detached, for a CLI ``up`` / ``down``: ``start_detached(state_dir)`` leaves the node running
  in its own session and records it in ``state_dir/anvil.json``; ``stop_detached(state_dir)``
  ends it.

Anvil always gets ``--cache-path <dir>`` inside a directory we own (a temporary one, removed
on ``stop()``, or the detached node's ``state_dir/cache``, removed on ``stop_detached``):
by default it writes state snapshots under ``~/.foundry`` and never deletes them (11 GB
after about 22,000 blocks, and mining slowed down). With ``keep_states=n`` (the default) it also gets ``--prune-history n``:
the states of the last ``n`` blocks stay in memory and nothing goes to disk, so historical
state queries (``eth_getBalance`` at an old block, as ``core/balances`` does for a day's last
block) work for the last ``n`` blocks only and fail with ``BlockOutOfRangeError`` before.
Memory is roughly 0.2 MB per kept state for plain transfers and about 1 MB for the
generator's chain after 1,000 blocks (its state grows). ``keep_states=None`` keeps every
state on disk in the cache directory instead (about 1.2 MB per block, ~30 % slower mining),
for long chains whose whole history must stay queryable.

Saving and bringing back a chain (``make demo`` → ``make dev``): ``dump_state(path)`` writes
the node's state as anvil's JSON snapshot (``anvil_dumpState`` with historical states), and
``Anvil(state_file=path)`` starts from it (``--state``: loaded at start, written again when
the node exits on SIGTERM). The snapshot holds every block, transaction and receipt and the
states the node kept in memory (``keep_states``), so blocks keep their hashes and historical
queries still answer for those blocks after a reload; ``--preserve-historical-states`` keeps
them in the snapshot written at exit too. Nothing goes to the cache directory: the file
holds at most ``keep_states`` states, so it stops growing like the node's memory. Measured on
2026-12-01 with ``make demo``'s chain (468 blocks of 20 transactions): 345 MB of JSON, about
0.74 MB a block (each state is the whole account and storage set), loaded in 3.3 s by a node of
1 GB resident memory, written at exit in 2 s; each block mined afterwards adds about as much,
up to ``keep_states`` blocks (about 1.5 GB). The oldest of those states are dropped once
``keep_states`` newer blocks have been mined: a day older than that still reads its blocks,
transactions and logs, but ``eth_getBalance`` / ``eth_call`` at its last block fail with
``BlockOutOfRangeError`` (so do ``core/balances`` and ``core/token_prices`` for that day).

Each start from a snapshot leaves a second block 0 in the node's store (stamped with the time
of the load, anvil 1.7.1), which the snapshot written at exit keeps; the next load may then
serve it as block 0, whose late timestamp breaks every day → block range (the day of block 0
becomes today's first). ``repair_state_file`` drops such extra genesis blocks (every block 0
but the earliest) before each load.

With ``state_file`` and ``block_time``, the node starts without mining, moves its clock past
the snapshot's last block if that block is later than the wall clock (anvil would otherwise
stamp new blocks with the wall clock, behind the last one), and only then mines a block every
``block_time`` seconds (``evm_setIntervalMining``).

Transactions are ordered first-in first-out so a generated chain is reproducible.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import logging
import os
import platform
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

log = logging.getLogger(__name__)

DEFAULT_MNEMONIC = "test test test test test test test test test test test junk"
DEFAULT_CHAIN_ID = 31337
DEFAULT_ACCOUNTS = 20
DEFAULT_HOST = "127.0.0.1"
# Block states kept in memory for historical queries (see the module docstring).
DEFAULT_KEEP_STATES = 2_048
ANVIL_BINARY_ENV = "CHAINLAKE_ANVIL"
STATE_FILE = "anvil.json"
PID_FILE = "anvil.pid"
LOG_FILE = "anvil.log"
CACHE_DIR = "cache"
# Seconds a node with a state file gets to write it on SIGTERM before it is killed.
SAVE_TIMEOUT = 120.0


class AnvilError(RuntimeError):
    """anvil is missing, failed to start, or died; the message carries its output."""


def project_root() -> Path:
    """The checkout root (where package.json and node_modules live)."""
    return Path(__file__).resolve().parents[2]


def _platform_package() -> str:
    system = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}.get(platform.system(), "")
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, ""
    )
    return f"anvil-{system}-{arch}"


def anvil_binary() -> Path:
    """The anvil executable: $CHAINLAKE_ANVIL, else the npm package in node_modules."""
    override = os.environ.get(ANVIL_BINARY_ENV)
    if override:
        path = Path(override)
        if not path.exists():
            raise AnvilError(f"{ANVIL_BINARY_ENV}={override} does not exist")
        return path
    root = project_root()
    name = "anvil.exe" if platform.system() == "Windows" else "anvil"
    path = root / "node_modules" / "@foundry-rs" / _platform_package() / "bin" / name
    if not path.exists():
        raise AnvilError(
            f"anvil not found at {path}; run `npm ci` in {root} to install the node tools "
            f"(package.json pins @foundry-rs/anvil), or set {ANVIL_BINARY_ENV}"
        )
    return path


def genesis_timestamp(value: int | dt.date | dt.datetime) -> int:
    """Unix seconds for a genesis given as seconds, a date (its midnight UTC) or a datetime."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp())
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp())
    return int(value)


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on `host` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace").strip()


def _chain_id(url: str, timeout: float = 1.0) -> int | None:
    try:
        r = httpx.post(
            url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=timeout,
        )
        return int(r.json()["result"], 16)
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _skip_ws(text: str, i: int) -> int:
    while text[i] in " \t\r\n":
        i += 1
    return i


def repair_state_file(path: str | Path) -> int:
    """Drop the extra genesis blocks of an anvil JSON snapshot (module docstring): of the
    blocks numbered 0 only the earliest stays. Only the top-level keys before ``blocks`` and the
    blocks themselves are parsed; the rest of the file (transactions, historical states) is
    copied as it is. Returns how many blocks were dropped (0: the file is left untouched)."""
    target = Path(path)
    text = target.read_text()
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i] != "{":
        raise AnvilError(f"{target}: not an anvil state snapshot (no JSON object)")
    i += 1
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return 0  # no blocks key
        key, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        i = _skip_ws(text, i + 1)  # the colon
        if key == "blocks":
            break
        _, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1
    if text[i] != "[":
        raise AnvilError(f"{target}: 'blocks' is not a list")
    start = i + 1
    spans: list[tuple[int, int, int, int]] = []  # (begin, end, number, timestamp)
    i = start
    while True:
        i = _skip_ws(text, i)
        if text[i] == "]":
            break
        begin = i
        block, i = decoder.raw_decode(text, i)
        header = block["header"]
        spans.append((begin, i, int(header["number"], 16), int(header["timestamp"], 16)))
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1
    geneses = sorted((ts, b) for b, _, number, ts in spans if number == 0)
    drop = {b for _, b in geneses[1:]}
    if not drop:
        return 0
    kept = ",".join(text[b:e] for b, e, _, _ in spans if b not in drop)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text[:start] + kept + text[i:])
    tmp.replace(target)
    log.info("%s: dropped %d extra genesis block(s)", target, len(drop))
    return len(drop)


class Anvil:
    """An anvil node on 127.0.0.1 owned by this process.

    ``port=None`` picks a free port. ``genesis`` (unix seconds, a date meaning its midnight
    UTC, or a datetime) sets the genesis timestamp; by default anvil uses the wall clock.
    With ``automine=False`` and no ``block_time`` the node mines only on ``evm_mine``.
    ``keep_states`` bounds the queryable history (module docstring); ``cache_dir`` defaults to
    a temporary directory removed on ``stop()``. ``state_file`` starts the node from an anvil
    snapshot (``dump_state``) and writes it back when the node exits.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = DEFAULT_HOST,
        chain_id: int = DEFAULT_CHAIN_ID,
        genesis: int | dt.date | dt.datetime | None = None,
        accounts: int = DEFAULT_ACCOUNTS,
        balance_ether: int = 10_000,
        mnemonic: str = DEFAULT_MNEMONIC,
        automine: bool = False,
        block_time: float | None = None,
        keep_states: int | None = DEFAULT_KEEP_STATES,
        cache_dir: str | Path | None = None,
        state_file: str | Path | None = None,
        quiet: bool = True,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 30.0,
        binary: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.genesis_timestamp = None if genesis is None else genesis_timestamp(genesis)
        self.accounts = accounts
        self.balance_ether = balance_ether
        self.mnemonic = mnemonic
        self.automine = automine
        self.block_time = block_time
        self.keep_states = keep_states
        self.state_file = Path(state_file).resolve() if state_file is not None else None
        if self.state_file is not None and block_time is not None and block_time != int(block_time):
            raise AnvilError(f"block_time with a state file is whole seconds, not {block_time}")
        self.quiet = quiet
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self._binary = Path(binary) if binary is not None else None
        self._cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._owns_cache_dir = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    @property
    def rpc_url(self) -> str:
        """The node's JSON-RPC URL; AnvilError before it is started."""
        if self.port is None:
            raise AnvilError("anvil is not started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The anvil process id, or None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        """Where anvil's output is written, or None before the cache directory exists."""
        return self._cache_dir / LOG_FILE if self._cache_dir is not None else None

    def is_running(self) -> bool:
        """Whether the anvil process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def command(self, port: int) -> list[str]:
        """The anvil command line for `port`."""
        binary = self._binary or anvil_binary()
        if self._cache_dir is None:
            raise AnvilError("no cache directory")
        cmd = [
            str(binary),
            "--host", self.host,
            "--port", str(port),
            "--chain-id", str(self.chain_id),
            "--accounts", str(self.accounts),
            "--balance", str(self.balance_ether),
            "--mnemonic", self.mnemonic,
            "--cache-path", str(self._cache_dir / CACHE_DIR),
            "--order", "fifo",
        ]  # fmt: skip
        if self.keep_states is not None:
            cmd += ["--prune-history", str(self.keep_states)]
        if self.genesis_timestamp is not None:
            cmd += ["--timestamp", str(self.genesis_timestamp)]
        if self.state_file is not None:
            cmd += ["--state", str(self.state_file), "--preserve-historical-states"]
        if self.block_time is not None and self.state_file is None:
            cmd += ["--block-time", str(self.block_time)]
        elif not self.automine:
            # with a state file, interval mining starts once the clock is right (_resume_clock)
            cmd.append("--no-mining")
        if self.quiet:
            cmd.append("--quiet")
        return cmd + list(self.extra_args)

    def start(self, *, detached: bool = False) -> Anvil:
        """Start anvil (no-op if running) and wait until it answers; without a fixed port,
        three free ports are tried. With `detached`, the node runs in its own session and
        outlives this process."""
        if self.is_running():
            return self
        if self._cache_dir is None:
            self._cache_dir = Path(tempfile.mkdtemp(prefix="chainlake-anvil-"))
            self._owns_cache_dir = True
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        fixed_port = self.port is not None
        if fixed_port and _chain_id(f"http://{self.host}:{self.port}") is not None:
            raise AnvilError(f"a node already answers on {self.host}:{self.port}")
        if self.state_file is not None and self.state_file.exists():
            repair_state_file(self.state_file)
        attempts = 1 if fixed_port else 3
        for attempt in range(attempts):
            port = self.port if fixed_port else free_port(self.host)
            assert port is not None
            try:
                self._launch(port, detached=detached)
                break
            except AnvilError as e:
                # Another process may have taken the free port between probe and bind.
                if fixed_port or "Address already in use" not in str(e) or attempt == attempts - 1:
                    self._cleanup()
                    raise
                log.info("anvil port %s was taken, retrying on another port", port)
        if self.state_file is not None:
            try:
                self._resume_clock()
            except AnvilError:
                self.stop()
                raise
        return self

    def _launch(self, port: int, *, detached: bool) -> None:
        assert self._cache_dir is not None
        log_path = self._cache_dir / LOG_FILE
        self._log_file = open(log_path, "wb")  # closed in stop()
        cmd = self.command(port)
        log.debug("starting anvil: %s", " ".join(cmd))
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=detached,
        )
        self.port = port
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                self._log_file.close()
                self.port = None
                raise AnvilError(f"anvil exited with code {code} at start: {_tail(log_path)}")
            got = _chain_id(self.rpc_url)
            if got is not None:
                if got != self.chain_id:
                    self.stop()
                    raise AnvilError(
                        f"anvil on port {port} answers chain id {got}, not {self.chain_id}"
                    )
                log.info("anvil %s up at %s (pid %s)", self.chain_id, self.rpc_url, self._proc.pid)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise AnvilError(
                    f"anvil did not answer eth_chainId within {self.startup_timeout}s: "
                    f"{_tail(log_path)}"
                )
            time.sleep(0.05)

    def rpc(self, method: str, *params: Any, timeout: float = 60.0) -> Any:
        """One JSON-RPC call to the node; AnvilError names the method and the node's error."""
        try:
            r = httpx.post(
                self.rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)},
                timeout=timeout,
            )
            body = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise AnvilError(f"{method} on {self.rpc_url}: {type(e).__name__}: {e}") from e
        if "error" in body:
            raise AnvilError(f"{method} on {self.rpc_url}: {body['error']}")
        return body["result"]

    def _resume_clock(self) -> None:
        """After loading a snapshot: new blocks never stamped before its last block, then
        interval mining if a block time is set."""
        last = self.rpc("eth_getBlockByNumber", "latest", False)
        last_ts = int(last["timestamp"], 16)
        now = int(time.time())
        if last_ts >= now:
            # anvil stamps the next block with its clock: put the clock just past the last block
            self.rpc("evm_setTime", last_ts + 1)
            log.info(
                "anvil clock moved to %s (last block %s)", last_ts + 1, int(last["number"], 16)
            )
        if self.block_time is not None:
            self.rpc("evm_setIntervalMining", int(self.block_time))

    def dump_state(self, path: str | Path) -> Path:
        """Write the node's state (blocks, transactions, receipts, accounts and the historical
        states it keeps) to `path` as the JSON snapshot ``--state`` / ``--load-state`` read;
        replaced atomically. Returns the path."""
        raw = self.rpc("anvil_dumpState", True, timeout=300.0)
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise AnvilError(f"anvil_dumpState answered {str(raw)[:80]!r}, not hex")
        data = gzip.decompress(bytes.fromhex(raw[2:]))  # anvil gzips it; --state reads plain JSON
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        return target

    def check_alive(self) -> None:
        """Raise AnvilError with anvil's output if the process has died."""
        if self._proc is None:
            raise AnvilError("anvil is not started")
        code = self._proc.poll()
        if code is not None:
            tail = _tail(self.log_path) if self.log_path else ""
            raise AnvilError(f"anvil died with code {code}: {tail}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop anvil (killed after `timeout` seconds) and remove the cache directory if it is
        ours."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._owns_cache_dir and self._cache_dir is not None:
            shutil.rmtree(self._cache_dir, ignore_errors=True)
            self._cache_dir = None
            self._owns_cache_dir = False

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid} at {self.rpc_url}" if self.is_running() else "stopped"
        return f"<Anvil chain_id={self.chain_id} {state}>"


@dataclass(frozen=True)
class DetachedAnvil:
    """What ``start_detached`` records in ``state_dir/anvil.json``."""

    pid: int
    rpc_url: str
    port: int
    chain_id: int
    genesis_timestamp: int | None
    log_path: str
    command: tuple[str, ...]
    started_at: str


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        # Reap it if it is our own (exited) child, so it does not linger as a zombie.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_anvil(pid: int) -> bool:
    """Guard against a recycled pid: only signal a process whose command line is anvil."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.exists():
        return platform.system() != "Linux"
    try:
        return b"anvil" in cmdline.read_bytes()
    except OSError:
        return False


def detached_status(state_dir: str | Path) -> DetachedAnvil | None:
    """The recorded detached node if it is still running, else None (stale files are kept)."""
    path = Path(state_dir) / STATE_FILE
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    info = DetachedAnvil(**{**raw, "command": tuple(raw["command"])})
    if _pid_alive(info.pid) and _is_anvil(info.pid):
        return info
    return None


def start_detached(state_dir: str | Path, **options: Any) -> DetachedAnvil:
    """Start anvil in its own session, outliving this process; idempotent while it runs.

    ``options`` are ``Anvil`` keyword arguments. Its log, cache and ``anvil.json`` /
    ``anvil.pid`` live in ``state_dir``.
    """
    state = Path(state_dir)
    running = detached_status(state)
    if running is not None:
        log.info("anvil already running at %s (pid %s)", running.rpc_url, running.pid)
        return running
    state.mkdir(parents=True, exist_ok=True)
    node = Anvil(cache_dir=state, **options)
    node.start(detached=True)
    assert node.pid is not None and node.port is not None
    info = DetachedAnvil(
        pid=node.pid,
        rpc_url=node.rpc_url,
        port=node.port,
        chain_id=node.chain_id,
        genesis_timestamp=node.genesis_timestamp,
        log_path=str(state / LOG_FILE),
        command=tuple(node.command(node.port)),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    # Let go of the process without stopping it: this object must not own it any more.
    node._proc = None
    node._cleanup()
    (state / STATE_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    (state / PID_FILE).write_text(f"{info.pid}\n")
    return info


def stop_detached(state_dir: str | Path, timeout: float = 10.0) -> bool:
    """Stop the node recorded in ``state_dir``; True if one was running. Removes the pid files.

    A node started with a state file writes its chain there as it exits on SIGTERM: it gets
    ``SAVE_TIMEOUT`` seconds for that before it is killed, and then AnvilError says the file
    still holds the chain of the last save."""
    state = Path(state_dir)
    path = state / STATE_FILE
    if not path.exists():
        return False
    recorded = json.loads(path.read_text())
    pid = int(recorded["pid"])
    command = list(recorded.get("command", ()))
    saves_to = command[command.index("--state") + 1] if "--state" in command else None
    if saves_to is not None:
        timeout = max(timeout, SAVE_TIMEOUT)
    was_running = _pid_alive(pid) and _is_anvil(pid)
    killed = False
    if was_running:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            killed = True
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid) and time.monotonic() < deadline + timeout:
                time.sleep(0.05)
    path.unlink(missing_ok=True)
    (state / PID_FILE).unlink(missing_ok=True)
    shutil.rmtree(state / CACHE_DIR, ignore_errors=True)
    if killed and saves_to is not None:
        raise AnvilError(
            f"anvil (pid {pid}) did not exit within {timeout:.0f}s of SIGTERM and was killed: "
            f"{saves_to} holds the chain as of its last save, not the blocks mined since"
        )
    return was_running
