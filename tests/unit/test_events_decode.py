"""Decoding registry logs by ABI and tracked-wallet transfers into events; alerts firing."""

from __future__ import annotations

import datetime as dt

import polars as pl
from eth_abi import encode
from eth_utils import keccak

from assets.events.chain_events import (
    NO_CONTRACTS,
    ChainEventsModel,
    chain_events_frame,
    contracts_summary,
    frame_events,
)
from chainlake.config import ContractConfig
from chainlake.events.alerts import Alert, dataset_of, fire_alerts
from chainlake.events.decode import abi_events, event_abis, registry_events

TS = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)
IDENTITY = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
REPUTATION = "0xe7f1725e7734ce288f8367e1bb143e90bb3f0512"
VALIDATION = "0x9fe46736679d2d9a65f0992f2272de9f3c7a6e0d"
CLIENT = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
OWNER = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


def ev(name: str, inputs: list[tuple[str, str, bool]]) -> dict:
    return {"type": "event", "name": name, "anonymous": False,
            "inputs": [{"name": n, "type": t, "indexed": i} for n, t, i in inputs]}  # fmt: skip


# The devnet contracts' events (tools/devnet/contracts/*.sol), as their ABI says them, by the
# name of their ABI in chainlake/abis/.
ABIS = {
    "identity_registry": event_abis("identity", [
        ev("Registered", [("agentId", "uint256", True), ("tokenURI", "string", False), ("owner", "address", True)]),
        ev("MetadataSet", [("agentId", "uint256", True), ("indexedKey", "string", True), ("key", "string", False), ("value", "bytes", False)]),
    ]),
    "reputation_registry": event_abis("reputation", [
        ev("NewFeedback", [("agentId", "uint256", True), ("clientAddress", "address", True), ("score", "uint8", False),
                           ("tag1", "bytes32", True), ("tag2", "bytes32", False), ("fileuri", "string", False), ("filehash", "bytes32", False)]),
        ev("FeedbackRevoked", [("agentId", "uint256", True), ("clientAddress", "address", True), ("feedbackIndex", "uint64", True)]),
    ]),
    "validation_registry": event_abis("validation", [
        ev("ValidationResponse", [("validatorAddress", "address", True), ("agentId", "uint256", True), ("requestHash", "bytes32", True),
                                  ("response", "uint8", False), ("responseUri", "string", False), ("responseHash", "bytes32", False), ("tag", "bytes32", False)]),
    ]),
}  # fmt: skip


def topic(abi_type: str, value: object) -> str:
    if abi_type in ("string", "bytes"):  # an indexed dynamic value is its keccak hash
        return "0x" + bytes(value).hex()  # type: ignore[arg-type]
    return "0x" + encode([abi_type], [value]).hex()


def log(
    address: str,
    registry: str,
    name: str,
    indexed: list[tuple[str, object]],
    plain: list[tuple[str, object]],
    block: int,
    index: int,
) -> dict:
    sig = next(e for e in ABIS[f"{registry}_registry"] if e.name == name)
    topics = [sig.topic0] + [topic(t, v) for t, v in indexed]
    topics += [None] * (4 - len(topics))
    return {
        "chain_id": 31337, "date": TS.date(), "block_number": block, "block_hash": "0x" + "ab" * 32,
        "block_timestamp": TS, "transaction_hash": "0x" + f"{block:02x}" * 32, "transaction_index": 0,
        "log_index": index, "address": address, "topic0": topics[0], "topic1": topics[1],
        "topic2": topics[2], "topic3": topics[3],
        "data": "0x" + encode([t for t, _ in plain], [v for _, v in plain]).hex(),
    }  # fmt: skip


