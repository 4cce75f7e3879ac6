"""Developer tooling: the local devnet (chain generator, contracts) and the demo. Not shipped in the wheel."""
