"""A local EVM chain for development, tests and benchmarks: anvil, our own contracts, and a
deterministic activity generator that fills days of blocks and writes the matching configs."""
