-- Block commits in a few statements whatever the block's size.
--
-- A block's transactions, senders and receipts are one compressed blob per
-- block (`block_bodies`) instead of one indexed row per transaction; a
-- narrow `tx_lookup` (the hash's first 8 bytes as an integer, no foreign key)
-- finds a transaction's block. Included transactions leave the mempool
-- (deleted, which touches no index) instead of being updated in place.
-- The head-state tables leave room on each page so balance and nonce
-- updates stay HOT (no index writes).
-- See docs/decisions.md, "Block commit: per-block blobs".

-- Rows of the old `transactions` table are moved into bodies by the store
-- right after the migrations run (`Store::migrate`: the blob is RLP and zstd,
-- which SQL cannot build), then the table is dropped.
ALTER TABLE transactions RENAME TO legacy_transactions;
-- mempool.status is now 0 (pending) or 2 (dropped); included rows go.
DELETE FROM mempool WHERE status = 1;

CREATE TABLE block_bodies (
    number BIGINT PRIMARY KEY REFERENCES blocks (number),
    -- zstd of the RLP list of (raw 2718 tx, sender, 2718 receipt, gas used,
    -- effective gas price, created contract or empty); see store/src/body.rs.
    body   BYTEA NOT NULL
);
-- Already compressed: store out of line without a second compression pass.
ALTER TABLE block_bodies ALTER COLUMN body SET STORAGE EXTERNAL;

CREATE TABLE tx_lookup (
    hash_prefix  BIGINT NOT NULL,  -- first 8 bytes of the hash, big-endian
    block_number BIGINT NOT NULL,
    idx          INTEGER NOT NULL
);
CREATE INDEX tx_lookup_prefix ON tx_lookup (hash_prefix);

ALTER TABLE state_diffs ALTER COLUMN encoded SET STORAGE EXTERNAL;
ALTER TABLE accounts SET (fillfactor = 80);
ALTER TABLE storage SET (fillfactor = 80);

-- The head-state tables are a checkpoint of the diff log at this block; the
-- diffs above it are replayed on load (store/src/checkpoint.rs). Until now
-- every commit wrote the tables, so they reflect the head.
CREATE TABLE state_checkpoint (
    one          BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    block_number BIGINT NOT NULL
);
INSERT INTO state_checkpoint (block_number) SELECT COALESCE(max(number), 0) FROM blocks;

-- The newest snapshot of the whole head state with its tries' node hashes
-- (executor/src/snapshot.rs), so a restart neither reads every state row nor
-- rehashes the tries: it decodes the snapshot and replays the diffs above it.
CREATE TABLE state_snapshots (
    block_number BIGINT PRIMARY KEY REFERENCES blocks (number),
    data         BYTEA NOT NULL
);
ALTER TABLE state_snapshots ALTER COLUMN data SET STORAGE EXTERNAL;
