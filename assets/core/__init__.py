"""core/*: decoded and derived tables of one chain-day in Delta Lake (transfers, balances, prices)."""
