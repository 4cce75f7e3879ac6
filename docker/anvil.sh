#!/bin/sh
# The devnet node for docker-compose: genesis at midnight UTC DEVNET_DAYS days ago, so the
# seeding job (`python -m tools.devnet seed`) fills closed days, as `python -m tools.devnet up` does locally.
set -eu
days="${DEVNET_DAYS:-7}"
now="$(date +%s)"
genesis=$(( now / 86400 * 86400 - days * 86400 ))
exec /opt/anvil/node_modules/.bin/anvil \
  --host 0.0.0.0 --port 8545 \
  --chain-id "${DEVNET_CHAIN_ID:-31337}" \
  --accounts 20 --balance 10000 \
  --timestamp "$genesis" \
  --no-mining --order fifo \
  --prune-history 10000 --cache-path /var/lib/anvil/cache \
  --state /var/lib/anvil/state.json
