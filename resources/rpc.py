"""EVM JSON-RPC nodes: one shared, rate-limited client per chain, failover across its URLs."""

from __future__ import annotations

import dagster as dg
from pydantic import Field, PrivateAttr

from chainlake.config import ChainConfig
from chainlake.rpc import DEFAULT_MAX_RESPONSE_BYTES, RpcClient


class RpcResource(dg.ConfigurableResource):
    """Hands out one `RpcClient` per chain; the chain's `max_requests_in_flight` and
    `batch_size` from chains.yaml bound the load put on its nodes."""

    timeout_seconds: float = Field(default=30.0, description="Per-request timeout.")
    max_retries: int = Field(default=8, description="Retries per request before giving up.")
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        description="Largest node answer read: a larger batch is split, a larger single "
        "answer fails the step (not retried).",
    )

    _clients: dict[str, RpcClient] = PrivateAttr(default_factory=dict)

    def client(self, chain: ChainConfig) -> RpcClient:
        """The chain's client, created on first use and shared by the step's threads."""
        if chain.name not in self._clients:
            self._clients[chain.name] = RpcClient(
                chain.rpc_urls,
                timeout=self.timeout_seconds,
                max_in_flight=chain.max_requests_in_flight,
                batch_size=chain.batch_size,
                max_retries=self.max_retries,
                chain_id=chain.chain_id,
                max_response_bytes=self.max_response_bytes,
            )
        return self._clients[chain.name]

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Close the clients at the end of the step."""
        for c in self._clients.values():
            c.close()
        self._clients.clear()
