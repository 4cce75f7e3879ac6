"""serving/*: the DuckDB catalog and the views over the lake."""
