"""new_block_sensor: per chain, the confirmed head against the checkpoint; when the chain has
moved on, request the run that brings the head's day up to date (new_blocks_job). Its cursor
is, per chain, the last head it requested a run for.

The partition is the UTC day of the confirmed head block, not the wall clock's: in the first
minutes after midnight the confirmed head is still in yesterday, and a run of today's
partition would find a day the node has not reached."""

import datetime as dt
import json

import dagster as dg

from chainlake.config import load_chains
from chainlake.rpc import RpcClient


def plan_new_blocks(head: int, checkpoint: int | None, handled: int | None) -> bool:
    """Is there work? Blocks past both the extraction checkpoint and the last head a run was
    already requested for (a run that is still going must not be requested again)."""
    if head < 0:
        return False
    done = max(x for x in (checkpoint, handled, -1) if x is not None)
    return head > done


def head_day(client: RpcClient, head: int) -> dt.date:
    """The UTC day of block `head` on the node."""
    block = client.call("eth_getBlockByNumber", [hex(head), False])
    if not block:
        raise ValueError(f"the node has no block {head}")
    return dt.datetime.fromtimestamp(int(block["timestamp"], 16), dt.UTC).date()


def new_blocks_run_key(chain: str, head: int) -> str:
    """The run key of the run reading `chain` up to block `head`, so each head is read once."""
    return f"{chain}-head-{head}"


@dg.sensor(
    job_name="new_blocks_job",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Per chain: confirmed head vs checkpoint; requests the head's day up to the head.",
)
def new_block_sensor(
    context: dg.SensorEvaluationContext, delta: dg.ResourceParam
) -> dg.SensorResult:
    """Per chain, request the head's day when the confirmed head has moved past the checkpoint
    and the cursor; a chain whose node is down is skipped.
    """
    from chainlake.extract import confirmed_head
    from chainlake.partitions import chain_day_key
    from chainlake.state import read_checkpoint

    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    requests: list[dg.RunRequest] = []
    skipped: list[str] = []
    for name, chain in sorted(load_chains().items()):
        client = RpcClient(chain.rpc_urls, timeout=5.0, max_retries=1, chain_id=chain.chain_id)
        try:
            head = confirmed_head(client, chain.confirmations)
            cp = read_checkpoint(delta, chain)
            if not plan_new_blocks(head, cp.block_number if cp else None, cursor.get(name)):
                skipped.append(f"{name}: up to date at {head}")
                continue
            day = head_day(client, head)
        except Exception as e:  # a node down must not stop the other chains
            skipped.append(f"{name}: head unavailable ({type(e).__name__})")
            continue
        finally:
            client.close()
        cursor[name] = head
        requests.append(
            dg.RunRequest(
                run_key=new_blocks_run_key(name, head),
                partition_key=chain_day_key(name, day),
                tags={"chainlake/head": str(head)},
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor, sort_keys=True),
        skip_reason=None if requests else "; ".join(skipped) or "no chains",
    )
