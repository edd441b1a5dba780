//! Integration tests of the Postgres store against a real cluster.

mod chain;
