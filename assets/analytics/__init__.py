"""analytics/*: portfolio snapshots and rolling risk in ClickHouse."""
