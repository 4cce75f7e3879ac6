"""The `chainlake` console script. An entry point on top of the layers: it may use any of them."""