def logs_frame() -> pl.DataFrame:
    file_hash = keccak(b"feedback file")
    rows = [
        log(IDENTITY, "identity", "Registered", [("uint256", 1), ("address", OWNER)], [("string", "data:application/json,{}")], 10, 0),
        log(IDENTITY, "identity", "MetadataSet", [("uint256", 1), ("string", keccak(text="role"))], [("string", "role"), ("bytes", b"trader")], 10, 1),
        log(REPUTATION, "reputation", "NewFeedback", [("uint256", 1), ("address", CLIENT), ("bytes32", b"quality".ljust(32, b"\0"))],
            [("uint8", 17), ("bytes32", b"speed".ljust(32, b"\0")), ("string", "ipfs://fb1"), ("bytes32", file_hash)], 11, 0),
        log(REPUTATION, "reputation", "FeedbackRevoked", [("uint256", 1), ("address", CLIENT), ("uint64", 1)], [], 12, 3),
        log(VALIDATION, "validation", "ValidationResponse", [("address", CLIENT), ("uint256", 1), ("bytes32", b"\x11" * 32)],
            [("uint8", 40), ("string", "https://v/1"), ("bytes32", b"\x22" * 32), ("bytes32", b"kyc".ljust(32, b"\0"))], 12, 4),
        # not a registry contract: ignored
        log("0x" + "99" * 20, "identity", "Registered", [("uint256", 9), ("address", OWNER)], [("string", "x")], 13, 0),
    ]  # fmt: skip
    return pl.DataFrame(rows)


def transfers_frame() -> pl.DataFrame:
    base = {"chain_id": 31337, "date": TS.date(), "block_hash": "0x" + "cd" * 32, "block_timestamp": TS,
            "transaction_index": 0, "token_address": "0x" + "aa" * 20}  # fmt: skip
    rows = [
        {**base, "block_number": 11, "transaction_hash": "0x" + "01" * 32, "log_index": 1,
         "from_address": OWNER, "to_address": CLIENT, "value": None, "value_raw": str(10**40)},
        {**base, "block_number": 11, "transaction_hash": "0x" + "02" * 32, "log_index": 2,
         "from_address": "0x" + "77" * 20, "to_address": "0x" + "78" * 20, "value": 5, "value_raw": "5"},
    ]  # fmt: skip
    return pl.DataFrame(rows)


def contract(name: str, address: str, start_block: int = 0) -> ContractConfig:
    return ContractConfig(
        name=name, address=address, abi=f"{name}_registry", start_block=start_block
    )


CONTRACTS = [
    contract("identity", IDENTITY),
    contract("reputation", REPUTATION),
    contract("validation", VALIDATION),
]


def test_registry_and_transfer_events() -> None:
    contracts = CONTRACTS
    frame = chain_events_frame(
        logs_frame(), transfers_frame(), contracts=contracts, tracked=[CLIENT], abis=ABIS
    )
    ChainEventsModel.validate(frame)
    events = {e["id"]: e for e in frame_events(frame)}
    assert list(events) == [
        "31337-10-0",
        "31337-10-1",
        "31337-11-0",
        "31337-11-1",
        "31337-12-3",
        "31337-12-4",
    ]
    reg = events["31337-10-0"]
    assert (reg["registry"], reg["event_type"], reg["agent_id"], reg["owner"], reg["token_uri"]) == (
        "identity", "Registered", 1, OWNER, "data:application/json,{}")  # fmt: skip
    assert reg["timestamp"] == int(TS.timestamp()) and reg["data"]["contract"] == IDENTITY
    meta = events["31337-10-1"]
    assert (meta["metadata_key"], meta["metadata_value"]) == ("role", "trader")
    assert meta["data"]["indexedKey_hash"].startswith("0x")
    fb = events["31337-11-0"]
    assert (fb["score"], fb["client_address"], fb["tag1"], fb["tag2"], fb["file_uri"]) == (
        17,
        CLIENT,
        "quality",
        "speed",
        "ipfs://fb1",
    )
    assert fb["file_hash"] == "0x" + keccak(b"feedback file").hex()
    assert events["31337-12-3"]["feedback_index"] == 1
    val = events["31337-12-4"]
    assert (val["validator_address"], val["response"], val["tag"], val["request_hash"]) == (
        CLIENT,
        40,
        "kyc",
        "0x" + "11" * 32,
    )
    tr = events["31337-11-1"]
    # a uint256 beyond Decimal(38,0) stays exact
    assert (tr["registry"], tr["amount"], tr["to_address"], tr["data"]["direction"]) == (
        "erc20",
        str(10**40),
        CLIENT,
        "in",
    )


