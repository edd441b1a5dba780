-- The mempool is keyed by transaction hash; `seq` keeps only arrival order.
--
-- The primary key on `seq` was an index no statement used (the producer
-- reads arrival order through the partial `mempool_pending` index), yet
-- every acknowledged transaction paid an insert into it: about a fifth of
-- the group commit's cost. The hash, unique already, becomes the primary
-- key. `seq` stays unique by its sequence.
ALTER TABLE mempool
    DROP CONSTRAINT mempool_pkey,
    DROP CONSTRAINT mempool_tx_hash_key,
    ADD CONSTRAINT mempool_pkey PRIMARY KEY (tx_hash);
