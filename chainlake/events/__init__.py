"""The trigger engine's data: events of interest in PostgreSQL, the triggers that watch them,
and the deliveries and audit rows their matches produce.

Entry points for other parts of the project:

- `retract_blocks(conn, chain_id, block_numbers)`: a reorg removed these blocks (extraction).
- `insert_events(conn, events)`: idempotent insert of decoded events.
- `set_checkpoint(conn, chain_id, block_number, block_hash)` / `get_checkpoint`.
- `chainlake.events.db.connection(url)`: a connection; `db.migrate(url)` the schema.
"""

from chainlake.events.store import (
    get_checkpoint,
    insert_events,
    retract_blocks,
    set_checkpoint,
)

__all__ = ["get_checkpoint", "insert_events", "retract_blocks", "set_checkpoint"]
