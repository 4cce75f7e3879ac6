"""The committed contract artifacts (contracts/build/*.json) and plain ABI encoding for them.

Encoding is done here with eth_abi rather than through web3 contract objects: the generator
encodes tens of thousands of calls and this path is several times faster.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from tools.devnet.compile import BUILD_DIR


def canonical_type(param: dict[str, Any]) -> str:
    """The type as it appears in a signature (tuples spelled out)."""
    t = param["type"]
    if t.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){t[len('tuple') :]}"
    return str(t)


def signature(item: dict[str, Any]) -> str:
    """The canonical signature of an ABI function or event, e.g.
    `Transfer(address,address,uint256)`."""
    return f"{item['name']}({','.join(canonical_type(p) for p in item['inputs'])})"


def topic0(event_signature: str) -> str:
    """The topic0 (keccak-256 hash) of an event signature, as 0x-hex."""
    return "0x" + keccak(text=event_signature).hex()


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI and creation bytecode, with call-data and event helpers."""

    name: str
    abi: tuple[dict[str, Any], ...]
    bytecode: bytes

    def _item(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [i for i in self.abi if i["type"] == kind and (name is None or i["name"] == name)]
        if len(found) != 1:
            raise KeyError(f"{self.name}: expected one {kind} {name or ''}, found {len(found)}")
        return found[0]

    def deploy_data(self, *args: Any) -> str:
        """Creation bytecode followed by the ABI-encoded constructor arguments."""
        try:
            ctor = self._item("constructor")
        except KeyError:
            ctor = {"inputs": []}
        types = [canonical_type(p) for p in ctor["inputs"]]
        return "0x" + (self.bytecode + encode(types, list(args))).hex()

    @functools.cached_property
    def _functions(self) -> dict[str, tuple[bytes, list[str]]]:
        out: dict[str, tuple[bytes, list[str]]] = {}
        for item in self.abi:
            if item["type"] == "function":
                if item["name"] in out:
                    raise KeyError(f"{self.name}.{item['name']} is overloaded")
                types = [canonical_type(p) for p in item["inputs"]]
                out[item["name"]] = (keccak(text=signature(item))[:4], types)
        return out

    def call_data(self, function: str, *args: Any) -> str:
        """The 0x-hex call data of `function` with `args`."""
        selector, types = self._functions[function]
        return "0x" + (selector + encode(types, list(args))).hex()

    def event_signature(self, event: str) -> str:
        """The canonical signature of the contract's event `event`."""
        return signature(self._item("event", event))

    def event_topic(self, event: str) -> str:
        """The topic0 of the contract's event `event`."""
        return topic0(self.event_signature(event))

    def events(self) -> dict[str, str]:
        """Event signature -> topic0 for every event this contract declares."""
        return {signature(i): topic0(signature(i)) for i in self.abi if i["type"] == "event"}


@functools.cache
def load_artifact(name: str) -> Artifact:
    """The committed build artifact of contract `name` (cached)."""
    path = BUILD_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such artifact; run python -m tools.devnet.compile")
    raw = json.loads(path.read_text())
    return Artifact(
        name=raw["contractName"],
        abi=tuple(raw["abi"]),
        bytecode=bytes.fromhex(raw["bytecode"].removeprefix("0x")),
    )


def artifact_names() -> Sequence[str]:
    """The names of the committed build artifacts."""
    return sorted(p.stem for p in BUILD_DIR.glob("*.json"))
