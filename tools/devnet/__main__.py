"""`python -m tools.devnet up|seed|status|down`."""

from tools.devnet.cli import devnet

devnet(prog_name="python -m tools.devnet")
