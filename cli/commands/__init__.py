"""Click command groups of the `chainlake` console script, one module per group."""
