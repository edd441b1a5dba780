//! The chain config: one versioned file that every role reads.
//!
//! With this file, the genesis file it names and access to L1, a verifier has
//! everything it needs to rebuild the L2 chain. See `docs/decisions.md` for the
//! reasons behind the defaults.

use alloy_eips::eip1559::BaseFeeParams;
use alloy_primitives::{Address, B256};
use revm::primitives::hardfork::SpecId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The only chain config format version this build understands.
pub const CHAIN_CONFIG_VERSION: u32 = 1;

/// The L2 chain id of the dev network (not 31337, which the dev L1 uses).
pub const DEV_CHAIN_ID: u64 = 42_069;

/// Errors loading or validating a chain config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or written.
    #[error("chain config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("chain config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: Box<toml::de::Error>,
    },
    /// The file parsed but a value is not acceptable.
    #[error("chain config: {0}")]
    Invalid(String),
}

/// The timestamp rule of L2 blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimestampRule {
    /// Whole Unix seconds, never lower than the parent's: several blocks may
    /// share a second when the block time is below one second.
    WholeSecondsNonDecreasing,
}

/// The EVM fork the chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fork {
    /// Cancun (the fork of the conformance fixtures).
    Cancun,
}

impl Fork {
    /// The revm spec of this fork.
    pub const fn spec_id(self) -> SpecId {
        match self {
            Self::Cancun => SpecId::CANCUN,
        }
    }
}

/// EIP-1559 parameters of the L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeParams {
    /// Gas target is `block_gas_limit / elasticity_multiplier`.
    pub elasticity_multiplier: u64,
    /// The base fee changes by at most `1 / max_change_denominator` per block.
    /// Sub-second blocks need a larger value than Ethereum's 8 (OP uses 250).
    pub max_change_denominator: u64,
    /// The base fee never falls below this (wei).
    pub min_base_fee: u64,
    /// Base fee of the genesis block (wei).
    pub initial_base_fee: u64,
}

/// Where the chain's genesis is and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisRef {
    /// A geth-style genesis JSON, relative to the chain config's folder.
    pub file: PathBuf,
    /// Hash of the genesis block; the settlement contract records it.
    pub hash: B256,
}

/// The L1 side of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct L1Config {
    /// Chain id of the L1.
    pub chain_id: u64,
    /// Address of the settlement contract.
    pub settlement_contract: Address,
    /// The L1 block the settlement contract was deployed in: derivation starts here.
    pub start_block: u64,
}

/// The chain config file (`chain.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Format version of this file; must be [`CHAIN_CONFIG_VERSION`].
    pub version: u32,
    /// L2 chain id.
    pub chain_id: u64,
    /// The EVM fork.
    pub fork: Fork,
    /// Gas limit of every L2 block.
    pub block_gas_limit: u64,
    /// Target time between blocks, in milliseconds.
    pub block_time_ms: u64,
    /// How block timestamps are chosen.
    pub timestamp_rule: TimestampRule,
    /// Receives the priority fees (the base fee is burned, as on Ethereum).
    pub fee_recipient: Address,
    /// EIP-1559 parameters.
    pub eip1559: FeeParams,
    /// Version of the batch format the batcher writes.
    pub batch_format_version: u8,
    /// The genesis file and hash.
    pub genesis: GenesisRef,
    /// The L1 settlement side.
    pub l1: L1Config,
}

