"""Token metadata and contract facts read from the chain with `eth_call` / `eth_getCode`.

Tolerant of the usual non-standard tokens:

- `name()` / `symbol()` returning `bytes32` (MKR, SAI and other 2017 tokens) rather than an
  ABI `string`: the 32 bytes are read as UTF-8 up to the first NUL;
- functions a contract does not have, or that revert (the node answers an execution error,
  or the empty `0x`): the field is null, never an error;
- `decimals()` declared `uint256` (MKR) as well as `uint8`; a value above 77 (no Decimal can
  hold it, and no real token uses it) is treated as unreadable;
- an address without code at the block (not deployed yet, or not a contract): `has_code` is
  false and every field is null.

Errors that are not the call's own (the node cannot serve the block's state, a transport
failure) are raised: a field is null only when the chain itself gave no usable answer.

Contract standards (`detect_standards`): ERC-165 `supportsInterface` for ERC-721
(0x80ac58cd) and ERC-1155 (0xd9b67a26); ERC-20 has no ERC-165 id in practice, so it is
recognised by its selectors in the runtime code (`transfer`, `transferFrom`, `approve`,
`balanceOf`, `allowance`, `totalSupply`, each pushed as a PUSH4 constant by the dispatcher).
A contract that answers neither way for 721/1155 but carries their selectors is also
recognised (`safeTransferFrom` / `ownerOf` for 721; `safeBatchTransferFrom` / `balanceOfBatch`
for 1155).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils import keccak

from chainlake.rpc import RpcClient, RpcError

NAME = "0x06fdde03"
SYMBOL = "0x95d89b41"
DECIMALS = "0x313ce567"
TOTAL_SUPPLY = "0x18160ddd"
SUPPORTS_INTERFACE = "0x01ffc9a7"
ERC165_ID = "01ffc9a7"
ERC721_ID = "80ac58cd"
ERC1155_ID = "d9b67a26"
INVALID_ID = "ffffffff"
MAX_DECIMALS = 77
EMPTY_CODE_HASH = "0x" + keccak(b"").hex()

ERC20_SELECTORS = ("a9059cbb", "23b872dd", "095ea7b3", "70a08231", "dd62ed3e", "18160ddd")
ERC721_SELECTORS = ("42842e0e", "6352211e", "b88d4fde")  # safeTransferFrom x2, ownerOf
ERC1155_SELECTORS = ("2eb2c2d6", "4e1273f4", "f242432a")  # safeBatchTransferFrom, balanceOfBatch
# An error of the call itself (it ran and failed), as nodes word it; anything else is the
# node's failure (a pruned state, a bad block) and is raised.
_EXECUTION_ERROR_RE = re.compile(
    r"revert|invalid opcode|opcode .*not defined|out of gas|stack underflow|bad jump|"
    r"invalid jump|execution error|vm execution error|precompile",
    re.IGNORECASE,
)


class MetadataReadError(RuntimeError):
    """The node could not answer for the block's state (not a property of the token)."""


@dataclass(frozen=True)
class TokenMetadata:
    """What the chain says about one token at one block; None where it gave no usable answer."""

    address: str
    has_code: bool
    name: str | None
    symbol: str | None
    decimals: int | None
    total_supply: int | None


def is_execution_error(error: RpcError) -> bool:
    """The call ran and failed (reverted, no such function, invalid opcode, out of gas)."""
    return error.code == 3 or bool(_EXECUTION_ERROR_RE.search(error.message))


def _bytes(raw: object) -> bytes | None:
    if not isinstance(raw, str) or not raw.startswith("0x"):
        return None
    try:
        return bytes.fromhex(raw[2:])
    except ValueError:
        return None


def _clean_text(data: bytes) -> str | None:
    data = data.split(b"\0", 1)[0]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    return text or None


def decode_text(raw: object) -> str | None:
    """A `name()` / `symbol()` answer as text: an ABI `string`, or a `bytes32` (up to the first
    NUL); None for an empty, short, malformed or non-UTF-8 answer."""
    data = _bytes(raw)
    if not data:
        return None
    if len(data) >= 64:
        offset = int.from_bytes(data[:32], "big")
        if offset + 32 <= len(data):
            length = int.from_bytes(data[offset : offset + 32], "big")
            if offset + 32 + length <= len(data):
                return _clean_text(data[offset + 32 : offset + 32 + length])
    if len(data) == 32:
        return _clean_text(data)
    return None


def decode_uint(raw: object) -> int | None:
    """A one-word unsigned answer; None for an empty or short one."""
    data = _bytes(raw)
    if data is None or len(data) < 32:
        return None
    return int.from_bytes(data[:32], "big")


def decode_bool(raw: object) -> bool:
    """A `supportsInterface` answer: true only for exactly one word holding 1."""
    data = _bytes(raw)
    return data is not None and len(data) == 32 and int.from_bytes(data, "big") == 1


