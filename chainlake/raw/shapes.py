"""The JSON-RPC shapes of blocks, transactions, receipts and logs, as Polars structs.

Every value is a string, as the node sends it; fields of later forks are absent (null) in
earlier blocks. The raw datasets (`chainlake.raw.blocks`, `.transactions`, `.logs`) parse
these frames; extraction (`chainlake.extract`) builds them from the node's answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

S = pl.String

# One log object of a receipt, as JSON-RPC returns it (every value a string).
RPC_LOG = pl.Struct(
    {
        "address": S,
        "topics": pl.List(S),
        "data": S,
        "blockNumber": S,
        "blockHash": S,
        "transactionHash": S,
        "transactionIndex": S,
        "logIndex": S,
        "removed": pl.Boolean,
    }
)


# A transaction object of `eth_getBlockByNumber(n, true)`, every value a string.
RPC_TRANSACTION = pl.Struct(
    {
        "hash": S,
        "nonce": S,
        "blockHash": S,
        "blockNumber": S,
        "transactionIndex": S,
        "from": S,
        "to": S,
        "value": S,
        "gas": S,
        "gasPrice": S,
        "maxFeePerGas": S,
        "maxPriorityFeePerGas": S,
        "maxFeePerBlobGas": S,
        "input": S,
        "type": S,
        "chainId": S,
        "v": S,
        "r": S,
        "s": S,
        "yParity": S,
        # OP-stack deposit transactions (type 0x7e): the ether minted to `from` on L2
        "mint": S,
        "accessList": pl.List(pl.Struct({"address": S, "storageKeys": pl.List(S)})),
        "blobVersionedHashes": pl.List(S),
        "authorizationList": pl.List(
            pl.Struct(
                {
                    "chainId": S,
                    "address": S,
                    "nonce": S,
                    "yParity": S,
                    "r": S,
                    "s": S,
                }
            )
        ),
    }
)

# A receipt (`eth_getBlockReceipts` item or `eth_getTransactionReceipt`). `logsBloom` is left
# out on purpose: it is not stored, and skipping it saves a quarter of the parsing.
RPC_RECEIPT = pl.Struct(
    {
        "transactionHash": S,
        "transactionIndex": S,
        "blockHash": S,
        "blockNumber": S,
        "from": S,
        "to": S,
        "cumulativeGasUsed": S,
        "gasUsed": S,
        "contractAddress": S,
        "logs": pl.List(RPC_LOG),
        "status": S,
        "root": S,
        "type": S,
        "effectiveGasPrice": S,
        "blobGasUsed": S,
        "blobGasPrice": S,
        # OP-stack chains (Base, Optimism): the L1 data fee the sender paid, in wei
        "l1Fee": S,
        # OP-stack deposits: the sender's nonce, which nodes also serve as the deposit
        # transaction's `nonce` (some providers leave that out)
        "depositNonce": S,
        # OP-stack since Isthmus: the operator fee parameters of the block, on the receipts
        # of non-deposit transactions when either is non-zero (op-geth deriveOPStackFields)
        "operatorFeeScalar": S,
        "operatorFeeConstant": S,
        # OP-stack since Jovian: the DA footprint gas scalar (it marks a Jovian receipt)
        "daFootprintGasScalar": S,
    }
)


# The fields of each shape that JSON-RPC sends as quantities (0x + hex digits, no sign): an
# answer with anything else there is a broken node's (see `chainlake.extract.bad_quantity`).
BLOCK_QUANTITIES = (
    "number", "difficulty", "totalDifficulty", "size", "gasLimit", "gasUsed", "timestamp",
    "baseFeePerGas", "blobGasUsed", "excessBlobGas",
)  # fmt: skip
WITHDRAWAL_QUANTITIES = ("index", "validatorIndex", "amount")
TRANSACTION_QUANTITIES = (
    "nonce", "blockNumber", "transactionIndex", "value", "gas", "gasPrice", "maxFeePerGas",
    "maxPriorityFeePerGas", "maxFeePerBlobGas", "type", "chainId", "yParity", "mint",
)  # fmt: skip
RECEIPT_QUANTITIES = (
    "transactionIndex", "blockNumber", "cumulativeGasUsed", "gasUsed", "status", "type",
    "effectiveGasPrice", "blobGasUsed", "blobGasPrice", "l1Fee", "depositNonce",
    "operatorFeeScalar", "operatorFeeConstant", "daFootprintGasScalar",
)  # fmt: skip
LOG_QUANTITIES = ("blockNumber", "transactionIndex", "logIndex")

RPC_WITHDRAWAL = pl.Struct({"index": S, "validatorIndex": S, "address": S, "amount": S})

# `eth_getBlockByNumber(n, true)` as JSON-RPC returns it, every value a string. Header fields
# of later forks are simply absent (null) in earlier blocks.
RPC_BLOCK = pl.Struct(
    {
        "number": S,
        "hash": S,
        "parentHash": S,
        "nonce": S,
        "sha3Uncles": S,
        "logsBloom": S,
        "transactionsRoot": S,
        "stateRoot": S,
        "receiptsRoot": S,
        "miner": S,
        "difficulty": S,
        "totalDifficulty": S,
        "size": S,
        "extraData": S,
        "mixHash": S,
        "gasLimit": S,
        "gasUsed": S,
        "timestamp": S,
        "baseFeePerGas": S,
        "withdrawalsRoot": S,
        "withdrawals": pl.List(RPC_WITHDRAWAL),
        "blobGasUsed": S,
        "excessBlobGas": S,
        "parentBeaconBlockRoot": S,
        "requestsHash": S,
        "uncles": pl.List(S),
        "transactions": pl.List(RPC_TRANSACTION),
    }
)


# An uncle (ommer) header of `eth_getUncleByBlockHashAndIndex`: the fields raw/blocks keeps.
RPC_UNCLE = pl.Struct({"hash": S, "number": S, "miner": S})
# The uncle headers of a block as the extraction attaches them to its block row (column
# `UNCLE_HEADERS`): `index` is the uncle's position in the block's `uncles`; null when the
# block's uncles were not read.
UNCLE_HEADERS = "_uncle_headers"
RPC_UNCLE_HEADERS = pl.List(pl.Struct({"index": pl.Int32, "hash": S, "number": S, "miner": S}))


def rpc_block_frame(blocks: Sequence[dict[str, Any]]) -> pl.DataFrame:
    """Blocks already decoded into dicts → the raw frame the transforms take: one row per
    block, one string column per JSON field, `_bi` the block's position."""
    frame = pl.DataFrame(list(blocks), schema=dict(RPC_BLOCK.to_schema()), orient="row")
    return frame.with_row_index("_bi")


def rpc_receipt_frame(receipts: Sequence[Sequence[dict[str, Any]]]) -> pl.DataFrame:
    """Receipts already decoded into dicts, one list per block → the flat raw frame that
    `transactions_from_rpc` takes (`_bi`: position of the receipt's block)."""
    flat = [rc for per_block in receipts for rc in per_block]
    frame = pl.DataFrame(flat, schema=dict(RPC_RECEIPT.to_schema()), orient="row")
    index = [i for i, per_block in enumerate(receipts) for _ in per_block]
    return frame.with_columns(pl.Series("_bi", index, dtype=pl.UInt32))