impl ChainConfig {
    /// Reads and validates a chain config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.to_owned(), source })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the config as TOML.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self)
            .map_err(|e| ConfigError::Invalid(format!("cannot serialize: {e}")))?;
        let header = "# Rollup chain config: every role reads this file. See README.md.\n";
        std::fs::write(path, format!("{header}{text}"))
            .map_err(|source| ConfigError::Io { path: path.to_owned(), source })
    }

    /// Checks the values a chain cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: &str| Err(ConfigError::Invalid(msg.to_owned()));
        if self.version != CHAIN_CONFIG_VERSION {
            return Err(ConfigError::Invalid(format!(
                "version {} is not supported (expected {CHAIN_CONFIG_VERSION})",
                self.version
            )));
        }
        if self.chain_id == 0 || self.chain_id == self.l1.chain_id {
            return invalid("chain_id must be non-zero and differ from the L1 chain id");
        }
        if self.block_gas_limit < 21_000 {
            return invalid("block_gas_limit must be at least 21000");
        }
        if self.block_time_ms == 0 {
            return invalid("block_time_ms must be positive");
        }
        if self.eip1559.elasticity_multiplier == 0 || self.eip1559.max_change_denominator == 0 {
            return invalid(
                "eip1559 elasticity_multiplier and max_change_denominator must be positive",
            );
        }
        if self.eip1559.initial_base_fee < self.eip1559.min_base_fee {
            return invalid("eip1559.initial_base_fee must be at least min_base_fee");
        }
        Ok(())
    }

    /// The genesis file's path, resolved against the folder of the config file.
    pub fn genesis_path(&self, config_path: &Path) -> PathBuf {
        config_path.parent().unwrap_or_else(|| Path::new(".")).join(&self.genesis.file)
    }

    /// The EIP-1559 parameters in alloy's form.
    pub const fn base_fee_params(&self) -> BaseFeeParams {
        BaseFeeParams::new(
            self.eip1559.max_change_denominator as u128,
            self.eip1559.elasticity_multiplier as u128,
        )
    }

    /// Base fee of the block after a parent with the given gas use and base fee.
    pub fn next_base_fee(&self, parent_gas_used: u64, parent_base_fee: u64) -> u64 {
        let next = alloy_eips::eip1559::calc_next_block_base_fee(
            parent_gas_used,
            self.block_gas_limit,
            parent_base_fee,
            self.base_fee_params(),
        );
        next.max(self.eip1559.min_base_fee)
    }

    /// Timestamp of the next block given the parent's and the wall clock (seconds).
    pub fn next_timestamp(&self, parent_timestamp: u64, now_secs: u64) -> u64 {
        match self.timestamp_rule {
            TimestampRule::WholeSecondsNonDecreasing => parent_timestamp.max(now_secs),
        }
    }

    /// A dev-network config with the embedded defaults; the genesis hash and
    /// the L1 fields are filled in when the dev network is created.
    pub fn dev_defaults() -> Self {
        Self {
            version: CHAIN_CONFIG_VERSION,
            chain_id: DEV_CHAIN_ID,
            fork: Fork::Cancun,
            block_gas_limit: 30_000_000,
            block_time_ms: 250,
            timestamp_rule: TimestampRule::WholeSecondsNonDecreasing,
            fee_recipient: Address::repeat_byte(0xfe),
            eip1559: FeeParams {
                elasticity_multiplier: 2,
                max_change_denominator: 250,
                min_base_fee: 1_000_000,
                initial_base_fee: 1_000_000_000,
            },
            batch_format_version: 0,
            genesis: GenesisRef { file: PathBuf::from("genesis.json"), hash: B256::ZERO },
            l1: L1Config { chain_id: 31_337, settlement_contract: Address::ZERO, start_block: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_round_trip_through_toml() {
        let config = ChainConfig::dev_defaults();
        config.validate().unwrap();
        let text = toml::to_string_pretty(&config).unwrap();
        let back: ChainConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, config);
        assert!(text.contains("timestamp_rule = \"whole-seconds-non-decreasing\""), "{text}");
    }

    #[test]
    fn rejects_bad_values() {
        let mut config = ChainConfig::dev_defaults();
        config.chain_id = 31_337;
        assert!(config.validate().is_err());
        let mut config = ChainConfig::dev_defaults();
        config.version = 2;
        assert!(config.validate().is_err());
        let mut config = ChainConfig::dev_defaults();
        config.eip1559.max_change_denominator = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn base_fee_is_damped_and_floored() {
        let config = ChainConfig::dev_defaults();
        let base = 1_000_000_000;
        // A full block raises the base fee by 1/250, not Ethereum's 1/8.
        assert_eq!(config.next_base_fee(config.block_gas_limit, base), base + base / 250);
        // An empty block lowers it by 1/250, and never below the floor.
        assert_eq!(config.next_base_fee(0, base), base - base / 250);
        assert_eq!(
            config.next_base_fee(0, config.eip1559.min_base_fee),
            config.eip1559.min_base_fee
        );
    }

    #[test]
    fn timestamps_never_decrease() {
        let config = ChainConfig::dev_defaults();
        assert_eq!(config.next_timestamp(100, 99), 100);
        assert_eq!(config.next_timestamp(100, 100), 100);
        assert_eq!(config.next_timestamp(100, 101), 101);
    }
}
