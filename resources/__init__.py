"""Dagster resources: the nodes, the Delta lake, ClickHouse, DuckDB, the events database and
the notifiers.
"""
