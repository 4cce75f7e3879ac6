"""Pure parts of token metadata, NFT transfers and contracts: answer decoding, the transforms
and the Pandera rules that can fail (the chain-facing parts run against anvil in
tests/integration/test_chain_tokens.py)."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl
import pytest
from eth_abi import encode

from assets.core.contracts import (
    ContractsModel,
    contracts_frame,
    created_by_contracts,
    created_by_transactions,
)
from assets.core.nft_transfers import (
    TRANSFER_BATCH_TOPIC,
    TRANSFER_SINGLE_TOPIC,
    TRANSFER_TOPIC,
    NftTransfersModel,
    decode_batch,
    nft_transfers_frame,
)
from assets.core.tokens import TokenMetadataError, TokensModel, tokens_frame
from chainlake.config import ChainConfig
from chainlake.raw.logs import LogsModel
from chainlake.rpc import RpcError
from chainlake.schema import polars_schema
from chainlake.tokens import (
    EMPTY_CODE_HASH,
    ContractFacts,
    TokenMetadata,
    decode_bool,
    decode_text,
    decode_uint,
    is_execution_error,
)

DAY = dt.date(2026, 11, 2)
A = "0x" + "a1" * 20
B = "0x" + "b2" * 20
OP = "0x" + "0c" * 20
NFT = "0x" + "11" * 20
MULTI = "0x" + "22" * 20
ZERO = "0x" + "00" * 20


def _topic(address: str) -> str:
    return "0x" + address[2:].rjust(64, "0")


def _word(n: int) -> str:
    return f"{n:064x}"


def test_text_answers_string_bytes32_and_garbage() -> None:
    assert decode_text("0x" + encode(["string"], ["USD Coin"]).hex()) == "USD Coin"
    assert decode_text("0x" + b"MKR".ljust(32, b"\0").hex()) == "MKR"
    assert decode_text("0x" + encode(["string"], [""]).hex()) is None
    assert decode_text("0x") is None and decode_text(None) is None
    assert decode_text("0x" + "ff" * 32) is None  # not UTF-8
    assert decode_text("0x1234") is None  # short
    # an offset past the data is not read as a string; its 64 bytes are not a bytes32
    assert decode_text("0x" + _word(4096) + _word(3)) is None
    assert decode_uint("0x" + _word(6)) == 6 and decode_uint("0x") is None
    assert decode_bool("0x" + _word(1)) and not decode_bool("0x" + _word(2))
    assert not decode_bool("0x")


def test_execution_errors_are_told_from_node_failures() -> None:
    assert is_execution_error(
        RpcError("eth_call", [], {"code": 3, "message": "execution reverted"})
    )
    assert is_execution_error(
        RpcError("eth_call", [], {"code": -32000, "message": "invalid opcode: INVALID"})
    )
    assert not is_execution_error(
        RpcError("eth_call", [], {"code": -32000, "message": "BlockOutOfRangeError: block height is 10"})
    )  # fmt: skip
    assert not is_execution_error(
        RpcError("eth_call", [], {"code": -32000, "message": "missing trie node"})
    )


def _chain(tokens: list[dict[str, object]]) -> ChainConfig:
    return ChainConfig.model_validate(
        {"name": "devnet", "network": "devnet", "subnet": "local", "chain_id": 31337,
         "rpc_urls": ["http://127.0.0.1:1"], "start_date": "2026-11-01", "tokens": tokens}
    )  # fmt: skip


def test_tokens_frame_sources_and_errors() -> None:
    huge = 2**255
    meta = [
        TokenMetadata(A, True, "Alpha", "ALP", 18, huge),
        TokenMetadata(B, False, None, None, None, None),
    ]
    df = tokens_frame(_chain([{"address": A}, {"address": B, "symbol": "BEE"}]), DAY, 9, meta)
    TokensModel.validate(df)
    a, b = df.sort("token_address").iter_rows(named=True)
    assert (a["symbol"], a["symbol_source"], a["decimals"], a["decimals_source"]) == (
        "ALP",
        "chain",
        18,
        "chain",
    )
    assert a["total_supply"] is None and a["total_supply_raw"] == str(huge)  # exact, too wide
    assert (b["has_code"], b["symbol"], b["symbol_source"], b["decimals"]) == (
        False,
        "BEE",
        "override",
        None,
    )
    with pytest.raises(
        TokenMetadataError, match=r"chain 'devnet': token ALP .*override 6.*decimals\(\) = 18"
    ):
        tokens_frame(_chain([{"address": A, "decimals": 6}]), DAY, 9, meta[:1])


def _tokens_row(**changes: object) -> pl.DataFrame:
    df = tokens_frame(
        _chain([{"address": A}]), DAY, 9, [TokenMetadata(A, True, "Alpha", "ALP", 18, 5)]
    )
    return df.with_columns(**{k: pl.lit(v, df.schema[k]) for k, v in changes.items()})


@pytest.mark.parametrize(
    "changes",
    [
        {"decimals": 6},  # differs from what the chain answered
        {"decimals_source": "override"},  # the chain answered: its source is the chain
        {"symbol": "OTHER"},  # a chain symbol that is not the chain's
        {"decimals": None, "decimals_source": None},  # a deployed token without decimals
        {"total_supply_raw": "-5"},
    ],
)
def test_tokens_model_rules_fail(changes: dict[str, object]) -> None:
    with pytest.raises(pa.errors.SchemaError):
        TokensModel.validate(_tokens_row(**changes))


def _logs(rows: list[dict[str, object]]) -> pl.DataFrame:
    base = {"chain_id": 31337, "date": DAY, "block_hash": "0x" + "ab" * 32,
            "block_timestamp": dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC),
            "transaction_hash": "0x" + "cd" * 32, "transaction_index": 0, "topic3": None}  # fmt: skip
    full = [{**base, "block_number": 5, "log_index": i, **r} for i, r in enumerate(rows)]
    return pl.DataFrame(full, schema=polars_schema(LogsModel))


def test_nft_transfers_one_row_per_id_and_malformed_logs_left_out() -> None:
    batch = "0x" + encode(["uint256[]", "uint256[]"], [[1, 2**200, 3], [10, 20, 2**130]]).hex()
    logs = _logs([
        # ERC-721 mint of a huge id (4 topics, no data)
        {"address": NFT, "topic0": TRANSFER_TOPIC, "topic1": _topic(ZERO), "topic2": _topic(A),
         "topic3": "0x" + "ff" * 32, "data": "0x"},
        # ERC-20 transfer (3 topics): not an NFT
        {"address": NFT, "topic0": TRANSFER_TOPIC, "topic1": _topic(A), "topic2": _topic(B),
         "data": "0x" + _word(7)},
        {"address": MULTI, "topic0": TRANSFER_SINGLE_TOPIC, "topic1": _topic(OP),
         "topic2": _topic(A), "topic3": _topic(B), "data": "0x" + _word(4) + _word(9)},
        {"address": MULTI, "topic0": TRANSFER_BATCH_TOPIC, "topic1": _topic(OP),
         "topic2": _topic(A), "topic3": _topic(B), "data": batch},
        # malformed: single with one word; batch with arrays of different lengths; 721 with data
        {"address": MULTI, "topic0": TRANSFER_SINGLE_TOPIC, "topic1": _topic(OP),
         "topic2": _topic(A), "topic3": _topic(B), "data": "0x" + _word(4)},
        {"address": MULTI, "topic0": TRANSFER_BATCH_TOPIC, "topic1": _topic(OP),
         "topic2": _topic(A), "topic3": _topic(B),
         "data": "0x" + encode(["uint256[]", "uint256[]"], [[1, 2], [3]]).hex()},
        {"address": NFT, "topic0": TRANSFER_TOPIC, "topic1": _topic(A), "topic2": _topic(B),
         "topic3": _topic(ZERO), "data": "0x" + _word(1)},
    ])  # fmt: skip
    df, malformed = nft_transfers_frame(logs)
    NftTransfersModel.validate(df)
    assert malformed == 3
    got = [
        (r["log_index"], r["batch_index"], r["standard"], r["event"], r["operator"],
         r["from_address"], r["to_address"], r["token_id"], r["amount_raw"],
         None if r["amount"] is None else str(r["amount"]))
        for r in df.iter_rows(named=True)
    ]  # fmt: skip
    assert got == [
        (0, 0, "erc721", "Transfer", None, ZERO, A, str(2**256 - 1), "1", "1"),
        (2, 0, "erc1155", "TransferSingle", OP, A, B, "4", "9", "9"),
        (3, 0, "erc1155", "TransferBatch", OP, A, B, "1", "10", "10"),
        (3, 1, "erc1155", "TransferBatch", OP, A, B, str(2**200), "20", "20"),
        (3, 2, "erc1155", "TransferBatch", OP, A, B, "3", str(2**130), None),
    ]
    assert decode_batch("0x" + _word(64) + _word(10**6) + _word(0)) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"operator": OP},  # an ERC-721 row with an operator
        {"amount_raw": "2"},  # an ERC-721 row moving two units
        {"batch_index": 1},  # outside a batch
        {"event": "TransferSingle"},
        {"token_id": "0x1f"},
    ],
)
def test_nft_model_rules_fail(changes: dict[str, object]) -> None:
    logs = _logs([{"address": NFT, "topic0": TRANSFER_TOPIC, "topic1": _topic(ZERO),
                   "topic2": _topic(A), "topic3": _topic(ZERO), "data": "0x"}])  # fmt: skip
    df, _ = nft_transfers_frame(logs)
    bad = df.with_columns(**{k: pl.lit(v, df.schema[k]) for k, v in changes.items()})
    with pytest.raises(pa.errors.SchemaError):
        NftTransfersModel.validate(bad)


def _created() -> pl.DataFrame:
    txs = pl.DataFrame(
        {"chain_id": [31337] * 3, "date": [DAY] * 3, "block_number": [5, 5, 6],
         "block_timestamp": [dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)] * 3,
         "transaction_hash": ["0x" + c * 64 for c in "123"], "transaction_index": [0, 1, 0],
         "from_address": [A, A, B], "contract_address": [NFT, MULTI, None], "status": [1, 0, 1]},
    ).cast({"transaction_index": pl.Int32, "status": pl.Int32})  # fmt: skip
    return created_by_transactions(txs)


def test_contracts_come_from_successful_creations_only() -> None:
    created = _created()
    assert created["contract_address"].to_list() == [NFT]  # the failed one is left out
    facts = [ContractFacts(NFT, 100, "0x" + "e" * 64, True, False, True, False, "erc165")]
    df = contracts_frame(created, facts)
    ContractsModel.validate(df)
    assert df.select("deployer", "creator", "trace_address", "source", "is_erc721").row(0) == (
        A, A, "", "receipt", True,
    )  # fmt: skip


FACTORY = "0x" + "fa" * 20
CHILD = "0x" + "c1" * 20


def test_contracts_created_by_contracts_come_from_create_frames_that_stood() -> None:
    ts = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)
    tx = "0x" + "3" * 64
    frames = pl.DataFrame(
        {"chain_id": [31337] * 5, "date": [DAY] * 5, "block_number": [6] * 5,
         "block_timestamp": [ts] * 5, "transaction_hash": [tx] * 5, "transaction_index": [0] * 5,
         "trace_index": [0, 1, 2, 3, 4],
         "trace_address": ["", "0", "1", "1,0", "2"],
         "depth": [0, 1, 1, 2, 1],
         "trace_type": ["call", "create", "call", "create", "create"],
         "from_address": [B, FACTORY, FACTORY, FACTORY, FACTORY],
         "to_address": [FACTORY, CHILD, A, MULTI, None],  # the last creation failed
         "reverted": [False, False, True, True, True]},  # "1" reverted with its child "1,0"
    ).cast({"transaction_index": pl.Int32, "trace_index": pl.Int32, "depth": pl.Int32})  # fmt: skip
    txs = pl.DataFrame({"transaction_hash": [tx], "from_address": [B]})
    created = created_by_contracts(frames, txs)
    assert created.select(
        "contract_address", "deployer", "creator", "trace_address", "source"
    ).rows() == [(CHILD, B, FACTORY, "0", "trace")]
    facts = [ContractFacts(CHILD, 10, "0x" + "e" * 64, False, False, False, False, "none")]
    ContractsModel.validate(contracts_frame(created, facts))
    # a creation by a contract claiming to be the transaction's own is refused
    bad = contracts_frame(created.with_columns(trace_address=pl.lit("")), facts)
    with pytest.raises(pa.errors.SchemaError):
        ContractsModel.validate(bad)


@pytest.mark.parametrize(
    "facts",
    [
        ContractFacts(NFT, 100, "0x" + "e" * 64, True, True, True, False, "erc165"),  # 20 and 721
        ContractFacts(NFT, 100, "0x" + "e" * 64, False, True, False, False, "none"),  # says none
        ContractFacts(
            NFT, 0, "0x" + "e" * 64, False, False, False, False, "none"
        ),  # no code, a hash
        ContractFacts(NFT, 0, EMPTY_CODE_HASH, False, True, False, False, "selectors"),
    ],
)
def test_contracts_model_rules_fail(facts: ContractFacts) -> None:
    with pytest.raises(pa.errors.SchemaError):
        ContractsModel.validate(contracts_frame(_created(), [facts]))


def test_a_catalog_file_whose_tokens_decimals_were_not_null_takes_null_decimals() -> None:
    # catalogs written before decimals were read from the chain declared tokens.decimals NOT
    # NULL; the table (config-derived) is created anew, and a token without override loads
    import duckdb

    from assets.serving.catalog import TABLES, catalog_frames, sync_table
    from chainlake.portfolios import PortfolioBook

    tokens_table = next(t for t in TABLES if t.name == "tokens")
    chain = _chain([{"address": A, "symbol": "ALP"}, {"address": B, "decimals": 6}])
    frame = catalog_frames(PortfolioBook(), {"devnet": chain})["tokens"]
    conn = duckdb.connect()
    conn.execute(
        tokens_table.create_sql().replace('"decimals" INTEGER,', '"decimals" INTEGER NOT NULL,')
    )
    assert "decimals" in {
        r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'tokens' "
            "AND is_nullable = 'NO'"
        ).fetchall()
    }  # fmt: skip
    sync_table(conn, tokens_table, frame)
    got = conn.execute("SELECT symbol, decimals FROM tokens ORDER BY symbol").fetchall()
    assert got == [(B, 6), ("ALP", None), ("ETH", 18)]
