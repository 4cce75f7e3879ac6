"""Rebuild the devnet contract artifacts with the project's pinned solc-js (offline).

    python -m tools.devnet.compile          # rewrite contracts/build/*.json
    python -m tools.devnet.compile --check  # exit 1 if the committed artifacts are stale

One JSON file per deployable contract: ``{"contractName", "sourceName", "compiler", "abi",
"bytecode", "deployedBytecode"}``. Sources are passed by their bare file names, so the
embedded metadata hash (and therefore the bytecode) does not depend on where the checkout
lives.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.devnet.anvil import project_root

CONTRACTS_DIR = Path(__file__).resolve().parent / "contracts"
BUILD_DIR = CONTRACTS_DIR / "build"

# Pinned so a newer solc default cannot change the bytecode behind our back.
EVM_VERSION = "cancun"
OPTIMIZER_RUNS = 200


class CompileError(RuntimeError):
    """solc-js is missing or rejected the sources."""


def solcjs_path() -> Path:
    """The project's solc-js binary (node_modules); CompileError when npm has not installed it."""
    path = project_root() / "node_modules" / ".bin" / "solcjs"
    if not path.exists():
        raise CompileError(
            f"solc-js not found at {path}; run `npm ci` in {project_root()} to install the node tools"
        )
    return path


def standard_json_input(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, Any]:
    """The solc standard-JSON input for every `.sol` file of `contracts_dir`."""
    sources = {p.name: {"content": p.read_text()} for p in sorted(contracts_dir.glob("*.sol"))}
    if not sources:
        raise CompileError(f"no .sol files in {contracts_dir}")
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "evmVersion": EVM_VERSION,
            "outputSelection": {
                "*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }


def compile_contracts(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, dict[str, Any]]:
    """Compile every .sol file; returns artifacts keyed by contract name (interfaces skipped)."""
    solc = solcjs_path()
    version = subprocess.run(
        [str(solc), "--version"], check=True, capture_output=True, text=True
    ).stdout.strip()
    # stdout goes to a file: node truncates large output written to a pipe when it exits.
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.run(
            [str(solc), "--standard-json"],
            input=json.dumps(standard_json_input(contracts_dir)),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
        stdout.seek(0)
        text = stdout.read()
    if proc.returncode != 0 or "{" not in text:
        raise CompileError(f"solcjs failed ({proc.returncode}): {proc.stderr.strip()}")
    # solcjs may print warnings before the JSON document.
    out = json.loads(text[text.index("{") :])
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in sorted(out.get("contracts", {}).items()):
        for name, c in sorted(contracts.items()):
            bytecode = c["evm"]["bytecode"]["object"]
            if not bytecode:
                continue  # interfaces and abstract contracts
            if name in artifacts:
                raise CompileError(f"contract name {name!r} is defined twice")
            artifacts[name] = {
                "contractName": name,
                "sourceName": source_name,
                "compiler": f"solc-js {version}",
                "settings": {"optimizerRuns": OPTIMIZER_RUNS, "evmVersion": EVM_VERSION},
                "abi": c["abi"],
                "bytecode": "0x" + bytecode,
                "deployedBytecode": "0x" + c["evm"]["deployedBytecode"]["object"],
            }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    """An artifact as the JSON text written to the build directory (stable, diff-friendly)."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifacts(
    artifacts: dict[str, dict[str, Any]], build_dir: Path = BUILD_DIR
) -> list[Path]:
    """Write one JSON file per artifact and delete stale ones; returns the files written."""
    build_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in sorted(artifacts.items()):
        path = build_dir / f"{name}.json"
        path.write_text(render(artifact))
        written.append(path)
    for stale in build_dir.glob("*.json"):
        if stale.stem not in artifacts:
            stale.unlink()
    return written


def stale_artifacts(artifacts: dict[str, dict[str, Any]], build_dir: Path = BUILD_DIR) -> list[str]:
    """Names whose committed artifact differs from `artifacts` (or is missing / extra)."""
    stale = []
    for name, artifact in sorted(artifacts.items()):
        path = build_dir / f"{name}.json"
        if not path.exists() or path.read_text() != render(artifact):
            stale.append(name)
    stale += sorted(p.stem for p in build_dir.glob("*.json") if p.stem not in artifacts)
    return stale


def main(argv: list[str] | None = None) -> int:
    """Compile the contracts into the build directory, or with `--check` compare with it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="only compare with the committed artifacts"
    )
    args = parser.parse_args(argv)
    artifacts = compile_contracts()
    if args.check:
        stale = stale_artifacts(artifacts)
        if stale:
            print(f"stale artifacts: {', '.join(stale)}; run python -m tools.devnet.compile")
            return 1
        print(f"{len(artifacts)} artifacts up to date")
        return 0
    for path in write_artifacts(artifacts):
        print(path.relative_to(project_root()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
