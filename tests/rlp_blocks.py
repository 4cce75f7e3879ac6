"""Turn a block and its receipts in consensus (RLP) form, as `debug_getRawBlock` and
`debug_getRawReceipts` return them, into the JSON-RPC objects a node would serve
(`eth_getBlockByNumber(n, true)`, `eth_getBlockReceipts(n)`).

Only what the chain commits to is in the RLP; the rest is derived the way nodes derive it:
hashes are keccak of the encodings, senders are recovered from the signatures, gasUsed is
the difference of cumulative gas, effectiveGasPrice follows EIP-1559, blob gas EIP-4844, and
contract addresses keccak(rlp([sender, nonce])). `totalDifficulty` cannot be derived (null).
The test that uses this checks the result against the JSON receipts recorded for the same
block, so a mistake here fails there.
"""

from __future__ import annotations

from typing import Any

import rlp
from eth_keys import keys
from eth_utils import keccak

HEADER_FIELDS = [
    "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot", "receiptsRoot",
    "logsBloom", "difficulty", "number", "gasLimit", "gasUsed", "timestamp", "extraData",
    "mixHash", "nonce", "baseFeePerGas", "withdrawalsRoot", "blobGasUsed", "excessBlobGas",
    "parentBeaconBlockRoot", "requestsHash",
]  # fmt: skip
QUANTITIES = {"difficulty", "number", "gasLimit", "gasUsed", "timestamp", "baseFeePerGas",
              "blobGasUsed", "excessBlobGas"}  # fmt: skip
GAS_PER_BLOB = 131_072
BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN = 3_338_477


def data(b: bytes) -> str:
    return "0x" + b.hex()


def qty(b: bytes | int) -> str:
    return hex(b if isinstance(b, int) else int.from_bytes(b, "big"))


def num(b: bytes) -> int:
    return int.from_bytes(b, "big")


def fake_exponential(factor: int, numerator: int, denominator: int) -> int:
    """EIP-4844's blob base fee approximation."""
    i, output, accum = 1, 0, factor * denominator
    while accum > 0:
        output += accum
        accum = (accum * numerator) // (denominator * i)
        i += 1
    return output // denominator


def header_json(raw_header: bytes) -> dict[str, Any]:
    fields = rlp.decode(raw_header)
    out: dict[str, Any] = {"hash": data(keccak(raw_header))}
    for name, value in zip(HEADER_FIELDS, fields, strict=False):
        out[name] = qty(value) if name in QUANTITIES else data(value)
    return out


def _access_list(items: list[Any]) -> list[dict[str, Any]]:
    return [{"address": data(a), "storageKeys": [data(k) for k in ks]} for a, ks in items]


