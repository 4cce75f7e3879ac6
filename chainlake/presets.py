"""Chain presets: what chainlake knows about a public chain.

A chains.yaml entry then needs only its name, its preset and its RPC URLs::

    chains:
      - name: base
        preset: base
        rpc_urls: ["${BASE_RPC_URL}"]

Every field of a preset can still be given in the entry, which wins. What each field means:

- `fee_model`: how a transaction's fee is paid and where it goes.
  `ethereum`: gas_used × effective_gas_price (+ blob gas); the base fee is burned, the
  priority fee goes to the block's fee recipient (`miner`).
  `op-stack` (Base, Optimism): the same plus the receipt's `l1Fee` (the L1 data fee) and,
  since Isthmus, the operator fee (from the receipt's `operatorFeeScalar` and
  `operatorFeeConstant`); the base fee goes to the BaseFeeVault, the L1 fee to the
  L1FeeVault, the operator fee to the OperatorFeeVault and the priority fee to the
  SequencerFeeVault (the block's `miner`), none is burned.
  `arbitrum`: gas_used × effective_gas_price, where gas_used already holds the L1 part
  (`gasUsedForL1`); the price has no priority part, nothing goes to `miner`.
  `burn-all` (Avalanche C-Chain): gas_used × effective_gas_price, all of it burned.
- `trace_method`: `trace_block`, `debug_trace` (debug_traceBlockByNumber + callTracer),
  `auto` (whichever the node serves, detected once per URL) or `none` (no traces: internal
  transfers are not covered).
- `block_rewards`: `ethereum` for Ethereum's proof-of-work issuance (5, 3 then 2 ETH a block,
  plus 1/32 of it per uncle included, until the Merge, and (uncle number + 8 - block number)
  / 8 of it to each uncle's miner, read from the uncle headers); `none` elsewhere.
- `confirmations`, `block_time` (seconds, for sizing and freshness), `native_symbol`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FEE_MODELS = ("ethereum", "op-stack", "arbitrum", "burn-all")
TRACE_SETTINGS = ("auto", "trace_block", "debug_trace", "none")
BLOCK_REWARDS = ("ethereum", "none")

# OP-stack fee vaults (predeploys): where the base fee and the L1 data fee go.
OP_BASE_FEE_VAULT = "0x4200000000000000000000000000000000000019"
OP_L1_FEE_VAULT = "0x420000000000000000000000000000000000001a"
# OperatorFeeVault (Isthmus): where the operator fee goes.
OP_OPERATOR_FEE_VAULT = "0x420000000000000000000000000000000000001b"

# Ethereum mainnet's proof-of-work block rewards, by first block: Frontier 5 ETH,
# Byzantium (EIP-649) 3 ETH, Constantinople (EIP-1234) 2 ETH, none from the Merge.
ETHEREUM_BLOCK_REWARDS = ((0, 5 * 10**18), (4_370_000, 3 * 10**18), (7_280_000, 2 * 10**18))
ETHEREUM_MERGE_BLOCK = 15_537_394


@dataclass(frozen=True)
class Preset:
    """The defaults a chains.yaml entry takes from its `preset:`."""

    chain_id: int
    network: str
    subnet: str
    fee_model: str
    confirmations: int
    trace_method: str
    block_time: float
    native_symbol: str = "ETH"
    block_rewards: str = "none"

    def defaults(self) -> dict[str, Any]:
        """The preset as chains.yaml fields."""
        return asdict(self)


PRESETS: dict[str, Preset] = {
    "ethereum": Preset(
        chain_id=1, network="ethereum", subnet="mainnet", fee_model="ethereum",
        confirmations=12, trace_method="auto", block_time=12.0, block_rewards="ethereum",
    ),
    "base": Preset(
        chain_id=8453, network="base", subnet="mainnet", fee_model="op-stack",
        confirmations=10, trace_method="auto", block_time=2.0,
    ),
    "optimism": Preset(
        chain_id=10, network="optimism", subnet="mainnet", fee_model="op-stack",
        confirmations=10, trace_method="auto", block_time=2.0,
    ),
    "arbitrum": Preset(
        chain_id=42161, network="arbitrum", subnet="one", fee_model="arbitrum",
        confirmations=20, trace_method="debug_trace", block_time=0.25,
    ),
    "polygon": Preset(
        chain_id=137, network="polygon", subnet="pos", fee_model="ethereum",
        confirmations=64, trace_method="debug_trace", block_time=2.0, native_symbol="POL",
    ),
    "avalanche": Preset(
        chain_id=43114, network="avalanche", subnet="c-chain", fee_model="burn-all",
        confirmations=1, trace_method="debug_trace", block_time=2.0, native_symbol="AVAX",
    ),
    "devnet": Preset(
        chain_id=31337, network="devnet", subnet="local", fee_model="ethereum",
        confirmations=0, trace_method="auto", block_time=1.0,
    ),
}  # fmt: skip


def block_reward(block_number: int) -> int:
    """Ethereum's proof-of-work reward of block `block_number` in wei (0 from the Merge)."""
    if block_number >= ETHEREUM_MERGE_BLOCK:
        return 0
    reward = 0
    for first, amount in ETHEREUM_BLOCK_REWARDS:
        if block_number >= first:
            reward = amount
    return reward
