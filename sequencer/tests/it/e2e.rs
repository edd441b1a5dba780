//! One transaction all the way to L1, asserted at every step.

use crate::common::{TestNet, eventually, head_reaches, signed_transfer};
use alloy::{
    consensus::TxEnvelope,
    eips::{BlockId, BlockNumberOrTag, Decodable2718, Encodable2718},
    network::{NetworkTransactionBuilder, TransactionBuilder},
    primitives::{Address, B256, Bytes, U64, U256, address, hex, keccak256},
    providers::Provider,
    rpc::types::{Filter, TransactionRequest},
};
use rollup_batcher::derive::{read_batches, read_proposals, replay};
use rollup_devnet::find_node_binary;
use rollup_executor::genesis::ChainGenesis;
use std::process::Command;

const ONE_ETH: u128 = 1_000_000_000_000_000_000;

/// Deploys a contract that emits one log with `topic` (no data) per call.
async fn deploy_emitter(l2: &impl Provider, topic: B256) -> Address {
    // Runtime: PUSH32 topic, PUSH1 0, PUSH1 0, LOG1, STOP.
    let runtime = [&[0x7f][..], topic.as_slice(), &hex!("60006000a100")].concat();
    let init = [&hex!("602780600b6000396000f3")[..], &runtime].concat();
    let deploy = TransactionRequest::default().with_deploy_code(init);
    let deployed = l2.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
    deployed.contract_address.expect("contract created")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_reaches_l1_and_the_chain_rederives_from_l1() {
    let net = TestNet::start(10).await;
    let (l2, signer) = net.l2_wallet(3);
    assert_eq!(l2.get_chain_id().await.unwrap(), net.config.chain_id);

    // EIP-1559 transfer, fees and gas filled by alloy through our RPC.
    let recipient = address!("0x00000000000000000000000000000000c0ffee01");
    let request = TransactionRequest::default().with_to(recipient).with_value(U256::from(ONE_ETH));
    let receipt = l2.send_transaction(request).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status(), "transfer succeeded");
    assert_eq!(receipt.from, signer.address());
    assert_eq!(receipt.gas_used, 21_000);
    assert_eq!(l2.get_balance(recipient).await.unwrap(), U256::from(ONE_ETH));
    assert_eq!(l2.get_transaction_count(signer.address()).await.unwrap(), 1);

    // EIP-155 legacy transfer.
    let legacy = TransactionRequest::default()
        .with_to(recipient)
        .with_value(U256::from(5))
        .with_gas_price(2_000_000_000)
        .with_gas_limit(21_000);
    let legacy_receipt = l2.send_transaction(legacy).await.unwrap().get_receipt().await.unwrap();
    assert!(legacy_receipt.status());
    let legacy_tx = l2
        .get_transaction_by_hash(legacy_receipt.transaction_hash)
        .await
        .unwrap()
        .expect("tx known");
    assert!(matches!(legacy_tx.inner.inner(), TxEnvelope::Legacy(_)));
    assert_eq!(alloy::consensus::Transaction::chain_id(&legacy_tx), Some(net.config.chain_id));

    // The block: Ethereum header, hashed as Ethereum does, fees to the recipient.
    let number = receipt.block_number.unwrap();
    let block =
        l2.get_block_by_number(BlockNumberOrTag::Number(number)).full().await.unwrap().unwrap();
    assert_eq!(block.header.hash, block.header.inner.hash_slow());
    assert_eq!(block.header.hash, receipt.block_hash.unwrap());
    assert!(block.transactions.hashes().any(|h| h == receipt.transaction_hash));
    assert!(l2.get_balance(net.config.fee_recipient).await.unwrap() > U256::ZERO);
    let gas_price = l2.get_gas_price().await.unwrap();
    assert!(gas_price >= u128::from(net.config.eip1559.min_base_fee));
    assert_eq!(l2.get_blob_base_fee().await.unwrap(), 1);
    let history = l2.get_fee_history(4, BlockNumberOrTag::Latest, &[50.0]).await.unwrap();
    assert!(!history.base_fee_per_gas.is_empty());
    let estimate = l2
        .estimate_gas(TransactionRequest::default().with_from(signer.address()).with_to(recipient))
        .await
        .unwrap();
    assert_eq!(estimate, 21_000);

    // A contract that emits one log per call: eth_getLogs finds it by address and topic.
    let topic = alloy::primitives::B256::repeat_byte(0xab);
    let emitter = deploy_emitter(&l2, topic).await;
    let call = TransactionRequest::default().with_to(emitter);
    let called = l2.send_transaction(call).await.unwrap().get_receipt().await.unwrap();
    assert_eq!(called.inner.logs().len(), 1);
    let logs = l2.get_logs(&Filter::new().address(emitter).from_block(0)).await.unwrap();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].topics(), &[topic]);
    assert_eq!(logs[0].transaction_hash, Some(called.transaction_hash));
    let none = Filter::new().address(emitter).event_signature(B256::ZERO).from_block(0);
    assert!(l2.get_logs(&none).await.unwrap().is_empty());

    // eth_sendRawTransactionSync returns the receipt; the lifecycle view follows it.
    let raw = {
        let request = TransactionRequest::default()
            .with_to(recipient)
            .with_value(U256::from(7))
            .with_nonce(l2.get_transaction_count(signer.address()).await.unwrap())
            .with_chain_id(net.config.chain_id)
            .with_gas_limit(21_000)
            .with_max_fee_per_gas(2_000_000_000)
            .with_max_priority_fee_per_gas(1_000_000);
        let wallet = alloy::network::EthereumWallet::from(signer.clone());
        request.build(&wallet).await.unwrap().encoded_2718()
    };
    let sync: alloy::rpc::types::TransactionReceipt = l2
        .raw_request("eth_sendRawTransactionSync".into(), (Bytes::from(raw), 5_000u64))
        .await
        .unwrap();
    assert!(sync.status());
    let status: serde_json::Value = l2
        .raw_request("rollup_getTransactionStatus".into(), (sync.transaction_hash,))
        .await
        .unwrap();
    assert!(
        matches!(status["status"].as_str(), Some("sequenced" | "batched" | "posted")),
        "{status}"
    );
    let rest_url = format!("{}/v1/transactions/{}", net.rpc_url, sync.transaction_hash);

    // The batch: on L1, decoding to the same blocks and transactions.
    let l1 = net.l1();
    let contract = net.config.l1.settlement_contract;
    let start = net.config.l1.start_block;
    let last = legacy_receipt.block_number.unwrap();
    let batches = eventually(90, "a batch covering the transfers", || async {
        let batches = read_batches(&l1, contract, start).await.unwrap();
        batches.iter().any(|b| b.last_block >= last).then_some(batches)
    })
    .await;
    for (i, batch) in batches.iter().enumerate() {
        assert_eq!(batch.index, i as u64, "batches are appended in order, once each");
    }
    let derived: Vec<_> = batches.iter().flat_map(|b| b.blocks.clone()).collect();
    for derived_block in derived.iter().filter(|b| b.number == number || b.number == last) {
        let l2_block = l2
            .get_block_by_number(BlockNumberOrTag::Number(derived_block.number))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(derived_block.timestamp, l2_block.header.timestamp);
        let hashes: Vec<_> = derived_block
            .transactions
            .iter()
            .map(|raw| *TxEnvelope::decode_2718(&mut raw.as_ref()).unwrap().tx_hash())
            .collect();
        assert_eq!(hashes, l2_block.transactions.hashes().collect::<Vec<_>>());
    }

    // The proposal: the posted root is the L2 block's state root.
    let proposal = eventually(90, "a state-root proposal", || async {
        read_proposals(&l1, contract, start)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .find(|p| p.l2_block >= last)
    })
    .await;
    let proposed =
        l2.get_block_by_number(BlockNumberOrTag::Number(proposal.l2_block)).await.unwrap().unwrap();
    assert_eq!(proposal.state_root, proposed.header.state_root);
    assert_eq!(proposal.block_hash, proposed.header.hash);

    // The verifier's core: re-execute from genesis using L1 data only.
    let genesis =
        ChainGenesis::load(&net.config, &net.config.genesis_path(&net.chain_path)).unwrap();
    let replayed = replay(&net.config, genesis, derived).expect("batches replay");
    let at_proposal = replayed.iter().find(|b| b.number == proposal.l2_block).expect("replayed");
    assert_eq!(at_proposal.state_root, proposal.state_root);
    assert_eq!(at_proposal.hash, proposal.block_hash);

    // Once its batch is on L1, the lifecycle says posted, with the L1 transaction.
    let posted = eventually(60, "the sync transaction's batch on L1", || async {
        let status: serde_json::Value = reqwest::get(&rest_url).await.ok()?.json().await.ok()?;
        (status["status"] == "posted").then_some(status)
    })
    .await;
    assert!(posted["l1TransactionHash"].is_string(), "{posted}");
    assert!(posted["l1BlockNumber"].is_string(), "{posted}");

    // Once L1 finalizes that block (anvil: 64 blocks deep), it is finalized.
    let _: serde_json::Value =
        l1.raw_request("anvil_mine".into(), (U256::from(70),)).await.unwrap();
    eventually(30, "the sync transaction finalized", || async {
        let status: serde_json::Value = reqwest::get(&rest_url).await.ok()?.json().await.ok()?;
        (status["status"] == "finalized").then_some(())
    })
    .await;

    // Metrics are served.
    let metrics = reqwest::get(&net.metrics_url).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("rollup_blocks_produced_total"), "{metrics}");
    assert!(metrics.contains("rollup_batches_posted_total"));
    net.stop().await;
}

