"""The chainlake library: chain configuration, extraction over JSON-RPC, the Delta lake, reorg
repair and the events, triggers and actions; the Dagster code (`assets/`, `pipelines/`) calls it.
"""
