-- The block producer's read of pending transactions in arrival order (the
-- oldest after `after_seq`: the producer reads in pages), as a function
-- that always walks the pending index in order.
--
-- `WHERE status = 0 ORDER BY seq LIMIT n` is cheap as an ordered walk of
-- `mempool_pending` that stops after n rows. But the mempool fills faster
-- than autovacuum analyzes it: with statistics taken when it was nearly
-- empty, the planner expects a few dozen pending rows and instead reads
-- every pending row (a bitmap scan) to sort them. Under a backlog of 20,000
-- that was 10-17 ms per block, and the producer's largest statement.
-- `enable_sort = off`, scoped to this function, leaves the ordered walk as
-- the only plan without a sort.
CREATE FUNCTION mempool_pending_in_order(after_seq BIGINT, max_rows BIGINT)
RETURNS TABLE (seq BIGINT, tx_hash BYTEA, sender BYTEA, nonce BIGINT, raw BYTEA)
LANGUAGE sql STABLE
SET enable_sort = off
AS $$
    SELECT m.seq, m.tx_hash, m.sender, m.nonce, m.raw FROM mempool m
    WHERE m.status = 0 AND m.seq > after_seq ORDER BY m.seq LIMIT max_rows
$$;
