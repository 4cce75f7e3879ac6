"""NFTs and odd ERC-20s on the devnet: an ERC-721, an ERC-1155, an MKR-style token (bytes32
name and symbol) and a token without `name()` whose `symbol()` reverts.

The generator (``tools.devnet.generator``) deploys them in a setup block of their own and
schedules, every day, one of each kind of ``DAILY_KINDS`` below: an ERC-721 mint and a
transfer, ERC-1155 mints (one id and a batch) and transfers (one id and a batch), and a
transfer of each odd token. The model here knows every owner and balance, so each planned
transaction succeeds (the generator verifies receipts' status against that).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import rlp
from eth_utils import keccak

from tools.devnet.artifacts import load_artifact

# The generator's _World and _Tx (not imported: the generator imports this module).
_World = Any
_Tx = Any

ETHER = 10**18
# Gas limits: measured gas used plus headroom (the generator never estimates).
GAS = {
    "deploy_collectible": 1_500_000,
    "deploy_multi_token": 1_500_000,
    "deploy_bytes32_token": 700_000,
    "deploy_nameless_token": 700_000,
    "nft_mint": 120_000,
    "nft_transfer": 80_000,
    "multi_mint": 80_000,
    "multi_mint_batch": 150_000,
    "multi_transfer": 80_000,
    "multi_transfer_batch": 150_000,
    "odd_token_transfer": 80_000,
}
# In the day's order: a transfer follows the mints it needs.
DAILY_KINDS = (
    "nft_mint",
    "multi_mint",
    "multi_mint_batch",
    "nft_transfer",
    "multi_transfer",
    "multi_transfer_batch",
    "odd_token_transfer",
)
MULTI_IDS = (1, 2, 3, 4, 5)
BYTES32_NAME = "Maker (devnet)"
BYTES32_SYMBOL = "MKR"
NAMELESS_DECIMALS = 9
ODD_SUPPLY = 1_000_000


def _create_address(sender: str, nonce: int) -> str:
    return "0x" + keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


def _bytes32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


class Collectibles:
    """The model of the NFT contracts and odd tokens: addresses, owners and balances."""

    def __init__(self) -> None:
        self.addresses: dict[str, str] = {}
        self.next_token_id = 1
        self.nft_owner: dict[int, str] = {}
        self.multi: dict[int, dict[str, int]] = defaultdict(dict)  # id -> holder -> amount
        self.odd_balance: dict[str, dict[str, int]] = defaultdict(dict)

    def setup_block(self, world: _World, deployer_index: int) -> list[_Tx]:
        """The deployments, in one block: the 721, the 1155 and the two odd tokens."""
        deployer = world.acct(deployer_index)
        txs = []
        for name, kind, artifact, args in (
            ("collectible", "deploy_collectible", "Collectible", ("Devnet Cats", "DCAT")),
            ("multi_token", "deploy_multi_token", "MultiToken", ()),
            (
                "bytes32_token",
                "deploy_bytes32_token",
                "Bytes32Token",
                (_bytes32(BYTES32_NAME), _bytes32(BYTES32_SYMBOL), ODD_SUPPLY * ETHER),
            ),
            (
                "nameless_token",
                "deploy_nameless_token",
                "NamelessToken",
                (NAMELESS_DECIMALS, ODD_SUPPLY * 10**NAMELESS_DECIMALS),
            ),
        ):
            address = _create_address(deployer, world.nonce[deployer])
            data = load_artifact(artifact).deploy_data(*args)
            txs.append(world.tx(kind, deployer, data=data, gas=GAS[kind]))
            self.addresses[name] = address
        self.odd_balance["bytes32_token"][deployer] = ODD_SUPPLY * ETHER
        self.odd_balance["nameless_token"][deployer] = ODD_SUPPLY * 10**NAMELESS_DECIMALS
        return txs

    def build(
        self, world: _World, kind: str, deployer: str, holders: tuple[int, ...]
    ) -> _Tx | None:
        """One transaction of `kind`; None when it cannot happen yet (nothing to transfer)."""
        if not self.addresses:
            return None
        rng = world.rng
        pool = [world.acct(i) for i in holders]
        if kind == "nft_mint":
            token_id = self.next_token_id
            self.next_token_id += 1
            to = rng.choice(pool)
            self.nft_owner[token_id] = to
            return self._call(
                world, kind, deployer, "collectible", "Collectible", "mint", to, token_id
            )
        if kind == "nft_transfer":
            owned = sorted(i for i, o in self.nft_owner.items() if o in pool)
            if not owned:
                return None
            token_id = rng.choice(owned)
            sender = self.nft_owner[token_id]
            to = rng.choice([a for a in pool if a != sender])
            self.nft_owner[token_id] = to
            return self._call(
                world, kind, sender, "collectible", "Collectible", "safeTransferFrom",
                sender, to, token_id,
            )  # fmt: skip
        if kind == "multi_mint":
            token_id, amount, to = rng.choice(MULTI_IDS), rng.randrange(1, 50), rng.choice(pool)
            self._credit(token_id, to, amount)
            return self._call(
                world, kind, deployer, "multi_token", "MultiToken", "mint", to, token_id, amount
            )
        if kind == "multi_mint_batch":
            ids = sorted(rng.sample(MULTI_IDS, 3))
            amounts = [rng.randrange(1, 1000) for _ in ids]
            to = rng.choice(pool)
            for i, a in zip(ids, amounts, strict=True):
                self._credit(i, to, a)
            return self._call(
                world, kind, deployer, "multi_token", "MultiToken", "mintBatch", to, ids, amounts
            )
        if kind in ("multi_transfer", "multi_transfer_batch"):
            want = 1 if kind == "multi_transfer" else 2
            senders = sorted(
                {h for bal in self.multi.values() for h, v in bal.items() if v > 0 and h in pool}
            )
            senders = [s for s in senders if len(self._held(s)) >= want]
            if not senders:
                return None
            sender = rng.choice(senders)
            ids = sorted(rng.sample(self._held(sender), want))
            amounts = [max(1, self.multi[i][sender] // 3) for i in ids]
            to = rng.choice([a for a in pool if a != sender])
            for i, a in zip(ids, amounts, strict=True):
                self.multi[i][sender] -= a
                self._credit(i, to, a)
            if kind == "multi_transfer":
                return self._call(
                    world, kind, sender, "multi_token", "MultiToken", "safeTransferFrom",
                    sender, to, ids[0], amounts[0], b"",
                )  # fmt: skip
            return self._call(
                world, kind, sender, "multi_token", "MultiToken", "safeBatchTransferFrom",
                sender, to, ids, amounts, b"",
            )  # fmt: skip
        if kind == "odd_token_transfer":
            # the deployer hands out both odd tokens, one of them per day in turn
            name = "bytes32_token" if world.stats[kind] % 2 == 0 else "nameless_token"
            unit = ETHER if name == "bytes32_token" else 10**NAMELESS_DECIMALS
            amount = rng.randrange(1, 100) * unit
            # to the first half of the pool: tracked wallets (the generator lists them first),
            # so the odd tokens show up in their balances
            to = rng.choice(pool[: max(1, len(pool) // 2)])
            bal = self.odd_balance[name]
            bal[deployer] -= amount
            bal[to] = bal.get(to, 0) + amount
            artifact = "Bytes32Token" if name == "bytes32_token" else "NamelessToken"
            return self._call(world, kind, deployer, name, artifact, "transfer", to, amount)
        raise ValueError(kind)

    def _held(self, holder: str) -> list[int]:
        return [i for i in MULTI_IDS if self.multi[i].get(holder, 0) > 0]

    def _credit(self, token_id: int, to: str, amount: int) -> None:
        self.multi[token_id][to] = self.multi[token_id].get(to, 0) + amount

    def _call(
        self, world: _World, kind: str, sender: str, name: str, artifact: str, fn: str, *args: Any
    ) -> _Tx:
        data = load_artifact(artifact).call_data(fn, *args)
        return world.tx(kind, sender, to=self.addresses[name], data=data, gas=GAS[kind])
