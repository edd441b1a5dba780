-- The rollup's durable state: mempool, chain, state, and role progress.
-- Hashes and addresses are raw bytes; 256-bit integers are 32-byte big-endian.

-- Chain identity: checked at start-up so a node never runs on another chain's data.
CREATE TABLE chain_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Mempool: every acknowledged transaction, in arrival order (seq).
-- status: 0 pending, 1 included, 2 dropped.
CREATE TABLE mempool (
    seq          BIGSERIAL PRIMARY KEY,
    tx_hash      BYTEA NOT NULL UNIQUE,
    sender       BYTEA NOT NULL,
    nonce        BIGINT NOT NULL,
    raw          BYTEA NOT NULL,
    status       SMALLINT NOT NULL DEFAULT 0,
    block_number BIGINT,
    drop_reason  TEXT,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX mempool_pending ON mempool (seq) WHERE status = 0;
CREATE INDEX mempool_sender_nonce ON mempool (sender, nonce);

-- L2 blocks. `number` is the fence: a block commits only on top of the head.
CREATE TABLE blocks (
    number      BIGINT PRIMARY KEY,
    hash        BYTEA NOT NULL UNIQUE,
    parent_hash BYTEA NOT NULL,
    header      BYTEA NOT NULL, -- RLP of the Ethereum header
    timestamp   BIGINT NOT NULL,
    gas_used    BIGINT NOT NULL,
    base_fee    BIGINT NOT NULL,
    tx_count    INTEGER NOT NULL
);

-- Included transactions and their receipts.
CREATE TABLE transactions (
    hash                BYTEA PRIMARY KEY,
    block_number        BIGINT NOT NULL REFERENCES blocks (number),
    idx                 INTEGER NOT NULL,
    sender              BYTEA NOT NULL,
    raw                 BYTEA NOT NULL, -- EIP-2718 encoding
    receipt             BYTEA NOT NULL, -- EIP-2718 encoding of the receipt
    gas_used            BIGINT NOT NULL,
    effective_gas_price BYTEA NOT NULL,
    contract_address    BYTEA,
    first_log_index     INTEGER NOT NULL,
    UNIQUE (block_number, idx)
);

-- Current state (head). History is in state_diffs.
CREATE TABLE accounts (
    address   BYTEA PRIMARY KEY,
    nonce     BIGINT NOT NULL,
    balance   BYTEA NOT NULL,
    code_hash BYTEA NOT NULL
);

CREATE TABLE storage (
    address BYTEA NOT NULL,
    slot    BYTEA NOT NULL,
    value   BYTEA NOT NULL,
    PRIMARY KEY (address, slot)
);

CREATE TABLE code (
    hash BYTEA PRIMARY KEY,
    code BYTEA NOT NULL
);

-- Per-block state diff (old and new value of every changed account and slot).
CREATE TABLE state_diffs (
    block_number BIGINT PRIMARY KEY REFERENCES blocks (number),
    diff         JSONB NOT NULL
);

-- Batches built by the batcher. Once a batch row exists its bytes never
-- change, so a restart posts exactly the same data.
CREATE TABLE batches (
    idx         BIGINT PRIMARY KEY,
    first_block BIGINT NOT NULL,
    last_block  BIGINT NOT NULL,
    data        BYTEA NOT NULL,
    data_hash   BYTEA NOT NULL,
    l1_tx_hash  BYTEA,
    l1_block    BIGINT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    posted_at   TIMESTAMPTZ
);

-- State-root proposals made by the proposer.
CREATE TABLE proposals (
    l2_block    BIGINT PRIMARY KEY,
    block_hash  BYTEA NOT NULL,
    state_root  BYTEA NOT NULL,
    l1_tx_hash  BYTEA NOT NULL,
    l1_block    BIGINT,
    proposed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
