"""Dagster sensors: new blocks, reorgs, new chain events, due deliveries and the evaluator."""
