-- Run by assets/serving/catalog.py (views_sql): string.Template fills the dollar-prefixed names with
-- constants; the lake is read through the union views over every chain (lake_views_sql).
CREATE OR REPLACE VIEW wallet_balances_view AS
WITH latest AS (
    SELECT * FROM balances
    QUALIFY row_number() OVER (PARTITION BY chain_id, address, token_address ORDER BY date DESC) = 1
)
SELECT w.id AS wallet_id, w.name AS wallet_name, w.address, w.network, w.subnet, w.chain,
       l.token_symbol, l.token_address, token_units(l.balance, l.decimals) AS balance,
       l.balance AS balance_raw, l.decimals, l.date, l.block_number,
       w.kind, l.source
FROM wallets AS w JOIN latest AS l ON l.chain_id = w.chain_id AND l.address = w.address
WHERE w.is_active
