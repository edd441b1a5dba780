//! The genesis state and block from a geth-style genesis file.

use crate::{
    ChainConfig,
    block::genesis_header,
    state::{BasicAccount, MemoryState},
};
use alloy_consensus::Header;
use alloy_eips::eip4788::{BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CODE};
use alloy_genesis::{Genesis, GenesisAccount};
use alloy_primitives::{Address, B256, Bytes, U256, address};
use std::{collections::BTreeMap, path::Path};

/// Errors reading a genesis file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// The file could not be read.
    #[error("genesis file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a geth-style genesis.
    #[error("genesis file {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The genesis hashes to something else than the chain config says.
    #[error("genesis hash mismatch: chain config says {expected}, the genesis file gives {actual}")]
    HashMismatch {
        /// From the chain config.
        expected: B256,
        /// Computed from the file.
        actual: B256,
    },
}

/// The chain's first block and state.
#[derive(Debug, Clone)]
pub struct ChainGenesis {
    /// Block 0's header.
    pub header: Header,
    /// Block 0's hash.
    pub hash: B256,
    /// The state after block 0.
    pub state: MemoryState,
}

impl ChainGenesis {
    /// Builds the genesis block and state from a parsed genesis.
    pub fn from_genesis(config: &ChainConfig, genesis: &Genesis) -> Self {
        let mut state = MemoryState::new();
        for (address, account) in &genesis.alloc {
            let code_hash = account.code.clone().map(|code| state.insert_code(code));
            state.insert_account(
                *address,
                BasicAccount {
                    nonce: account.nonce.unwrap_or_default(),
                    balance: account.balance,
                    code_hash: code_hash.unwrap_or(alloy_trie::KECCAK_EMPTY),
                },
            );
            for (slot, value) in account.storage.iter().flatten() {
                state.insert_storage(*address, (*slot).into(), (*value).into());
            }
        }
        let header = genesis_header(config, genesis.timestamp, state.state_root());
        let hash = header.hash_slow();
        state.insert_block_hash(0, hash);
        Self { header, hash, state }
    }

    /// Reads a genesis file and checks it against the chain config's hash.
    pub fn load(config: &ChainConfig, path: &Path) -> Result<Self, GenesisError> {
        let genesis = read_genesis_file(path)?;
        let built = Self::from_genesis(config, &genesis);
        if built.hash != config.genesis.hash {
            return Err(GenesisError::HashMismatch {
                expected: config.genesis.hash,
                actual: built.hash,
            });
        }
        Ok(built)
    }
}

/// Parses a geth-style genesis JSON file.
pub fn read_genesis_file(path: &Path) -> Result<Genesis, GenesisError> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| GenesisError::Io { path: display.clone(), source })?;
    serde_json::from_str(&text).map_err(|source| GenesisError::Parse { path: display, source })
}

/// The deterministic-deployment proxy's address (CREATE2 with a salt,
/// `cast create2` and forge's default deployer).
pub const CREATE2_DEPLOYER_ADDRESS: Address =
    address!("0x4e59b44847b379578588920cA78FbF26c0B4956C");

/// Multicall3's address.
pub const MULTICALL3_ADDRESS: Address = address!("0xcA11bde05977b3631167028862bE2a173976CA11");

/// The deterministic-deployment proxy's runtime code, as on Ethereum mainnet
/// (the bytes anvil ships for the same address).
const CREATE2_DEPLOYER_CODE: &str = include_str!("predeploys/create2_deployer.hex");

/// Multicall3's runtime code, as on Ethereum mainnet (solc 0.8.12; the bytes
/// anvil ships for the same address).
const MULTICALL3_CODE: &str = include_str!("predeploys/multicall3.hex");

/// The contracts our chains' genesis holds at their canonical addresses,
/// each with nonce 1 as a created contract has (EIP-161).
///
/// - The EIP-4788 beacon-roots contract (the EIP's published bytecode, as on
///   Ethereum), so the Cancun beacon-root system call runs in every block
///   exactly as on Ethereum. Our chain has no beacon chain: the root it
///   stores is zero (see `docs/decisions.md`).
/// - The deterministic-deployment proxy at [`CREATE2_DEPLOYER_ADDRESS`] and
///   Multicall3 at [`MULTICALL3_ADDRESS`], which forge, cast, viem and
///   wallets expect on every chain.
pub fn predeploys() -> BTreeMap<Address, GenesisAccount> {
    let contract =
        |code: Bytes| GenesisAccount::default().with_nonce(Some(1)).with_code(Some(code));
    let hex_code = |text: &str| text.trim().parse::<Bytes>().expect("predeploy code is hex");
    BTreeMap::from([
        (BEACON_ROOTS_ADDRESS, contract(BEACON_ROOTS_CODE.clone())),
        (CREATE2_DEPLOYER_ADDRESS, contract(hex_code(CREATE2_DEPLOYER_CODE))),
        (MULTICALL3_ADDRESS, contract(hex_code(MULTICALL3_CODE))),
    ])
}

/// A genesis that funds `accounts` with `balance` each, at `timestamp`, with
/// the [`predeploys`].
pub fn funded_genesis(
    config: &ChainConfig,
    timestamp: u64,
    accounts: impl IntoIterator<Item = Address>,
    balance: U256,
) -> Genesis {
    let mut alloc = predeploys();
    alloc.extend(
        accounts
            .into_iter()
            .map(|address| (address, GenesisAccount::default().with_balance(balance))),
    );
    Genesis {
        timestamp,
        gas_limit: config.block_gas_limit,
        base_fee_per_gas: Some(config.eip1559.initial_base_fee.into()),
        alloc,
        ..Genesis::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_is_deterministic_and_checked_against_config() {
        let mut config = ChainConfig::dev_defaults();
        let genesis =
            funded_genesis(&config, 1_700_000_000, [Address::repeat_byte(1)], U256::from(5));
        let a = ChainGenesis::from_genesis(&config, &genesis);
        let b = ChainGenesis::from_genesis(&config, &genesis);
        assert_eq!(a.hash, b.hash);
        assert_eq!(a.header.number, 0);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("genesis.json");
        std::fs::write(&path, serde_json::to_string(&genesis).unwrap()).unwrap();
        config.genesis.hash = a.hash;
        assert_eq!(ChainGenesis::load(&config, &path).unwrap().hash, a.hash);
        config.genesis.hash = B256::repeat_byte(9);
        assert!(matches!(
            ChainGenesis::load(&config, &path),
            Err(GenesisError::HashMismatch { .. })
        ));
    }
}