/// Verifies an `eth_getProof` account proof against `root` with alloy-trie:
/// the leaf is the RLP of (nonce, balance, storage root, code hash), or
/// absent when the account does not `exist`.
fn verify_account_proof(
    root: B256,
    proof: &alloy::rpc::types::EIP1186AccountProofResponse,
    exist: bool,
) {
    use alloy_trie::{Nibbles, TrieAccount, proof::verify_proof};
    let leaf = exist.then(|| {
        alloy::rlp::encode(TrieAccount {
            nonce: proof.nonce,
            balance: proof.balance,
            storage_root: proof.storage_hash,
            code_hash: proof.code_hash,
        })
    });
    verify_proof(root, Nibbles::unpack(keccak256(proof.address)), leaf, &proof.account_proof)
        .unwrap_or_else(|e| panic!("account proof of {}: {e}", proof.address));
}

/// Verifies the storage proofs of `keys` against the account's storage root.
fn verify_storage_proofs(proof: &alloy::rpc::types::EIP1186AccountProofResponse, keys: &[B256]) {
    use alloy_trie::{Nibbles, proof::verify_proof};
    for (slot, storage) in keys.iter().zip(&proof.storage_proof) {
        let expected = (!storage.value.is_zero()).then(|| alloy::rlp::encode(storage.value));
        verify_proof(
            proof.storage_hash,
            Nibbles::unpack(keccak256(slot)),
            expected,
            &storage.proof,
        )
        .unwrap_or_else(|e| panic!("storage proof of {slot}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_verify_against_the_state_root_with_alloy() {
    // alloy's own verifier, independent of the code that built the proofs.
    use alloy::consensus::constants::KECCAK_EMPTY;
    let net = TestNet::start(10).await;
    let (l2, signer) = net.l2_wallet(2);
    // Init code: SSTORE(0, 42), SSTORE(1, 7); runtime: one STOP byte.
    let init = hex!("602a600055600760015560016000f3");
    let deploy = TransactionRequest::default().with_deploy_code(init.to_vec());
    let receipt = l2.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
    let contract = receipt.contract_address.expect("created");
    let absent = Address::repeat_byte(0x99);

    let head = l2.get_block_number().await.unwrap();
    let keys = vec![B256::ZERO, B256::with_last_byte(1), B256::with_last_byte(2)];
    let proof = l2.get_proof(contract, keys.clone()).await.unwrap();
    let sender_proof = l2.get_proof(signer.address(), vec![]).await.unwrap();
    let absent_proof = l2.get_proof(absent, vec![]).await.unwrap();
    assert_eq!(l2.get_block_number().await.unwrap(), head, "no block in between");
    let root = l2
        .get_block_by_number(BlockNumberOrTag::Number(head))
        .await
        .unwrap()
        .unwrap()
        .header
        .state_root;

    // Accounts: the proof's leaf is the RLP of (nonce, balance, storage root, code hash).
    for p in [&proof, &sender_proof] {
        verify_account_proof(root, p, true);
    }
    assert_eq!(sender_proof.nonce, 1);
    assert_eq!(sender_proof.code_hash, KECCAK_EMPTY);
    // An absent account: the proof shows the key is not in the trie.
    verify_account_proof(root, &absent_proof, false);
    assert_eq!(absent_proof.balance, U256::ZERO);

    // Storage: slots 0 and 1 hold 42 and 7, slot 2 is absent.
    let values: Vec<U256> = proof.storage_proof.iter().map(|s| s.value).collect();
    assert_eq!(values, [U256::from(42), U256::from(7), U256::ZERO]);
    verify_storage_proofs(&proof, &keys);

    // Historical reads: before the deploy block there was no contract, and
    // at genesis the sender had its genesis balance and nonce 0.
    let number = receipt.block_number.unwrap();
    let before = BlockId::number(number - 1);
    assert!(l2.get_code_at(contract).block_id(before).await.unwrap().is_empty());
    assert_eq!(l2.get_code_at(contract).await.unwrap().as_ref(), &[0x00]);
    let slot0 = l2.get_storage_at(contract, U256::ZERO);
    assert_eq!(slot0.block_id(before).await.unwrap(), U256::ZERO);
    assert_eq!(l2.get_storage_at(contract, U256::ZERO).await.unwrap(), U256::from(42));
    let genesis = BlockId::number(0);
    assert_eq!(l2.get_transaction_count(signer.address()).block_id(genesis).await.unwrap(), 0);
    assert_eq!(
        l2.get_balance(signer.address()).block_id(genesis).await.unwrap(),
        U256::from(rollup_sequencer::dev::DEV_BALANCE_WEI)
    );
    assert!(l2.get_balance(signer.address()).block_id(BlockId::number(head + 5)).await.is_err());
    // eth_call at a past block sees that block's state: init code returning
    // BALANCE(CALLER) answers the genesis balance at block 0.
    let balance_of_caller = TransactionRequest::default()
        .with_from(signer.address())
        .with_deploy_code(hex!("333160005260206000f3").to_vec());
    let at_genesis = l2.call(balance_of_caller.clone()).block(genesis).await.unwrap();
    assert_eq!(
        U256::from_be_slice(&at_genesis),
        U256::from(rollup_sequencer::dev::DEV_BALANCE_WEI)
    );
    let now = l2.call(balance_of_caller).await.unwrap();
    assert!(U256::from_be_slice(&now) < U256::from(rollup_sequencer::dev::DEV_BALANCE_WEI));

    // Proofs at past blocks verify against those blocks' roots: a later
    // transfer moves the head, then the deploy block and the one before it
    // are proven (the contract present with its slots, then absent).
    let transfer = TransactionRequest::default().with_to(absent).with_value(U256::from(1));
    l2.send_transaction(transfer).await.unwrap().get_receipt().await.unwrap();
    for (at, exists) in [(number, true), (number - 1, false)] {
        let root = l2
            .get_block_by_number(BlockNumberOrTag::Number(at))
            .await
            .unwrap()
            .unwrap()
            .header
            .state_root;
        let past =
            l2.get_proof(contract, keys.clone()).block_id(BlockId::number(at)).await.unwrap();
        verify_account_proof(root, &past, exists);
        let sender =
            l2.get_proof(signer.address(), vec![]).block_id(BlockId::number(at)).await.unwrap();
        verify_account_proof(root, &sender, true);
        if exists {
            let values: Vec<U256> = past.storage_proof.iter().map(|s| s.value).collect();
            assert_eq!(values, [U256::from(42), U256::from(7), U256::ZERO]);
            verify_storage_proofs(&past, &keys);
        }
    }

    // The block's stored diff shows the new slots.
    let diff: serde_json::Value =
        l2.raw_request("rollup_getStateDiff".into(), (U64::from(number),)).await.unwrap();
    let slots = &diff["accounts"][contract.to_string().to_lowercase()]["storage"];
    assert!(slots.as_object().is_some_and(|s| s.len() == 2), "{diff}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_submission_and_the_queued_stage() {
    let net = TestNet::start(10).await;
    let http = reqwest::Client::new();
    let submit_url = format!("{}/v1/transactions", net.rpc_url);
    let to = Address::repeat_byte(0x51);
    let status_of = |hash: String| {
        let url = format!("{}/v1/transactions/{hash}", net.rpc_url);
        async move {
            let status: serde_json::Value = reqwest::get(&url).await.ok()?.json().await.ok()?;
            status["status"].as_str().map(str::to_owned)
        }
    };

    // Nonce 1 first, as raw bytes: acknowledged, but queued behind the missing nonce 0.
    let gap = signed_transfer(5, net.config.chain_id, 1, to);
    let response = http
        .post(&submit_url)
        .header("content-type", "application/octet-stream")
        .body(gap.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let gap_hash = body["hash"].as_str().unwrap().to_owned();
    assert_eq!(gap_hash, keccak256(&gap).to_string());
    assert_eq!(status_of(gap_hash.clone()).await.as_deref(), Some("queued"));

    // Nonce 0 as hex text fills the gap: both are sequenced.
    let first = signed_transfer(5, net.config.chain_id, 0, to);
    let response = http.post(&submit_url).body(first.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let first_hash = keccak256(&first).to_string();
    for hash in [first_hash, gap_hash] {
        eventually(30, "both transfers sequenced", || {
            let status = status_of(hash.clone());
            async move {
                matches!(status.await.as_deref(), Some("sequenced" | "batched" | "posted"))
                    .then_some(())
            }
        })
        .await;
    }

    // The same bytes again after inclusion: the same hash (idempotent).
    let again = http.post(&submit_url).body(first.to_string()).send().await.unwrap();
    assert_eq!(again.status(), 200);
    let body: serde_json::Value = again.json().await.unwrap();
    assert_eq!(body["hash"], keccak256(&first).to_string());

    // Refusals carry the JSON-RPC error object with geth's message.
    let other = signed_transfer(5, net.config.chain_id, 0, Address::repeat_byte(0x52));
    let refused = http.post(&submit_url).body(other.to_string()).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["message"], "nonce too low", "{body}");
    assert_eq!(body["error"]["code"], -32000);
    let garbage = http.post(&submit_url).body("0xzz").send().await.unwrap();
    assert_eq!(garbage.status(), 400);
    let body: serde_json::Value = garbage.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32602, "{body}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_sends_a_transfer_unmodified() {
    let net = TestNet::start(10).await;
    let cast = find_node_binary("cast").expect("cast installed by npm");
    let key = format!("{:#x}", rollup_sequencer::dev::dev_key(4).unwrap().to_bytes());
    let to = Address::repeat_byte(0x42).to_string();
    let cast_run = |args: Vec<String>| {
        let cast = cast.clone();
        async move {
            tokio::task::spawn_blocking(move || Command::new(cast).args(args).output().unwrap())
                .await
                .unwrap()
        }
    };
    let sent = cast_run(vec![
        "send".into(),
        "--rpc-url".into(),
        net.rpc_url.clone(),
        "--private-key".into(),
        key,
        "--async".into(),
        to.clone(),
        "--value".into(),
        "1ether".into(),
    ])
    .await;
    assert!(sent.status.success(), "cast send: {}", String::from_utf8_lossy(&sent.stderr));
    let hash = String::from_utf8(sent.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("0x") && hash.len() == 66, "cast send printed {hash}");

    let receipt =
        cast_run(vec!["receipt".into(), "--rpc-url".into(), net.rpc_url.clone(), hash]).await;
    let text = String::from_utf8_lossy(&receipt.stdout);
    assert!(receipt.status.success(), "cast receipt: {}", String::from_utf8_lossy(&receipt.stderr));
    assert!(text.contains("status") && text.contains("1 (success)"), "{text}");

    let balance =
        cast_run(vec!["balance".into(), "--rpc-url".into(), net.rpc_url.clone(), to]).await;
    assert!(balance.status.success());
    assert_eq!(String::from_utf8_lossy(&balance.stdout).trim(), ONE_ETH.to_string());
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_genesis_holds_multicall3_and_the_create2_deployer() {
    use rollup_executor::genesis::{CREATE2_DEPLOYER_ADDRESS, MULTICALL3_ADDRESS};
    let net = TestNet::start(10).await;
    let (l2, signer) = net.l2_wallet(2);

    // Multicall3 answers its view functions: getChainId(), getEthBalance(address).
    let call =
        |data: Vec<u8>| TransactionRequest::default().with_to(MULTICALL3_ADDRESS).with_input(data);
    let chain_id = l2.call(call(hex!("3408e470").to_vec())).await.unwrap();
    assert_eq!(U256::from_be_slice(&chain_id), U256::from(l2.get_chain_id().await.unwrap()));
    let get_balance =
        [&hex!("4d2301cc")[..], B256::left_padding_from(signer.address().as_slice()).as_slice()]
            .concat();
    let balance = l2.call(call(get_balance)).await.unwrap();
    assert_eq!(U256::from_be_slice(&balance), l2.get_balance(signer.address()).await.unwrap());

    // The deterministic deployer creates at CREATE2(deployer, salt, init code).
    let init = hex!("602a60005560016000f3");
    let salt = B256::repeat_byte(0x5a);
    let deploy = TransactionRequest::default()
        .with_to(CREATE2_DEPLOYER_ADDRESS)
        .with_input([salt.as_slice(), &init[..]].concat());
    let receipt = l2.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
    assert!(receipt.status());
    let created = CREATE2_DEPLOYER_ADDRESS.create2_from_code(salt, init);
    assert_eq!(l2.get_code_at(created).await.unwrap().as_ref(), &[0x00]);
    assert_eq!(l2.get_storage_at(created, U256::ZERO).await.unwrap(), U256::from(42));
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_reads_by_number_hash_and_index() {
    use serde_json::Value;
    let net = TestNet::start(10).await;
    let (l2, _) = net.l2_wallet(3);
    let raw = signed_transfer(4, net.config.chain_id, 0, Address::repeat_byte(0x44));
    let hash = *l2.send_raw_transaction(&raw).await.unwrap().tx_hash();
    let receipt = eventually(30, "the receipt", || async {
        l2.get_transaction_receipt(hash).await.ok().flatten()
    })
    .await;
    let (number, block_hash) = (receipt.block_number.unwrap(), receipt.block_hash.unwrap());
    let index = receipt.transaction_index.unwrap() as usize;
    head_reaches(&l2, number).await;
    let block = l2.get_block_by_number(number.into()).await.unwrap().unwrap();
    let in_block = block.transactions.len() as u64;

    // Receipts of the whole block, by number and by hash: the same as one by one.
    let one: Value = l2.raw_request("eth_getTransactionReceipt".into(), (hash,)).await.unwrap();
    for id in [BlockId::number(number), BlockId::hash(block_hash)] {
        let all: Vec<Value> = l2.raw_request("eth_getBlockReceipts".into(), (id,)).await.unwrap();
        assert_eq!(all.len() as u64, in_block);
        assert_eq!(all[index], one);
    }
    assert_eq!(
        l2.get_block_receipts(BlockId::number(number)).await.unwrap().unwrap().len() as u64,
        in_block
    );

    // Counts and positions.
    assert_eq!(
        l2.get_block_transaction_count_by_number(number.into()).await.unwrap(),
        Some(in_block)
    );
    assert_eq!(l2.get_block_transaction_count_by_hash(block_hash).await.unwrap(), Some(in_block));
    let by_hash: Value = l2.raw_request("eth_getTransactionByHash".into(), (hash,)).await.unwrap();
    let at_number: Value = l2
        .raw_request(
            "eth_getTransactionByBlockNumberAndIndex".into(),
            (U64::from(number), U64::from(index)),
        )
        .await
        .unwrap();
    let at_hash: Value = l2
        .raw_request("eth_getTransactionByBlockHashAndIndex".into(), (block_hash, U64::from(index)))
        .await
        .unwrap();
    assert_eq!(at_number, by_hash);
    assert_eq!(at_hash, by_hash);
    let past_the_end = l2
        .get_transaction_by_block_number_and_index(number.into(), in_block as usize)
        .await
        .unwrap();
    assert!(past_the_end.is_none());

    // Raw bytes: by hash and by position, what was sent.
    let raw_by_hash: Bytes =
        l2.raw_request("eth_getRawTransactionByHash".into(), (hash,)).await.unwrap();
    assert_eq!(raw_by_hash, raw);
    let raw_at = l2.get_raw_transaction_by_block_hash_and_index(block_hash, index).await.unwrap();
    assert_eq!(raw_at, Some(raw.clone()));

    // No uncles; a block beyond the head is null.
    assert_eq!(l2.get_uncle_count(BlockId::number(number)).await.unwrap(), 0);
    assert_eq!(l2.get_uncle_count(BlockId::hash(block_hash)).await.unwrap(), 0);
    assert!(l2.get_uncle(BlockId::number(number), 0).await.unwrap().is_none());
    let beyond = BlockNumberOrTag::Number(number + 1_000_000);
    let count: Option<U64> =
        l2.raw_request("eth_getUncleCountByBlockNumber".into(), (beyond,)).await.unwrap();
    assert_eq!(count, None);
    let receipts: Option<Vec<Value>> =
        l2.raw_request("eth_getBlockReceipts".into(), (beyond,)).await.unwrap();
    assert_eq!(receipts, None);

    // The small ones.
    let sha: B256 =
        l2.raw_request("web3_sha3".into(), (Bytes::from_static(b"hello"),)).await.unwrap();
    assert_eq!(sha, keccak256(b"hello"));
    let listening: bool = l2.raw_request("net_listening".into(), ()).await.unwrap();
    assert!(listening);
    let peers: U64 = l2.raw_request("net_peerCount".into(), ()).await.unwrap();
    assert_eq!(peers, U64::ZERO);
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_filters_report_new_blocks_logs_and_pending_transactions() {
    use alloy::rpc::types::Log;
    let net = TestNet::start(10).await;
    let (l2, _) = net.l2_wallet(5);
    let topic = B256::repeat_byte(0xcd);
    let emitter = deploy_emitter(&l2, topic).await;

    let blocks = l2.new_block_filter().await.unwrap();
    let logs = l2.new_filter(&Filter::new().address(emitter).from_block(0)).await.unwrap();
    let pending = l2.new_pending_transactions_filter(false).await.unwrap();
    // Installed after the deployment: nothing to report yet.
    assert!(l2.get_filter_changes::<Log>(logs).await.unwrap().is_empty());

    // A transaction that stays pending (a nonce gap), and a call that logs.
    let gapped = signed_transfer(6, net.config.chain_id, 1, Address::repeat_byte(0x45));
    let gapped = *l2.send_raw_transaction(&gapped).await.unwrap().tx_hash();
    let call = TransactionRequest::default().with_to(emitter);
    let called = l2.send_transaction(call).await.unwrap().get_receipt().await.unwrap();
    head_reaches(&l2, called.block_number.unwrap()).await;

    let new_logs: Vec<Log> = l2.get_filter_changes(logs).await.unwrap();
    assert_eq!(new_logs.len(), 1);
    assert_eq!(new_logs[0].transaction_hash, Some(called.transaction_hash));
    assert_eq!(new_logs[0].topics(), &[topic]);
    assert!(l2.get_filter_changes::<Log>(logs).await.unwrap().is_empty(), "reported once");
    // The whole range, as eth_getLogs answers it.
    assert_eq!(l2.get_filter_logs(logs).await.unwrap(), new_logs);

    let new_blocks: Vec<B256> = l2.get_filter_changes(blocks).await.unwrap();
    assert!(new_blocks.contains(&called.block_hash.unwrap()), "{new_blocks:?}");
    let arrived: Vec<B256> = l2.get_filter_changes(pending).await.unwrap();
    assert!(arrived.contains(&gapped), "{arrived:?}");
    assert!(!l2.get_filter_changes::<B256>(pending).await.unwrap().contains(&gapped));

    // alloy's block poller runs on the same methods.
    let mut stream = l2.watch_blocks().await.unwrap().into_stream();
    let next = l2.send_transaction(TransactionRequest::default().with_to(emitter)).await.unwrap();
    let next = next.get_receipt().await.unwrap().block_hash.unwrap();
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        use futures::StreamExt;
        while let Some(hashes) = stream.next().await {
            if hashes.contains(&next) {
                return;
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "the block poller saw the new block");

    // Uninstalled once; then unknown, with geth's message.
    assert!(l2.uninstall_filter(logs).await.unwrap());
    assert!(!l2.uninstall_filter(logs).await.unwrap());
    let gone = l2.get_filter_changes::<Log>(logs).await.unwrap_err();
    assert!(gone.to_string().contains("filter not found"), "{gone}");
    net.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lists_name_the_slots_and_accounts_a_call_touches() {
    use alloy::eips::eip2930::{AccessList, AccessListItem};
    let net = TestNet::start(10).await;
    let (l2, signer) = net.l2_wallet(7);
    // Runtime: BALANCE of `other`, then return slot 0; the init code stores 42 there.
    let other = Address::repeat_byte(0x46);
    let runtime = [&[0x73][..], other.as_slice(), &hex!("315060005460005260206000f3")].concat();
    assert_eq!(runtime.len(), 0x22);
    let init = [&hex!("602a600055602280601060003960" "00f3")[..], &runtime].concat();
    let deploy = TransactionRequest::default().with_deploy_code(init);
    let deployed = l2.send_transaction(deploy).await.unwrap().get_receipt().await.unwrap();
    let contract = deployed.contract_address.expect("contract created");
    head_reaches(&l2, deployed.block_number.unwrap()).await;

    let call = TransactionRequest::default().with_from(signer.address()).with_to(contract);
    assert_eq!(U256::from_be_slice(&l2.call(call.clone()).await.unwrap()), U256::from(42));
    let result = l2.create_access_list(&call).await.unwrap();
    assert_eq!(result.error, None);
    let mut expected = vec![
        AccessListItem { address: contract, storage_keys: vec![B256::ZERO] },
        AccessListItem { address: other, storage_keys: vec![] },
    ];
    expected.sort_by_key(|item| item.address);
    assert_eq!(result.access_list, AccessList(expected));

    // The gas it reports is what the call uses with the list, which the
    // call pays for (no fee fields: a type-1 call): the recipient is listed
    // for its slot, as geth lists it (2,400 gas for an address already
    // warm), and the slot and the other account each save 100 gas net.
    let listed = call.clone().with_access_list(result.access_list.clone());
    let with_list = l2.estimate_gas(listed).await.unwrap();
    assert_eq!(U256::from(with_list), result.gas_used);
    let without = l2.estimate_gas(call).await.unwrap();
    assert_eq!(with_list, without + 2_400 - 100 - 100);
    net.stop().await;
}
