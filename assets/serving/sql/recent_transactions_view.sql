-- Run by assets/serving/catalog.py (views_sql): string.Template fills the dollar-prefixed names with
-- constants; the lake is read through the union views over every chain (lake_views_sql).
CREATE OR REPLACE VIEW recent_transactions_view AS
WITH moves AS (
    SELECT chain_id, date, block_number, block_timestamp, transaction_hash, from_address,
           to_address, '$native_token' AS token_address, value, -1 AS log_index, status
    FROM native_transfers
    WHERE value > 0
    UNION ALL
    SELECT chain_id, date, block_number, block_timestamp, transaction_hash, from_address,
           to_address, token_address, value, log_index, 1 AS status
    FROM token_transfers
),
recent AS (
    SELECT * FROM moves WHERE date >= (SELECT max(date) FROM moves) - INTERVAL $recent_days DAY
),
-- each token's latest decimals read from the chain (core/tokens), for tokens without an override
chain_decimals AS (
    SELECT chain_id, token_address, arg_max(decimals, date) AS decimals
    FROM token_metadata WHERE decimals IS NOT NULL GROUP BY chain_id, token_address
)
SELECT w.id AS wallet_id, w.name AS wallet_name,
       CASE WHEN r.from_address = r.to_address THEN 'self'
            WHEN r.to_address = w.address THEN 'in' ELSE 'out' END AS direction,
       r.transaction_hash, r.log_index, r.from_address, r.to_address,
       token_units(r.value, coalesce(t.decimals, m.decimals, 0)) AS value, r.value AS value_raw,
       coalesce(t.symbol, r.token_address) AS token_symbol, r.token_address,
       w.network, w.subnet, w.chain, r.date, r.block_number, r.block_timestamp
FROM recent AS r
JOIN wallets AS w ON w.chain_id = r.chain_id AND w.address IN (r.from_address, r.to_address)
LEFT JOIN tokens AS t ON t.chain_id = r.chain_id AND t.token_address = r.token_address
LEFT JOIN chain_decimals AS m ON m.chain_id = r.chain_id AND m.token_address = r.token_address
ORDER BY r.block_timestamp DESC, r.log_index