def test_only_configured_contracts_from_their_start_block_are_decoded() -> None:
    logs = logs_frame()
    # the identity registry alone, from block 10: both of its logs (blocks 10) are decoded
    only_identity = registry_events(logs, [contract("identity", IDENTITY, 10)], ABIS)
    assert [(e["id"], e["registry"]) for e in only_identity] == [
        ("31337-10-0", "identity"),
        ("31337-10-1", "identity"),
    ]
    # from block 11: its logs at block 10 are before the contract, not decoded
    assert registry_events(logs, [contract("identity", IDENTITY, 11)], ABIS) == []
    # reputation from block 12: the feedback of block 11 is skipped, the revocation is not
    late = registry_events(logs, [contract("reputation", REPUTATION, 12)], ABIS)
    assert [(e["id"], e["event_type"]) for e in late] == [("31337-12-3", "FeedbackRevoked")]
    # the same Registered log at 0x9999… (block 13) is decoded once that address is configured
    other = "0x" + "99" * 20
    assert [e["id"] for e in registry_events(logs, [contract("identity", other)], ABIS)] == [
        "31337-13-0"
    ]
    # no contracts: no registry events, only the tracked-wallet transfer
    frame = chain_events_frame(logs, transfers_frame(), contracts=[], tracked=[CLIENT], abis=ABIS)
    assert frame["registry"].to_list() == ["erc20"]


def test_an_address_is_decoded_with_its_own_abi() -> None:
    """The identity registry's log read as if the address were a reputation registry: no
    event (topic0 is not one of that ABI's), rather than a wrong one."""
    wrong = ContractConfig(
        name="mislabelled", address=IDENTITY, abi="reputation_registry", start_block=0
    )
    assert registry_events(logs_frame(), [wrong], ABIS) == []


def test_metadata_says_when_no_contracts_are_configured() -> None:
    assert contracts_summary([]) == NO_CONTRACTS == "(none configured in chains.yaml)"
    assert contracts_summary([contract("identity", IDENTITY, 5)]) == (
        f"identity (identity_registry) {IDENTITY} from block 5"
    )


def test_alerts_fire_once_per_subject_and_day() -> None:
    balances = pl.DataFrame({"wallet_name": ["treasury", "treasury", "hot"], "token_symbol": ["ETH", "USDC", "ETH"],
                             "balance": [4.0, 10.0, 3.0]})  # fmt: skip
    alerts = [
        Alert("a1", "Low treasury", 'wallet_balances.filter((pl.col("wallet_name") == "treasury") & (pl.col("balance") < 10))'),
        Alert("a2", "Any low ETH", 'token_symbol == "ETH" and balance < 5'),
        Alert("a3", "Drawdown", 'risk_metrics.filter(pl.col("max_drawdown") < -0.2)'),
        Alert("a4", "Off", "balance < 100", active=False),
    ]  # fmt: skip
    day = dt.date(2026, 11, 2)
    out = fire_alerts(alerts, "wallet_balances", balances, chain_id=31337, day=day)
    assert [(e["alert_id"], e["data"]["subject"]["wallet_name"]) for e in out] == [
        ("a1", "treasury"),
        ("a2", "treasury"),
        ("a2", "hot"),
    ]
    again = fire_alerts(
        alerts,
        "wallet_balances",
        balances.with_columns(pl.col("balance") + 0.5),
        chain_id=31337,
        day=day,
    )
    assert [e["id"] for e in again] == [
        e["id"] for e in out
    ]  # same subject, same day: same event id
    assert out[0]["registry"] == "analytics" and out[0]["data"]["alert_value"]["balance"] == 4.0
    assert dataset_of(alerts[2].expression) == "risk_metrics" and dataset_of("balance < 1") is None


def test_the_shipped_abis_decode_like_the_sources_say() -> None:
    """The ABIs in chainlake/abis give the topics and arguments the hand-written ABIs give, and
    decoding with them (the default) finds every registry event of the fixture."""
    shipped = abi_events(ABIS)
    for name, events in ABIS.items():
        by_name = {e.name: e for e in shipped[name]}
        for e in events:
            assert by_name[e.name].topic0 == e.topic0, (name, e.name)
            assert by_name[e.name].inputs == e.inputs
            assert by_name[e.name].registry == e.registry
    assert registry_events(logs_frame(), CONTRACTS) == registry_events(
        logs_frame(), CONTRACTS, ABIS
    )
