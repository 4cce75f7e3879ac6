"""raw/*: the chain as the node serves it, one Delta table per dataset and chain-day."""