def transaction_json(raw: bytes | list[Any], chain_id: int) -> dict[str, Any]:
    """One transaction of a block body: a legacy RLP list, or type byte + RLP payload."""
    if isinstance(raw, list):
        encoded = rlp.encode(raw)
        nonce, gas_price, gas, to, value, input_, v, r, s = raw
        v_n = num(v)
        if v_n >= 35:
            unsigned = [nonce, gas_price, gas, to, value, input_, (v_n - 35) // 2, 0, 0]
            rec = (v_n - 35) % 2
        else:
            unsigned = [nonce, gas_price, gas, to, value, input_]
            rec = v_n - 27
        tx: dict[str, Any] = {"type": "0x0", "gasPrice": qty(gas_price), "v": qty(v)}
        if v_n >= 35:
            tx["chainId"] = qty((v_n - 35) // 2)
        sighash = keccak(rlp.encode(unsigned))
    else:
        encoded = bytes(raw)
        kind, fields = encoded[0], rlp.decode(encoded[1:])
        tx = {"type": qty(kind), "chainId": qty(fields[0])}
        if kind == 1:
            _, nonce, gas_price, gas, to, value, input_, access, y, r, s = fields
            tx["gasPrice"] = qty(gas_price)
        elif kind in (2, 3):
            _, nonce, tip, fee_cap, gas, to, value, input_, access = fields[:9]
            tx["maxPriorityFeePerGas"], tx["maxFeePerGas"] = qty(tip), qty(fee_cap)
            if kind == 3:
                blob_fee, hashes, y, r, s = fields[9:]
                tx["maxFeePerBlobGas"] = qty(blob_fee)
                tx["blobVersionedHashes"] = [data(h) for h in hashes]
            else:
                y, r, s = fields[9:]
        else:
            raise ValueError(f"transaction type {kind} not handled")
        tx["accessList"] = _access_list(access)
        tx["yParity"] = tx["v"] = qty(y)
        rec = num(y)
        sighash = keccak(bytes([kind]) + rlp.encode(fields[:-3]))
    signature = keys.Signature(vrs=(rec, num(r), num(s)))
    sender = signature.recover_public_key_from_msg_hash(sighash).to_canonical_address()
    tx.update(
        hash=data(keccak(encoded)),
        nonce=qty(nonce),
        gas=qty(gas),
        to=data(to) if to else None,
        value=qty(value),
        input=data(input_),
        r=qty(r),
        s=qty(s),
        **{"from": data(sender)},
    )
    return tx


def block_json(raw_block: bytes, chain_id: int = 1) -> dict[str, Any]:
    items = rlp.decode(raw_block)
    header_raw = rlp.encode(items[0])
    block = header_json(header_raw)
    txs = [transaction_json(t, chain_id) for t in items[1]]
    for i, tx in enumerate(txs):
        tx.update(blockHash=block["hash"], blockNumber=block["number"], transactionIndex=hex(i))
    block["transactions"] = txs
    block["uncles"] = [data(keccak(rlp.encode(u))) for u in items[2]]
    if len(items) > 3:
        block["withdrawals"] = [
            {"index": qty(i), "validatorIndex": qty(v), "address": data(a), "amount": qty(m)}
            for i, v, a, m in items[3]
        ]
    block["size"] = hex(len(raw_block))
    return block


def receipts_json(raw_receipts: list[bytes], block: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    previous = 0
    log_index = 0
    base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
    excess = block.get("excessBlobGas")
    blob_price = (
        None
        if excess is None
        else fake_exponential(1, int(excess, 16), BLOB_BASE_FEE_UPDATE_FRACTION_CANCUN)
    )
    for i, (raw, tx) in enumerate(zip(raw_receipts, block["transactions"], strict=True)):
        kind = raw[0] if raw[0] < 0x7F else 0
        outcome, cumulative, bloom, logs = rlp.decode(raw[1:] if kind else raw)
        cumulative_n = num(cumulative)
        if tx["type"] in ("0x0", "0x1"):
            price = int(tx["gasPrice"], 16)
        else:
            price = min(int(tx["maxFeePerGas"], 16), base_fee + int(tx["maxPriorityFeePerGas"], 16))
        rc: dict[str, Any] = {
            "type": qty(kind),
            "transactionHash": tx["hash"],
            "transactionIndex": hex(i),
            "blockHash": block["hash"],
            "blockNumber": block["number"],
            "from": tx["from"],
            "to": tx["to"],
            "cumulativeGasUsed": qty(cumulative_n),
            "gasUsed": qty(cumulative_n - previous),
            "effectiveGasPrice": qty(price),
            "logsBloom": data(bloom),
            "contractAddress": None,
            "logs": [],
        }
        if len(outcome) == 32:
            rc["root"] = data(outcome)
        else:
            rc["status"] = qty(outcome)
        if tx["to"] is None:
            creator = bytes.fromhex(tx["from"][2:])
            rc["contractAddress"] = data(keccak(rlp.encode([creator, int(tx["nonce"], 16)]))[12:])
        if tx["type"] == "0x3":
            rc["blobGasUsed"] = qty(GAS_PER_BLOB * len(tx["blobVersionedHashes"]))
            rc["blobGasPrice"] = qty(blob_price or 0)
        for address, topics, payload in logs:
            rc["logs"].append(
                {
                    "address": data(address),
                    "topics": [data(t) for t in topics],
                    "data": data(payload),
                    "blockNumber": block["number"],
                    "blockHash": block["hash"],
                    "transactionHash": tx["hash"],
                    "transactionIndex": hex(i),
                    "logIndex": hex(log_index),
                    "blockTimestamp": block["timestamp"],
                    "removed": False,
                }
            )
            log_index += 1
        previous = cumulative_n
        out.append(rc)
    return out
