-- The hashes of the pending transactions that arrived after `after_seq`, in
-- arrival order: what a pending-transaction filter (eth_getFilterChanges)
-- reports. The same ordered walk of the pending index as
-- mempool_pending_in_order (enable_sort = off, for the same reason), but
-- without the raw bytes: a function with a SET clause is never inlined, so
-- selecting fewer columns of that one would still build its whole rows.
CREATE FUNCTION mempool_pending_hashes_in_order(after_seq BIGINT, max_rows BIGINT)
RETURNS TABLE (seq BIGINT, tx_hash BYTEA)
LANGUAGE sql STABLE
SET enable_sort = off
AS $$
    SELECT m.seq, m.tx_hash FROM mempool m
    WHERE m.status = 0 AND m.seq > after_seq ORDER BY m.seq LIMIT max_rows
$$;