def code_hash(code: str | None) -> str | None:
    """keccak-256 of the runtime code as 0x-hex (the empty code's hash for `0x`)."""
    data = _bytes(code)
    return None if data is None else "0x" + keccak(data).hex()


def _answers(client: RpcClient, calls: list[tuple[str, list[object]]]) -> list[object]:
    """Each call's result, or None when the call itself failed; node failures raise."""
    out: list[object] = []
    for start in range(0, len(calls), client.batch_size):
        for result in client.batch_or_errors(calls[start : start + client.batch_size]):
            if isinstance(result, RpcError):
                if result.method != "eth_call" or not is_execution_error(result):
                    raise MetadataReadError(str(result)) from result
                out.append(None)
            else:
                out.append(result)
    return out


def read_token_metadata(
    client: RpcClient, addresses: Sequence[str], block: int
) -> list[TokenMetadata]:
    """Name, symbol, decimals and total supply of each token at `block`, in `addresses`' order."""
    tag = hex(block)
    calls: list[tuple[str, list[object]]] = []
    for a in addresses:
        calls.append(("eth_getCode", [a, tag]))
        calls += [("eth_call", [{"to": a, "data": s}, tag]) for s in (NAME, SYMBOL, DECIMALS)]
        calls.append(("eth_call", [{"to": a, "data": TOTAL_SUPPLY}, tag]))
    answers = _answers(client, calls)
    out = []
    for i, a in enumerate(addresses):
        code, name, symbol, decimals, supply = answers[5 * i : 5 * i + 5]
        has_code = bool(_bytes(code))
        if not has_code:
            out.append(TokenMetadata(a, False, None, None, None, None))
            continue
        d = decode_uint(decimals)
        out.append(
            TokenMetadata(
                address=a,
                has_code=True,
                name=decode_text(name),
                symbol=decode_text(symbol),
                decimals=d if d is not None and d <= MAX_DECIMALS else None,
                total_supply=decode_uint(supply),
            )
        )
    return out


@dataclass(frozen=True)
class ContractFacts:
    """A contract's runtime code hash and the token standards it implements, at one block."""

    address: str
    code_size: int
    code_hash: str | None
    erc165: bool
    erc20: bool
    erc721: bool
    erc1155: bool
    detected_by: str  # "erc165", "selectors", "erc165+selectors" or "none"


def _has_selectors(code: bytes, selectors: Sequence[str], need: int) -> bool:
    # PUSH4 <selector>: how solc and vyper dispatchers compare the call's selector
    return sum(bytes.fromhex("63" + s) in code for s in selectors) >= need


def detect_standards(
    client: RpcClient, addresses: Sequence[str], blocks: Sequence[int]
) -> list[ContractFacts]:
    """Code hash and ERC-20 / ERC-721 / ERC-1155 detection of each contract at its block
    (`blocks[i]` for `addresses[i]`: the block it was created in)."""
    calls: list[tuple[str, list[object]]] = []
    for a, b in zip(addresses, blocks, strict=True):
        tag = hex(b)
        calls.append(("eth_getCode", [a, tag]))
        for iface in (ERC165_ID, INVALID_ID, ERC721_ID, ERC1155_ID):
            query = SUPPORTS_INTERFACE + iface + "0" * 56
            calls.append(("eth_call", [{"to": a, "data": query, "gas": hex(100_000)}, tag]))
    answers = _answers(client, calls)
    out = []
    for i, a in enumerate(addresses):
        code, s165, sinvalid, s721, s1155 = answers[5 * i : 5 * i + 5]
        data = _bytes(code) or b""
        # ERC-165's own rule: supports 0x01ffc9a7 and not 0xffffffff
        erc165 = decode_bool(s165) and not decode_bool(sinvalid)
        by165_721 = erc165 and decode_bool(s721)
        by165_1155 = erc165 and decode_bool(s1155)
        sel_721 = _has_selectors(data, ERC721_SELECTORS, 2)
        sel_1155 = _has_selectors(data, ERC1155_SELECTORS, 2)
        erc721 = by165_721 or (not erc165 and sel_721)
        erc1155 = by165_1155 or (not erc165 and sel_1155)
        erc20 = not erc721 and _has_selectors(data, ERC20_SELECTORS, len(ERC20_SELECTORS))
        ways = []
        if by165_721 or by165_1155:
            ways.append("erc165")
        if erc20 or (erc721 and not by165_721) or (erc1155 and not by165_1155):
            ways.append("selectors")
        out.append(
            ContractFacts(
                address=a,
                code_size=len(data),
                code_hash=code_hash(code) if isinstance(code, str) else None,
                erc165=erc165,
                erc20=erc20,
                erc721=erc721,
                erc1155=erc1155,
                detected_by="+".join(ways) or "none",
            )
        )
    return out
