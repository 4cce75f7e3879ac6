"""The raw datasets (blocks, transactions, logs): their models and the pure transforms from the node's answers."""
