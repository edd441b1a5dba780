-- State diffs in their binary (RLP) form. Encoding and parsing a 10,000-account
-- diff as JSONB took longer than the rest of a block commit together.
-- Rows written before this migration keep their JSONB `diff`; new rows fill
-- `encoded` only.
ALTER TABLE state_diffs ALTER COLUMN diff DROP NOT NULL;
ALTER TABLE state_diffs ADD COLUMN encoded BYTEA;
ALTER TABLE state_diffs ADD CONSTRAINT state_diffs_one_form
    CHECK (diff IS NOT NULL OR encoded IS NOT NULL);
