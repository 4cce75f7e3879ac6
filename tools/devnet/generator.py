"""Deterministic on-chain activity for the local devnet.

``generate()`` deploys the devnet contracts and fills ``days`` UTC days with blocks (evenly
spread through each day by explicit block timestamps) holding a reproducible mix of:

- native ETH transfers between anvil's dev accounts (some of them "tracked" wallets grouped
  into portfolios);
- ERC-20 deployments (USDC-like 6 decimals, LINK-like 18 decimals, plus throw-away tokens),
  transfers, approvals and ``transferFrom``;
- contract creations, directly and by a factory (CREATE and CREATE2);
- failed transactions that are included in blocks with status 0 (string revert, custom error,
  panic, out of gas, ERC-20 overdraft, out-of-range registry score);
- every day, native value moved by internal calls (``PAYOUT_KINDS``): a contract forwarding
  ether, a forward undone by its transaction's revert, a transaction whose reverted sub-call
  paid too, WETH-style deposit and withdraw, a contract created with value by a contract, and
  that contract's SELFDESTRUCT to a beneficiary; the WETH contract and the fee recipient
  (the coinbase, ``FEE_RECIPIENT``, paid every priority fee) are tracked wallets;
- price-feed rounds (``AnswerUpdated`` / ``NewRound``, 8 decimals) for ETH/USD and each token,
  several per day;
- ERC-8004 registry events: agents registered, metadata, feedback (scores, tags, file URIs,
  some empty), revoked feedback, validation requests and responses.

Same seed, same genesis timestamp and a fresh node => the same chain, block hash for block
hash: every transaction carries an explicit nonce, gas limit and fees, anvil orders its pool
first-in first-out, and every block gets an explicit timestamp.

``fill()`` is the fast path for benchmarks: plain ETH transfers, one JSON-RPC batch of
``eth_sendTransaction`` per block, then ``evm_mine``.

The generator mirrors the contracts' rules in a small local model so it knows, before
sending, which transactions succeed; with ``verify=True`` it checks every receipt's status
against that expectation.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import rlp
from eth_utils import keccak

from tools.devnet.anvil import genesis_timestamp
from tools.devnet.artifacts import Artifact, load_artifact
from tools.devnet.collectibles import DAILY_KINDS as COLLECTIBLE_KINDS
from tools.devnet.collectibles import Collectibles
from tools.devnet.configs import (
    read_manifest,
    write_chains_yaml,
    write_manifest,
    write_portfolios_yaml,
    write_registry_addresses,
)
from tools.devnet.manifest import (
    PRICE_DECIMALS,
    DayBlocks,
    DevnetManifest,
    PortfolioInfo,
    TokenInfo,
    WalletInfo,
)

__all__ = [
    "DayBlocks",
    "DevnetManifest",
    "FillResult",
    "GeneratorError",
    "PortfolioInfo",
    "TokenInfo",
    "WalletInfo",
    "fill",
    "generate",
    "read_manifest",
    "write_chains_yaml",
    "write_manifest",
    "write_portfolios_yaml",
    "write_registry_addresses",
]

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400
GWEI = 10**9
ETHER = 10**18
MAX_FEE_PER_GAS = 20 * GWEI
PRICE_UPDATES_PER_DAY = 6
REQUIRED_ACCOUNTS = 20
# Planned gas limits must fit a block, or anvil would push transactions to the next one.
BLOCK_GAS_SHARE = 0.9
HOT_WALLET_START_ETH = 12
HOT_WALLET_DAILY_PAYMENT_ETH = 1

# Gas limits: measured gas used plus headroom; explicit so anvil never estimates (a reverting
# call cannot be estimated) and so the chain is reproducible.
GAS = {
    "eth_transfer": 21_000,
    "deploy_token": 900_000,
    "deploy_feed": 800_000,
    "deploy_registry": 800_000,
    "deploy_factory": 500_000,
    "deploy_faulty": 300_000,
    "deploy_vault": 200_000,
    "token_transfer": 80_000,
    "token_transfer_from": 90_000,
    "token_approve": 60_000,
    "price_update": 120_000,
    "register_agent": 250_000,
    "set_metadata": 200_000,
    "feedback": 250_000,
    "feedback_revoke": 100_000,
    "validation_request": 150_000,
    "validation_response": 120_000,
    "factory_create": 250_000,
    "factory_create2": 260_000,
    "faulty_poke": 80_000,
    "failed_revert": 60_000,
    "failed_custom_error": 60_000,
    "failed_panic": 60_000,
    # Above the EIP-7623 calldata floor (~22.4k) but short of the first cold SLOAD.
    "failed_out_of_gas": 23_000,
    "failed_token_overdraft": 80_000,
    "failed_bad_score": 250_000,
    "failed_not_oracle": 120_000,
    "deploy_payouts": 700_000,
    "payout_fund": 60_000,
    "payout_forward": 80_000,
    "payout_forward_reverted": 80_000,
    "payout_forward_half_reverted": 120_000,
    "weth_deposit": 80_000,
    "weth_withdraw": 80_000,
    "payout_create_doomed": 250_000,
    "payout_destroy_doomed": 60_000,
}

# Native value moved by internal calls, once a day, in this order, in the day's middle block
# (see _World.payouts): what only traces show.
PAYOUT_KINDS = (
    "payout_fund",
    "weth_deposit",
    "payout_create_doomed",
    "payout_forward",
    "payout_forward_reverted",
    "payout_forward_half_reverted",
    "weth_withdraw",
    "payout_destroy_doomed",
)
# The devnet's fee recipient (coinbase), set before the first block: every block's priority
# fees go there. Not anvil's default (the zero address), whose token "balance" goes
# negative with every mint.
FEE_RECIPIENT = "0x00000000000000000000000000000000000fee01"

TOKENS: tuple[tuple[str, str, int, int, float, float], ...] = (
    # symbol, name, decimals, supply (whole tokens), start price (USD), daily volatility
    ("USDC", "USD Coin (devnet)", 6, 1_000_000_000, 1.0, 0.0008),
    ("LINK", "ChainLink Token (devnet)", 18, 100_000_000, 18.5, 0.05),
)
ETH_START_PRICE = 3300.0
ETH_DAILY_VOL = 0.035

FEEDBACK_TAGS_1 = ("quality", "speed", "accuracy", "reliability", "cost")
FEEDBACK_TAGS_2 = ("", "trading", "research", "support", "data", "defi")
VALIDATION_TAGS = ("zkml", "tee", "re-execution", "stake")
AGENT_NAMES = (
    "atlas",
    "beacon",
    "cobalt",
    "delta",
    "ember",
    "fjord",
    "gale",
    "helix",
    "iris",
    "juno",
    "kestrel",
    "lumen",
    "mistral",
    "nova",
    "onyx",
    "pylon",
    "quill",
    "rune",
    "sable",
    "tundra",
)

# Account roles, by index into anvil's dev accounts (default mnemonic).
DEPLOYER = 0
TRACKED = (1, 2, 3, 4, 5, 6, 7, 8, 9)
HOT_WALLET = 9
COUNTERPARTIES = (10, 11, 12, 13, 14)
AGENT_OWNERS = (15, 16, 17)
VALIDATORS = (18, 19)
WALLET_NAMES = {
    0: "deployer",
    1: "treasury-1", 2: "treasury-2", 3: "treasury-3",
    4: "trading-1", 5: "trading-2", 6: "trading-3",
    7: "ops-1", 8: "ops-2", 9: "ops-hot",
    10: "counterparty-1", 11: "counterparty-2", 12: "counterparty-3",
    13: "counterparty-4", 14: "counterparty-5",
    15: "agent-owner-1", 16: "agent-owner-2", 17: "agent-owner-3",
    18: "validator-1", 19: "validator-2",
}  # fmt: skip
PORTFOLIOS = (
    ("treasury", "Long-term holdings", (1, 2, 3)),
    ("trading", "Active trading wallets", (4, 5, 6)),
    ("operations", "Operational wallets, incl. a hot wallet that runs low", (7, 8, 9)),
)

# Filler mix for each block, after the scheduled transactions. Weights, not probabilities.
FILLER_WEIGHTS = {
    "eth_transfer": 30,
    "token_transfer": 30,
    "token_approve": 2,
    "token_transfer_from": 2,
    "feedback": 10,
    "feedback_revoke": 1,
    "validation_request": 4,
    "validation_response": 4,
    "register_agent": 1,
    "set_metadata": 1,
    "factory_create": 1.4,
    "factory_create2": 0.6,
    "deploy_vault": 1,
    "deploy_token": 0.3,
    "faulty_poke": 2,
    "failed": 5,
}
FAILED_KINDS = (
    "failed_revert",
    "failed_custom_error",
    "failed_panic",
    "failed_out_of_gas",
    "failed_token_overdraft",
    "failed_bad_score",
    "failed_not_oracle",
)
# Every day gets at least one of each, spread over the day's blocks in this order (so a
# response follows its request, a revoke follows some feedback, transferFrom an approval).
DAILY_KINDS = (
    "register_agent",
    "token_approve",
    "feedback_with_uri",
    "feedback_empty_uri",
    "validation_request",
    "set_metadata",
    "factory_create",
    "factory_create2",
    "deploy_vault",
    "deploy_token",
    "token_transfer_from",
    "feedback_revoke",
    "validation_response",
    "failed_revert",
    "failed_out_of_gas",
    "failed_token_overdraft",
    *COLLECTIBLE_KINDS,
)


class GeneratorError(RuntimeError):
    """The node refused a request or the chain does not match what was planned."""


# --------------------------------------------------------------------------------------------
# JSON-RPC


class Rpc:
    """Plain JSON-RPC over one keep-alive HTTP connection; batches keep their request order."""

    def __init__(self, url: str, *, timeout: float = 120.0) -> None:
        self.url = url
        self._client = httpx.Client(timeout=timeout)
        self._next_id = 0

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Rpc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, *params: Any) -> Any:
        self._next_id += 1
        body = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)}
        reply = self._client.post(self.url, json=body)
        reply.raise_for_status()
        data = reply.json()
        if "error" in data:
            raise GeneratorError(f"{method} failed: {data['error']}")
        return data["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        first = self._next_id + 1
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": m, "params": list(p)}
            for i, (m, p) in enumerate(calls)
        ]
        self._next_id += len(calls)
        reply = self._client.post(self.url, json=body)
        reply.raise_for_status()
        data = reply.json()
        if not isinstance(data, list):
            raise GeneratorError(f"batch of {len(calls)} failed: {data}")
        by_id = {d.get("id"): d for d in data}
        results = []
        for i, (method, params) in enumerate(calls):
            d = by_id.get(first + i)
            if d is None or "error" in d:
                err = d["error"] if d else "no response"
                raise GeneratorError(f"{method} (#{i} of batch) failed: {err}; params {params}")
            results.append(d["result"])
        return results


def create_address(sender: str, nonce: int) -> str:
    """The address of a contract created by ``sender`` at ``nonce`` (CREATE)."""
    raw = keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:]
    return "0x" + raw.hex()


def bytes32_text(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 32:
        raise ValueError(f"{text!r} does not fit in bytes32")
    return raw.ljust(32, b"\0")


def day_start_timestamp(day: dt.date) -> int:
    return genesis_timestamp(day)


# --------------------------------------------------------------------------------------------
# Planning


@dataclass
class _Tx:
    kind: str
    sender: str
    params: dict[str, Any]
    ok: bool
    gas: int
    on_mined: Any = None  # callable applied to the model once the block is mined


@dataclass
class _Request:
    request_hash: bytes
    validator: str
    agent_id: int
    answers: int = 0


class _World:
    """The generator's model of the chain: balances, nonces, agents, requests, feedback."""

    def __init__(self, rpc: Rpc, rng: random.Random, accounts: list[str]) -> None:
        self.rpc = rpc
        self.rng = rng
        self.accounts = accounts
        self.nonce: dict[str, int] = {}
        self.eth: dict[str, int] = {}
        self.token_address: dict[str, str] = {}
        self.token_decimals: dict[str, int] = {}
        self.token_balance: dict[str, dict[str, int]] = defaultdict(dict)
        self.allowance: dict[tuple[str, str, str], int] = {}
        self.feeds: dict[str, str] = {}
        self.prices: dict[str, float] = {}
        self.registry: dict[str, str] = {}
        self.factory = ""
        self.faulty = ""
        self.forwarder = ""
        self.weth = ""
        self.forwarder_creates = 0  # CREATEs by the forwarder: its next contract's address
        self.internal_transfers = True  # PAYOUT_KINDS every day, WETH and fee recipient tracked
        self.agents: list[tuple[int, str]] = []
        self.agent_quality: dict[int, float] = {}
        self.agent_count = 0
        self.agent_names_used = 0
        self.feedback_flags: dict[tuple[int, str], list[bool]] = defaultdict(list)  # revoked flags
        self.pending_requests: list[_Request] = []
        self.request_count = 0
        self.extra_tokens = 0
        self.vault_labels = 0
        self.file_count = 0
        self.stats: Counter[str] = Counter()
        self.credits: list[tuple[str, str, int]] = []  # (asset, address, amount) at block end
        self.collectibles = Collectibles()  # NFTs and odd ERC-20s (tools/devnet/collectibles.py)

    # --- helpers -------------------------------------------------------------------------

    def acct(self, i: int) -> str:
        return self.accounts[i]

    def load_accounts(self) -> None:
        calls = [("eth_getTransactionCount", [a, "latest"]) for a in self.accounts]
        calls += [("eth_getBalance", [a, "latest"]) for a in self.accounts]
        out = self.rpc.batch(calls)
        n = len(self.accounts)
        for i, a in enumerate(self.accounts):
            self.nonce[a] = int(out[i], 16)
            self.eth[a] = int(out[n + i], 16)

    def tx(
        self,
        kind: str,
        sender: str,
        *,
        to: str | None = None,
        data: str | None = None,
        value: int = 0,
        gas: int | None = None,
        ok: bool = True,
        on_mined: Any = None,
    ) -> _Tx:
        gas = gas if gas is not None else GAS[kind]
        cost = gas * MAX_FEE_PER_GAS + value
        if self.eth[sender] < cost:
            raise GeneratorError(f"{kind}: {sender} cannot pay {cost} wei")
        self.eth[sender] -= cost  # refunds are never credited: the model is a lower bound
        if value and to is not None and ok:
            self.credits.append(("ETH", to, value))
        nonce = self.nonce[sender]
        self.nonce[sender] = nonce + 1
        # Priority fees vary so gas-fee columns are not constant; drawn from the seeded RNG.
        tip = self.rng.choice((1, 2, 5, 10, 50, 100, 150, 200)) * GWEI // 100
        params: dict[str, Any] = {
            "from": sender,
            "nonce": hex(nonce),
            "gas": hex(gas),
            "value": hex(value),
            "maxFeePerGas": hex(MAX_FEE_PER_GAS),
            "maxPriorityFeePerGas": hex(tip),
        }
        if to is not None:
            params["to"] = to
        if data is not None:
            params["data"] = data
        self.stats[kind] += 1
        if not ok:
            self.stats["failed"] += 1
        return _Tx(kind, sender, params, ok, gas, on_mined)

    def end_block(self, txs: list[_Tx]) -> None:
        for asset, address, amount in self.credits:
            if asset == "ETH":
                self.eth[address] = self.eth.get(address, 0) + amount
            else:
                bal = self.token_balance[asset]
                bal[address] = bal.get(address, 0) + amount
        self.credits.clear()
        for t in txs:
            if t.on_mined is not None:
                t.on_mined()

    def active(self) -> tuple[int, ...]:
        """Wallets that send freely: tracked ones and counterparties, not the hot wallet."""
        return tuple(i for i in (*TRACKED, *COUNTERPARTIES) if i != HOT_WALLET)

    def pick(self, indices: Iterable[int], *, exclude: Iterable[str] = ()) -> str:
        excluded = set(exclude)
        choices = [self.acct(i) for i in indices if self.acct(i) not in excluded]
        return self.rng.choice(choices)

    def file_uri(self, prefix: str) -> tuple[str, bytes]:
        self.file_count += 1
        digest = keccak(text=f"{prefix}:{self.file_count}:{self.rng.random()}")
        if self.rng.random() < 0.5:
            uri = f"ipfs://bafkrei{digest.hex()[:52]}"
        else:
            uri = f"https://files.devnet.local/{prefix}/{self.file_count:06d}.json"
        return uri, keccak(text=uri)

    # --- setup ---------------------------------------------------------------------------

    def deploy(self, kind: str, artifact: Artifact, *args: Any) -> tuple[_Tx, str]:
        sender = self.acct(DEPLOYER)
        address = create_address(sender, self.nonce[sender])
        return self.tx(kind, sender, data=artifact.deploy_data(*args)), address

    def setup_blocks(self) -> list[list[_Tx]]:
        token, feed = load_artifact("Token"), load_artifact("PriceFeed")
        deployer = self.acct(DEPLOYER)
        b1: list[_Tx] = []
        for symbol, name, decimals, supply, _price, _vol in TOKENS:
            t, addr = self.deploy(
                "deploy_token", token, name, symbol, decimals, supply * 10**decimals
            )
            b1.append(t)
            self.token_address[symbol] = addr
            self.token_decimals[symbol] = decimals
            self.token_balance[symbol][deployer] = supply * 10**decimals
        for symbol, price in [("ETH", ETH_START_PRICE)] + [(t[0], t[4]) for t in TOKENS]:
            t, addr = self.deploy(
                "deploy_feed", feed, PRICE_DECIMALS, f"{symbol} / USD", self._price_int(price)
            )
            b1.append(t)
            self.feeds[symbol] = addr
            self.prices[symbol] = price

        b2: list[_Tx] = []
        t, identity = self.deploy("deploy_registry", load_artifact("IdentityRegistry"))
        b2.append(t)
        t, reputation = self.deploy(
            "deploy_registry", load_artifact("ReputationRegistry"), identity
        )
        b2.append(t)
        t, validation = self.deploy(
            "deploy_registry", load_artifact("ValidationRegistry"), identity
        )
        b2.append(t)
        self.registry = {"identity": identity, "reputation": reputation, "validation": validation}
        t, self.factory = self.deploy("deploy_factory", load_artifact("VaultFactory"))
        b2.append(t)
        t, self.faulty = self.deploy("deploy_faulty", load_artifact("Faulty"))
        b2.append(t)
        t, self.forwarder = self.deploy("deploy_payouts", load_artifact("Forwarder"))
        b2.append(t)
        t, self.weth = self.deploy("deploy_payouts", load_artifact("WrappedEther"))
        b2.append(t)

        # Fund wallets with tokens; the hot wallet hands most of its ether to the deployer.
        b3: list[_Tx] = []
        for symbol, _name, decimals, supply, _p, _v in TOKENS:
            unit = 10**decimals
            for i in range(1, REQUIRED_ACCOUNTS):
                share = self.rng.uniform(0.001, 0.01) * supply
                amount = int(share) * unit
                b3.append(self._token_transfer(symbol, deployer, self.acct(i), amount))
        hot = self.acct(HOT_WALLET)
        keep = HOT_WALLET_START_ETH * ETHER
        b3.append(
            self.tx("eth_transfer", hot, to=deployer, value=self.eth[hot] - keep - ETHER // 100)
        )

        b4 = [
            self._register_agent(self.acct(AGENT_OWNERS[i % len(AGENT_OWNERS)])) for i in range(4)
        ]
        b5 = self.collectibles.setup_block(self, DEPLOYER)
        return [b1, b2, b3, b4, b5]

    @staticmethod
    def _price_int(price: float) -> int:
        return round(price * 10**PRICE_DECIMALS)

    # --- transaction builders ------------------------------------------------------------

    def price_updates(self, step_days: float) -> list[_Tx]:
        feed = load_artifact("PriceFeed")
        txs = []
        vols = {"ETH": ETH_DAILY_VOL} | {t[0]: t[5] for t in TOKENS}
        for symbol, address in self.feeds.items():
            old = self.prices[symbol]
            shock = self.rng.gauss(0.0, vols[symbol] * math.sqrt(step_days))
            if symbol == "USDC":
                new = 1.0 + 0.7 * (old - 1.0) + shock  # a stablecoin wobbles around its peg
            else:
                new = old * math.exp(shock - 0.5 * (vols[symbol] ** 2) * step_days)
            self.prices[symbol] = new
            txs.append(
                self.tx(
                    "price_update",
                    self.acct(DEPLOYER),
                    to=address,
                    data=feed.call_data("updateAnswer", self._price_int(new)),
                )
            )
        return txs

    def _token_transfer(self, symbol: str, sender: str, to: str, amount: int) -> _Tx:
        bal = self.token_balance[symbol]
        if bal.get(sender, 0) < amount:
            raise GeneratorError(f"model error: {sender} lacks {amount} {symbol}")
        bal[sender] -= amount
        self.credits.append((symbol, to, amount))
        return self.tx(
            "token_transfer",
            sender,
            to=self.token_address[symbol],
            data=load_artifact("Token").call_data("transfer", to, amount),
        )

    def _token_holders(self, symbol: str, exclude: Iterable[str] = ()) -> list[str]:
        excluded = set(exclude)
        bal = self.token_balance[symbol]
        return [a for a in self.accounts[1:] if bal.get(a, 0) > 0 and a not in excluded]

    def token_transfer(self) -> _Tx:
        symbol = "USDC" if self.rng.random() < 0.6 else "LINK"
        holders = self._token_holders(symbol, exclude=[self.acct(HOT_WALLET)])
        sender = self.rng.choice(holders)
        to = self.pick(range(1, REQUIRED_ACCOUNTS), exclude=[sender])
        unit = 10 ** max(self.token_decimals[symbol] - 2, 0)  # amounts in cents of a token
        amount = (
            int(self.token_balance[symbol][sender] * self.rng.uniform(0.002, 0.05)) // unit * unit
        )
        return self._token_transfer(symbol, sender, to, max(amount, unit))

    def eth_transfer(self) -> _Tx:
        pool = self.active()
        sender = self.pick(pool)
        to = self.pick(pool, exclude=[sender])
        # Log-uniform between 0.001 and 5 ETH, rounded to a microether.
        value = int(math.exp(self.rng.uniform(math.log(1e-3), math.log(5))) * 1e6) * 10**12
        value = min(value, self.eth[sender] // 100 // 10**12 * 10**12)
        return self.tx("eth_transfer", sender, to=to, value=value)

    def hot_wallet_payment(self) -> _Tx | None:
        """The hot wallet pays 1 ETH a day, so it drops under 10 ETH on the third day."""
        if self.eth[self.acct(HOT_WALLET)] < (HOT_WALLET_DAILY_PAYMENT_ETH + 1) * ETHER:
            return None
        return self.tx(
            "eth_transfer",
            self.acct(HOT_WALLET),
            to=self.acct(COUNTERPARTIES[0]),
            value=HOT_WALLET_DAILY_PAYMENT_ETH * ETHER,
        )

    def token_approve(self) -> _Tx:
        symbol = self.rng.choice([t[0] for t in TOKENS])
        owner = self.pick(i for i in TRACKED if i != HOT_WALLET)
        spender = self.pick(COUNTERPARTIES)
        amount = self.token_balance[symbol].get(owner, 0) // 10
        key = (symbol, owner, spender)

        def mined() -> None:
            self.allowance[key] = amount

        return self.tx(
            "token_approve",
            owner,
            to=self.token_address[symbol],
            data=load_artifact("Token").call_data("approve", spender, amount),
            on_mined=mined,
        )

    def token_transfer_from(self) -> _Tx | None:
        usable = [
            (k, v)
            for k, v in sorted(self.allowance.items())
            if v > 0 and self.token_balance[k[0]].get(k[1], 0) > 0
        ]
        if not usable:
            return None
        (symbol, owner, spender), allowed = self.rng.choice(usable)
        amount = min(allowed, self.token_balance[symbol][owner]) // 3
        if amount == 0:
            return None
        self.allowance[(symbol, owner, spender)] = allowed - amount
        self.token_balance[symbol][owner] -= amount
        to = self.pick(COUNTERPARTIES)
        self.credits.append((symbol, to, amount))
        return self.tx(
            "token_transfer_from",
            spender,
            to=self.token_address[symbol],
            data=load_artifact("Token").call_data("transferFrom", owner, to, amount),
        )

    def _register_agent(self, owner: str) -> _Tx:
        self.agent_count += 1
        agent_id = self.agent_count
        name = AGENT_NAMES[(agent_id - 1) % len(AGENT_NAMES)]
        if agent_id > len(AGENT_NAMES):
            name = f"{name}-{agent_id}"
        if self.rng.random() < 0.5:
            uri = f"https://agents.devnet.local/{name}/agent-card.json"
        else:
            uri = f"ipfs://bafkrei{keccak(text=name).hex()[:52]}"
        quality = self.rng.uniform(25, 95)

        def mined() -> None:
            self.agents.append((agent_id, owner))
            self.agent_quality[agent_id] = quality

        return self.tx(
            "register_agent",
            owner,
            to=self.registry["identity"],
            data=load_artifact("IdentityRegistry").call_data("register", uri),
            on_mined=mined,
        )

    def register_agent(self) -> _Tx:
        owners = AGENT_OWNERS if self.rng.random() < 0.8 else COUNTERPARTIES
        return self._register_agent(self.pick(owners))

    def set_metadata(self) -> _Tx | None:
        if not self.agents:
            return None
        agent_id, owner = self.rng.choice(self.agents)
        key = self.rng.choice(("endpoint.mcp", "endpoint.a2a", "wallet", "ens"))
        value = f"https://agents.devnet.local/{agent_id}/{key.split('.')[-1]}".encode()
        return self.tx(
            "set_metadata",
            owner,
            to=self.registry["identity"],
            data=load_artifact("IdentityRegistry").call_data("setMetadata", agent_id, key, value),
        )

    def feedback(self, *, with_uri: bool | None = None) -> _Tx | None:
        if not self.agents:
            return None
        agent_id, owner = self.rng.choice(self.agents)
        client = self.pick(self.active(), exclude=[owner])
        q = self.agent_quality[agent_id]
        score = int(min(100, max(0, round(self.rng.gauss(q, 12)))))
        tag1 = bytes32_text(self.rng.choice(FEEDBACK_TAGS_1))
        tag2 = bytes32_text(self.rng.choice(FEEDBACK_TAGS_2))
        if with_uri is None:
            with_uri = self.rng.random() < 0.7
        uri, file_hash = self.file_uri("feedback") if with_uri else ("", b"\0" * 32)
        key = (agent_id, client)

        def mined() -> None:
            self.feedback_flags[key].append(False)

        return self.tx(
            "feedback",
            client,
            to=self.registry["reputation"],
            data=load_artifact("ReputationRegistry").call_data(
                "giveFeedback", agent_id, score, tag1, tag2, uri, file_hash
            ),
            on_mined=mined,
        )

    def feedback_revoke(self) -> _Tx | None:
        live = [
            (key, i)
            for key, flags in sorted(self.feedback_flags.items())
            for i, revoked in enumerate(flags)
            if not revoked
        ]
        if not live:
            return None
        (agent_id, client), i = self.rng.choice(live)
        self.feedback_flags[(agent_id, client)][i] = True  # at once: no double revoke in one block
        return self.tx(
            "feedback_revoke",
            client,
            to=self.registry["reputation"],
            data=load_artifact("ReputationRegistry").call_data("revokeFeedback", agent_id, i + 1),
        )

    def validation_request(self) -> _Tx | None:
        if not self.agents:
            return None
        agent_id, owner = self.rng.choice(self.agents)
        validator = self.pick(VALIDATORS)
        self.request_count += 1
        request_hash = keccak(text=f"validation-request:{self.request_count}:{agent_id}")
        uri = f"https://files.devnet.local/validation/{self.request_count:06d}/request.json"
        request = _Request(request_hash, validator, agent_id)

        def mined() -> None:
            self.pending_requests.append(request)

        return self.tx(
            "validation_request",
            owner,
            to=self.registry["validation"],
            data=load_artifact("ValidationRegistry").call_data(
                "validationRequest", validator, agent_id, uri, request_hash
            ),
            on_mined=mined,
        )

    def validation_response(self) -> _Tx | None:
        if not self.pending_requests:
            return None
        request = self.rng.choice(self.pending_requests)
        request.answers += 1
        # Most requests get one answer; some get a second, progressive one.
        if request.answers >= 2 or self.rng.random() < 0.8:
            self.pending_requests.remove(request)
        response = int(
            min(100, max(0, round(self.rng.gauss(self.agent_quality[request.agent_id], 15))))
        )
        if self.rng.random() < 0.75:
            uri, response_hash = self.file_uri("validation")
        else:
            uri, response_hash = "", b"\0" * 32
        tag = bytes32_text(self.rng.choice(VALIDATION_TAGS))
        return self.tx(
            "validation_response",
            request.validator,
            to=self.registry["validation"],
            data=load_artifact("ValidationRegistry").call_data(
                "validationResponse", request.request_hash, response, uri, response_hash, tag
            ),
        )

    def factory_create(self, *, create2: bool) -> _Tx:
        sender = self.pick(self.active())
        self.vault_labels += 1
        value = self.rng.choice((0, 0, 10**16, 10**17))
        factory = load_artifact("VaultFactory")
        if create2:
            salt = keccak(text=f"vault-salt:{self.vault_labels}")
            data = factory.call_data("create2", self.vault_labels, salt)
            kind = "factory_create2"
        else:
            data = factory.call_data("create", self.vault_labels)
            kind = "factory_create"
        return self.tx(kind, sender, to=self.factory, data=data, value=value)

    def deploy_vault(self) -> _Tx:
        sender = self.pick(self.active())
        self.vault_labels += 1
        data = load_artifact("Vault").deploy_data(sender, self.vault_labels)
        return self.tx("deploy_vault", sender, data=data, value=self.rng.choice((0, 10**16)))

    def deploy_token(self) -> _Tx:
        """A throw-away ERC-20 nobody configured: its transfers exist but are not priced."""
        sender = self.pick(COUNTERPARTIES)
        self.extra_tokens += 1
        symbol = f"DVT{self.extra_tokens}"
        data = load_artifact("Token").deploy_data(
            f"Devnet Token {self.extra_tokens}", symbol, 18, 1_000_000 * ETHER
        )
        return self.tx("deploy_token", sender, data=data)

    def faulty_poke(self) -> _Tx:
        sender = self.pick(COUNTERPARTIES)
        value = 2 * self.rng.randrange(1, 1000)
        return self.tx(
            "faulty_poke",
            sender,
            to=self.faulty,
            data=load_artifact("Faulty").call_data("poke", value),
        )

    def failed(self, kind: str | None = None) -> _Tx:
        kind = kind or self.rng.choice(FAILED_KINDS)
        sender = self.pick(self.active())
        faulty = load_artifact("Faulty")
        if kind == "failed_revert":
            return self.tx(kind, sender, to=self.faulty, data=faulty.call_data("fail"), ok=False)
        if kind == "failed_custom_error":
            odd = 2 * self.rng.randrange(0, 1000) + 1
            return self.tx(
                kind, sender, to=self.faulty, data=faulty.call_data("poke", odd), ok=False
            )
        if kind == "failed_panic":
            return self.tx(kind, sender, to=self.faulty, data=faulty.call_data("panic"), ok=False)
        if kind == "failed_out_of_gas":
            # A real call with too little gas: runs out in the middle of the token transfer.
            symbol = "USDC"
            to = self.pick(COUNTERPARTIES, exclude=[sender])
            data = load_artifact("Token").call_data("transfer", to, 1)
            return self.tx(kind, sender, to=self.token_address[symbol], data=data, ok=False)
        if kind == "failed_token_overdraft":
            symbol = self.rng.choice([t[0] for t in TOKENS])
            to = self.pick(COUNTERPARTIES, exclude=[sender])
            # More than the sender can hold even after this block's incoming transfers.
            amount = self.token_balance[symbol].get(sender, 0) + 10 ** (
                self.token_decimals[symbol] + 12
            )
            data = load_artifact("Token").call_data("transfer", to, amount)
            return self.tx(kind, sender, to=self.token_address[symbol], data=data, ok=False)
        if kind == "failed_bad_score":
            if not self.agents:
                return self.failed("failed_revert")
            agent_id, owner = self.rng.choice(self.agents)
            client = self.pick(COUNTERPARTIES, exclude=[owner])
            data = load_artifact("ReputationRegistry").call_data(
                "giveFeedback", agent_id, 101, bytes32_text("quality"), b"\0" * 32, "", b"\0" * 32
            )
            return self.tx(kind, client, to=self.registry["reputation"], data=data, ok=False)
        if kind == "failed_not_oracle":
            feed = self.rng.choice(sorted(self.feeds.values()))
            data = load_artifact("PriceFeed").call_data("updateAnswer", 1)
            return self.tx(kind, sender, to=feed, data=data, ok=False)
        raise ValueError(kind)

    def payouts(self) -> list[_Tx]:
        """One of each internal movement (`PAYOUT_KINDS`), in that order, for one block: the
        senders and recipients are tracked wallets, so their balances hold every kind."""
        forwarder, weth = load_artifact("Forwarder"), load_artifact("WrappedEther")
        tracked = [i for i in TRACKED if i != HOT_WALLET]
        sender, receiver, heir = (self.acct(i) for i in self.rng.sample(tracked, 3))
        amount = self.rng.choice((1, 2, 5)) * ETHER // 100
        # the contract created this block by the forwarder (contract nonces start at 1)
        doomed = create_address(self.forwarder, self.forwarder_creates + 1)
        self.forwarder_creates += 1
        txs = [
            self.tx("payout_fund", sender, to=self.forwarder, value=amount),
            self.tx(
                "weth_deposit", sender, to=self.weth, data=weth.call_data("deposit"), value=amount
            ),
            self.tx(
                "payout_create_doomed",
                sender,
                to=self.forwarder,
                data=forwarder.call_data("createDoomed", heir),
                value=amount,
            ),
            self.tx(
                "payout_forward",
                sender,
                to=self.forwarder,
                data=forwarder.call_data("forward", receiver),
                value=amount,
            ),
            self.tx(
                "payout_forward_reverted",
                sender,
                to=self.forwarder,
                data=forwarder.call_data("forwardThenRevert", receiver),
                value=amount,
                ok=False,
            ),
            self.tx(
                "payout_forward_half_reverted",
                sender,
                to=self.forwarder,
                data=forwarder.call_data("forwardHalfReverted", receiver),
                value=amount,
            ),
            self.tx("weth_withdraw", sender, to=self.weth, data=weth.call_data("withdraw", amount)),
            self.tx(
                "payout_destroy_doomed",
                receiver,
                to=doomed,
                data=load_artifact("Doomed").call_data("destroy"),
            ),
        ]
        # the model is a lower bound on balances: internal credits are left out, but the
        # forwarded value reaches its recipients within the block
        return txs

    def build(self, kind: str) -> _Tx:
        """One transaction of `kind`, falling back to a plain transfer if it cannot happen yet."""
        made: _Tx | None
        if kind == "feedback_with_uri":
            made = self.feedback(with_uri=True)
        elif kind == "feedback_empty_uri":
            made = self.feedback(with_uri=False)
        elif kind in ("factory_create", "factory_create2"):
            made = self.factory_create(create2=kind == "factory_create2")
        elif kind.startswith("failed_"):
            made = self.failed(kind)
        elif kind in COLLECTIBLE_KINDS:
            made = self.collectibles.build(self, kind, self.acct(DEPLOYER), self.active())
        else:
            made = getattr(self, kind)()
        return made if made is not None else self.eth_transfer()

    def filler(self, n: int) -> list[_Tx]:
        kinds = list(FILLER_WEIGHTS)
        weights = [FILLER_WEIGHTS[k] for k in kinds]
        return [self.build(k) for k in self.rng.choices(kinds, weights, k=n)]


# --------------------------------------------------------------------------------------------
# Sending and mining


def _send_block(rpc: Rpc, txs: list[_Tx], timestamp: int, gas_budget: int) -> list[str]:
    total_gas = sum(t.gas for t in txs)
    if total_gas > gas_budget:
        raise GeneratorError(
            f"a planned block needs {total_gas} gas, over {gas_budget}; lower txs_per_block "
            "(about 80k gas a transaction on average) or start anvil with a higher --gas-limit"
        )
    hashes = rpc.batch([("eth_sendTransaction", [t.params]) for t in txs])
    rpc.call("evm_mine", timestamp)
    return [str(h) for h in hashes]


def _verify_blocks(rpc: Rpc, planned: list[tuple[int, list[_Tx], list[str]]]) -> None:
    """Each block holds exactly the planned transactions, each with the planned status."""
    for chunk_start in range(0, len(planned), 50):
        chunk = planned[chunk_start : chunk_start + 50]
        receipts = rpc.batch([("eth_getBlockReceipts", [hex(n)]) for n, _t, _h in chunk])
        for (number, txs, hashes), got in zip(chunk, receipts, strict=True):
            got_hashes = [r["transactionHash"] for r in got]
            if got_hashes != hashes:
                raise GeneratorError(
                    f"block {number}: holds {len(got_hashes)} transactions, planned {len(hashes)}"
                    " (or in another order)"
                )
            for t, r in zip(txs, got, strict=True):
                if (r["status"] == "0x1") != t.ok:
                    raise GeneratorError(
                        f"block {number}: {t.kind} {r['transactionHash']} has status "
                        f"{r['status']}, planned {'success' if t.ok else 'failure'}"
                    )


def _daily_timestamps(day_start: int, n: int, reserved: int) -> list[int]:
    """``n`` timestamps spread evenly over the day, after the first ``reserved`` seconds."""
    span = SECONDS_PER_DAY - reserved
    return [day_start + reserved + (i * span) // n for i in range(n)]


def generate(
    rpc_url: str,
    *,
    start: dt.date,
    days: int,
    blocks_per_day: int,
    txs_per_block: int,
    seed: int = 7,
    verify: bool = True,
    progress_every: int = 100,
    until: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    internal_transfers: bool = True,
) -> DevnetManifest:
    """Deploy the devnet contracts and fill ``days`` days from ``start`` with activity.

    Run it on a fresh anvil whose genesis is ``start`` at midnight UTC (``Anvil(genesis=start)``)
    with at least 20 dev accounts. Day 0 also holds four setup blocks (deployments, funding,
    first agents) in its first seconds. Returns the manifest; nothing is written to disk.

    ``until`` (unix seconds, e.g. the wall clock) leaves out every planned block stamped after
    it, so a chain whose last day is today holds that day's blocks up to then and none in the
    future. The blocks kept are exactly the first ones of the full plan (same transactions,
    same hashes): the plan of a day does not depend on where it is cut. ``until`` before the
    setup blocks is an error.

    Pipelines that read historical state (balances at a day's last block) need the node to
    keep every block's state: ``Anvil(keep_states=...)`` at least the chain's length.
    ``txs_per_block`` is bounded by the block gas limit (about 250 with anvil's 30M).
    Progress is logged every ``progress_every`` blocks, and ``progress(done, total)`` is called
    after every block when given. With ``internal_transfers=False`` the days hold no
    ``PAYOUT_KINDS`` and only dev accounts are tracked (no WETH, no fee recipient): no tracked
    balance moves but by its own transactions (for tests of what transactions alone explain).
    """
    if days < 1 or blocks_per_day < 1 or txs_per_block < 1:
        raise ValueError("days, blocks_per_day and txs_per_block must be at least 1")
    if blocks_per_day > SECONDS_PER_DAY // 2:
        raise ValueError(f"blocks_per_day must be at most {SECONDS_PER_DAY // 2}")
    if until is not None and until < day_start_timestamp(start):
        raise ValueError(f"until {until} is before {start}")
    t0 = time.monotonic()
    rng = random.Random(seed)
    rpc = Rpc(rpc_url)
    try:
        chain_id = int(rpc.call("eth_chainId"), 16)
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        if len(accounts) < REQUIRED_ACCOUNTS:
            raise GeneratorError(
                f"the node has {len(accounts)} unlocked accounts; the generator needs "
                f"{REQUIRED_ACCOUNTS} (start anvil with --accounts {REQUIRED_ACCOUNTS})"
            )
        accounts = accounts[:REQUIRED_ACCOUNTS]
        head = rpc.call("eth_getBlockByNumber", "latest", False)
        head_number, head_ts = int(head["number"], 16), int(head["timestamp"], 16)
        day0 = day_start_timestamp(start)
        if head_ts >= day0 + 1 or (head_ts >= day0 and head_number > 0):
            raise GeneratorError(
                f"the chain head (block {head_number}) is already at {head_ts}, not before "
                f"{start}; use a fresh anvil with genesis {start} (Anvil(genesis=start))"
            )
        first_block_day0 = 0 if head_number == 0 and head_ts == day0 else head_number + 1
        genesis_ts = int(rpc.call("eth_getBlockByNumber", "0x0", False)["timestamp"], 16)

        rpc.call("anvil_setCoinbase", FEE_RECIPIENT)
        automine = rpc.call("anvil_getAutomine")
        if automine:
            rpc.call("evm_setAutomine", False)
        world = _World(rpc, rng, accounts)
        world.internal_transfers = internal_transfers
        world.load_accounts()
        try:
            manifest_days, head_number = _run(
                rpc,
                world,
                start,
                days,
                blocks_per_day,
                txs_per_block,
                verify,
                progress_every,
                first_block_day0,
                head_number,
                until,
                progress,
            )
        finally:
            if automine:
                rpc.call("evm_setAutomine", True)
    finally:
        rpc.close()

    tracked = {world.acct(i) for i in TRACKED}
    manifest = DevnetManifest(
        rpc_url=rpc_url,
        chain_id=chain_id,
        seed=seed,
        start_date=start,
        days=days,
        blocks_per_day=blocks_per_day,
        txs_per_block=txs_per_block,
        genesis_timestamp=genesis_ts,
        head_block=head_number,
        day_blocks=tuple(manifest_days),
        native_symbol="ETH",
        native_price_feed=world.feeds["ETH"],
        tokens=tuple(
            TokenInfo(symbol, world.token_address[symbol], decimals, world.feeds[symbol])
            for symbol, _n, decimals, _s, _p, _v in TOKENS
        ),
        registries=dict(world.registry),
        contracts={
            "factory": world.factory,
            "faulty": world.faulty,
            "forwarder": world.forwarder,
            "weth": world.weth,
        }
        | world.collectibles.addresses,
        wallets=(
            *(
                WalletInfo(
                    name=WALLET_NAMES[i],
                    address=a,
                    tracked=a in tracked,
                    role=_role(i),
                )
                for i, a in enumerate(accounts)
            ),
            WalletInfo(
                name="weth", address=world.weth, tracked=internal_transfers, role="contract"
            ),
            WalletInfo(
                name="fee-recipient",
                address=FEE_RECIPIENT,
                tracked=internal_transfers,
                role="fee_recipient",
            ),
        ),
        portfolios=tuple(
            PortfolioInfo(
                name,
                description,
                (
                    *(WALLET_NAMES[i] for i in members),
                    *(
                        ("weth", "fee-recipient")
                        if name == "operations" and internal_transfers
                        else ()
                    ),
                ),
            )
            for name, description, members in PORTFOLIOS
        ),
        stats=dict(sorted(world.stats.items())),
    )
    log.info(
        "generated %s days, blocks %s..%s, %s transactions (%s failed) in %.1fs",
        days,
        manifest.day_blocks[0].first_block,
        manifest.head_block,
        sum(v for k, v in world.stats.items() if k != "failed"),
        world.stats["failed"],
        time.monotonic() - t0,
    )
    return manifest


def _role(i: int) -> str:
    if i == DEPLOYER:
        return "deployer"
    if i in TRACKED:
        return "tracked"
    if i in AGENT_OWNERS:
        return "agent_owner"
    if i in VALIDATORS:
        return "validator"
    return "counterparty"


def _run(
    rpc: Rpc,
    world: _World,
    start: dt.date,
    days: int,
    blocks_per_day: int,
    txs_per_block: int,
    verify: bool,
    progress_every: int,
    first_block_day0: int,
    head_number: int,
    until: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[DayBlocks], int]:
    rng = world.rng
    number = head_number
    day_blocks: list[DayBlocks] = []
    planned: list[tuple[int, list[_Tx], list[str]]] = []
    t0 = time.monotonic()
    gas_limit = int(rpc.call("eth_getBlockByNumber", "latest", False)["gasLimit"], 16)
    gas_budget = int(gas_limit * BLOCK_GAS_SHARE)
    setup = world.setup_blocks() if not world.registry else []
    day0 = day_start_timestamp(start)
    reserved = len(setup) + 1
    if until is not None and setup and day0 + len(setup) > until:
        raise GeneratorError(
            f"the setup blocks of {start} are stamped up to {day0 + len(setup)}, after "
            f"until={until}; start the chain a day earlier"
        )
    # Each day's block timestamps, without those after `until`.
    plan = [
        [
            ts
            for ts in _daily_timestamps(
                day_start_timestamp(start + dt.timedelta(days=d)),
                blocks_per_day,
                reserved if d == 0 else 0,
            )
            if until is None or ts <= until
        ]
        for d in range(days)
    ]
    total_blocks = sum(len(p) for p in plan)

    def mine(block_txs: list[_Tx], ts: int) -> None:
        nonlocal number
        hashes = _send_block(rpc, block_txs, ts, gas_budget)
        number += 1
        world.end_block(block_txs)
        if verify:
            planned.append((number, block_txs, hashes))

    for i, txs in enumerate(setup):
        mine(txs, day0 + 1 + i)

    updates = min(PRICE_UPDATES_PER_DAY, blocks_per_day)
    update_blocks = {((2 * k + 1) * blocks_per_day) // (2 * updates) for k in range(updates)}
    done = 0
    for d in range(days):
        day = start + dt.timedelta(days=d)
        first = first_block_day0 if d == 0 else number + 1
        timestamps = plan[d]
        if d > 0 and not timestamps:
            break  # every later day lies after `until`
        # Scheduled kinds for the day, at distinct random blocks in dependency order.
        slots = sorted(rng.sample(range(blocks_per_day), min(len(DAILY_KINDS), blocks_per_day)))
        scheduled: dict[int, list[str]] = defaultdict(list)
        for k, kind in enumerate(DAILY_KINDS):
            scheduled[slots[k % len(slots)]].append(kind)
        for b, ts in enumerate(timestamps):
            txs = []
            payment = world.hot_wallet_payment() if b == 0 else None
            if payment is not None:
                txs.append(payment)
            if b in update_blocks:
                txs += world.price_updates(1.0 / updates)
            txs += [world.build(kind) for kind in scheduled.get(b, ())]
            if b == blocks_per_day // 2 and world.internal_transfers:
                txs += world.payouts()
            txs += world.filler(max(0, txs_per_block - len(txs)))
            mine(txs, ts)
            done += 1
            if progress is not None:
                progress(done, total_blocks)
            if progress_every and done % progress_every == 0:
                rate = done / max(time.monotonic() - t0, 1e-9)
                log.info(
                    "devnet: %s/%s blocks (%.0f blocks/s), day %s", done, total_blocks, rate, day
                )
        day_blocks.append(DayBlocks(day, first, number))
        pending = rpc.call("txpool_status")
        if int(pending.get("pending", "0x0"), 16) or int(pending.get("queued", "0x0"), 16):
            raise GeneratorError(f"transactions left in the pool after {day}: {pending}")
        if verify:
            _verify_blocks(rpc, planned)
            planned.clear()
    return day_blocks, number


# --------------------------------------------------------------------------------------------
# Benchmark fill


@dataclass(frozen=True)
class FillResult:
    """What `fill` appended: the block range, the transaction count and how long it took."""

    first_block: int
    last_block: int
    transactions: int
    seconds: float


def fill(
    rpc_url: str,
    *,
    blocks: int,
    txs_per_block: int,
    start_timestamp: int,
    seconds_per_block: int,
    progress_every: int = 200,
) -> FillResult:
    """Append ``blocks`` blocks of ``txs_per_block`` plain ETH transfers, fast.

    Senders rotate over the node's dev accounts with explicit nonces; block ``i`` gets
    timestamp ``start_timestamp + i * seconds_per_block``.
    """
    if seconds_per_block < 1:
        raise ValueError("seconds_per_block must be at least 1")
    t0 = time.monotonic()
    with Rpc(rpc_url) as rpc:
        accounts = [a.lower() for a in rpc.call("eth_accounts")]
        if not accounts:
            raise GeneratorError("the node has no unlocked accounts")
        head = rpc.call("eth_getBlockByNumber", "latest", False)
        if int(head["timestamp"], 16) >= start_timestamp:
            raise GeneratorError(
                f"start_timestamp {start_timestamp} is not after the head's {int(head['timestamp'], 16)}"
            )
        first = int(head["number"], 16) + 1
        nonces = [
            int(n, 16)
            for n in rpc.batch([("eth_getTransactionCount", [a, "pending"]) for a in accounts])
        ]
        rpc.call("anvil_setCoinbase", FEE_RECIPIENT)
        automine = rpc.call("anvil_getAutomine")
        if automine:
            rpc.call("evm_setAutomine", False)
        try:
            k = 0
            for b in range(blocks):
                calls = []
                for _ in range(txs_per_block):
                    s = k % len(accounts)
                    to = accounts[(s + 1 + k // len(accounts)) % len(accounts)]
                    if to == accounts[s]:
                        to = accounts[(s + 1) % len(accounts)]
                    tx = {
                        "from": accounts[s],
                        "to": to,
                        "value": hex((k % 997 + 1) * 10**12),
                        "gas": "0x5208",
                        "nonce": hex(nonces[s]),
                        "maxFeePerGas": hex(MAX_FEE_PER_GAS),
                        "maxPriorityFeePerGas": hex(GWEI),
                    }
                    nonces[s] += 1
                    k += 1
                    calls.append(("eth_sendTransaction", [tx]))
                rpc.batch(calls)
                rpc.call("evm_mine", start_timestamp + b * seconds_per_block)
                if progress_every and (b + 1) % progress_every == 0:
                    rate = (b + 1) / (time.monotonic() - t0)
                    log.info("fill: %s/%s blocks (%.0f blocks/s)", b + 1, blocks, rate)
        finally:
            if automine:
                rpc.call("evm_setAutomine", True)
    return FillResult(first, first + blocks - 1, blocks * txs_per_block, time.monotonic() - t0)
