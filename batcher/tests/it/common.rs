//! Helpers shared by the batcher's integration tests.

use alloy::{
    primitives::{Address, B256, TxKind, U256},
    signers::local::PrivateKeySigner,
};
use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_signer::SignerSync;
use rollup_batcher::{l1, settlement::Settlement};
use rollup_devnet::{Anvil, AnvilOptions, free_port};
use rollup_executor::{
    ChainConfig, Engine, InvalidTxPolicy, ParentBlock, RecoveredTx, execute_block,
    genesis::{ChainGenesis, funded_genesis},
};
use rollup_store::Store;

/// A throwaway anvil (mining on demand) with the settlement contract for
/// `config`'s chain deployed (its address stored in `config`), and the
/// batcher's signer the contract accepts.
pub(crate) async fn settlement_on_anvil(config: &mut ChainConfig) -> (Anvil, PrivateKeySigner) {
    let anvil = Anvil::spawn(&AnvilOptions {
        block_time_secs: None,
        ..AnvilOptions::throwaway(free_port().unwrap())
    })
    .expect("anvil");
    let owner = l1::parse_key(OWNER_KEY).unwrap();
    let batcher = l1::parse_key(BATCHER_KEY).unwrap();
    let owner_l1 = l1::signing_provider(&anvil.url(), owner).unwrap();
    let deployed = Settlement::deploy(
        &owner_l1,
        config.genesis.hash,
        config.chain_id,
        batcher.address(),
        PrivateKeySigner::random().address(),
    )
    .await
    .unwrap();
    config.l1.settlement_contract = *deployed.address();
    (anvil, batcher)
}

/// anvil's first two dev keys (the standard test mnemonic).
const OWNER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const BATCHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// Writes `blocks` blocks of one transfer each on top of genesis.
pub(crate) async fn chain_with_blocks(store: &Store, blocks: u64) -> (ChainConfig, ChainGenesis) {
    let mut config = ChainConfig::dev_defaults();
    let user = PrivateKeySigner::from_bytes(&B256::repeat_byte(3)).unwrap();
    let genesis = funded_genesis(&config, 1_000, [user.address()], U256::from(10u128.pow(20)));
    let chain = ChainGenesis::from_genesis(&config, &genesis);
    config.genesis.hash = chain.hash;
    store.init_genesis(config.chain_id, &chain).await.unwrap();
    let (mut state, mut header, mut hash) = (chain.state.clone(), chain.header.clone(), chain.hash);
    for nonce in 0..blocks {
        let tx = TxEip1559 {
            chain_id: config.chain_id,
            nonce,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(Address::repeat_byte(0xee)),
            value: U256::from(1),
            ..Default::default()
        };
        let sig = user.sign_hash_sync(&tx.signature_hash()).unwrap();
        let tx = RecoveredTx::new_unchecked(tx.into_signed(sig).into(), user.address());
        let parent = ParentBlock { header: &header, hash };
        let executed = execute_block(
            &config,
            Engine::default(),
            &state,
            parent,
            1_000 + nonce,
            vec![tx],
            InvalidTxPolicy::Reject,
        )
        .unwrap();
        state.apply(&executed.diff);
        let sealed = executed.seal(state.state_root());
        state.insert_block_hash(sealed.block.header.number, sealed.hash);
        store.commit_block(&sealed, &[user.address()], &[]).await.unwrap();
        (header, hash) = (sealed.block.header, sealed.hash);
    }
    (config, chain)
}
