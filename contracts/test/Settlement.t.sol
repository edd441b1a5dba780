// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Settlement} from "../src/Settlement.sol";
import {Test} from "./Vm.sol";

/// @title SettlementTest
/// @notice Forge tests for the settlement contract v0.
contract SettlementTest is Test {
    bytes32 internal constant GENESIS = keccak256("genesis");
    uint64 internal constant CHAIN_ID = 42069;
    address internal constant OWNER = address(0x0A11CE);
    address internal constant BATCHER = address(0xBA7C4E5);
    address internal constant PROPOSER = address(0x9209053);
    address internal constant STRANGER = address(0xBAD);

    bytes32 internal constant BLOCK_HASH = keccak256("block hash");
    bytes32 internal constant STATE_ROOT = keccak256("state root");

    Settlement internal s;

    /// @notice Deploys a fresh contract with OWNER as deployer.
    function setUp() public {
        vm.prank(OWNER);
        s = new Settlement(GENESIS, CHAIN_ID, BATCHER, PROPOSER);
    }

    // ------------------------------------------------------------------ helpers

    /// @dev Appends batch `index` covering `first..=last` as the batcher.
    function _append(uint256 index, uint64 first, uint64 last) internal returns (bytes memory data) {
        data = abi.encodePacked("batch", index, first, last);
        vm.prank(BATCHER);
        s.appendBatch(index, first, last, data);
    }

    /// @dev Proposes `l2Block` with the default roots as the proposer.
    function _propose(uint64 l2Block) internal {
        vm.prank(PROPOSER);
        s.proposeStateRoot(l2Block, BLOCK_HASH, STATE_ROOT);
    }

    function _unauthorized(address caller) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Settlement.Unauthorized.selector, caller);
    }

    function _zeroAddress() internal pure returns (bytes memory) {
        return abi.encodeWithSelector(Settlement.ZeroAddress.selector);
    }

    // -------------------------------------------------------------- constructor

    function test_Constructor_SetsState() public view {
        assertEq(s.owner(), OWNER, "owner");
        assertEq(s.batcher(), BATCHER, "batcher");
        assertEq(s.proposer(), PROPOSER, "proposer");
        assertEq(s.genesisHash(), GENESIS, "genesisHash");
        assertEq(s.l2ChainId(), CHAIN_ID, "l2ChainId");
        assertEq(s.batchCount(), 0, "batchCount");
        assertEq(s.nextBlock(), 1, "nextBlock");
        assertEq(s.latestProposedBlock(), 0, "latestProposedBlock");
        (bytes32 blockHash, bytes32 stateRoot, uint64 ts) = s.getProposal(0);
        assertEq(blockHash, bytes32(0), "no proposal: blockHash");
        assertEq(stateRoot, bytes32(0), "no proposal: stateRoot");
        assertEq(ts, 0, "no proposal: l1Timestamp");
    }

    function test_Constructor_EmitsInitialized() public {
        vm.expectEmit(true, true, true, true);
        emit Settlement.Initialized(GENESIS, CHAIN_ID, OWNER, BATCHER, PROPOSER);
        vm.prank(OWNER);
        new Settlement(GENESIS, CHAIN_ID, BATCHER, PROPOSER);
    }

    function test_Constructor_RevertsOnZeroBatcher() public {
        vm.expectRevert(_zeroAddress());
        new Settlement(GENESIS, CHAIN_ID, address(0), PROPOSER);
    }

    function test_Constructor_RevertsOnZeroProposer() public {
        vm.expectRevert(_zeroAddress());
        new Settlement(GENESIS, CHAIN_ID, BATCHER, address(0));
    }

    // -------------------------------------------------------------- appendBatch

    function test_AppendBatch_StoresBatch() public {
        vm.roll(1234);
        bytes memory data = _append(0, 1, 5);

        assertEq(s.batchCount(), 1, "batchCount");
        assertEq(s.nextBlock(), 6, "nextBlock");
        (bytes32 dataHash, uint64 first, uint64 last, uint64 l1Block) = s.getBatch(0);
        assertEq(dataHash, keccak256(data), "dataHash");
        assertEq(first, 1, "firstBlock");
        assertEq(last, 5, "lastBlock");
        assertEq(l1Block, 1234, "l1Block");
    }

    function test_AppendBatch_EmitsBatchAppended() public {
        bytes memory data = hex"c0ffee";
        vm.expectEmit(true, true, true, true, address(s));
        emit Settlement.BatchAppended(0, 1, 3, keccak256(data));
        vm.prank(BATCHER);
        s.appendBatch(0, 1, 3, data);
    }

    function test_AppendBatch_ChainsBatches() public {
        _append(0, 1, 5);
        vm.roll(77);
        _append(1, 6, 6); // a single-block batch
        bytes memory data = _append(2, 7, 100);

        assertEq(s.batchCount(), 3, "batchCount");
        assertEq(s.nextBlock(), 101, "nextBlock");
        (, uint64 first, uint64 last, uint64 l1Block) = s.getBatch(1);
        assertEq(first, 6, "batch 1 firstBlock");
        assertEq(last, 6, "batch 1 lastBlock");
        assertEq(l1Block, 77, "batch 1 l1Block");
        (bytes32 dataHash,,,) = s.getBatch(2);
        assertEq(dataHash, keccak256(data), "batch 2 dataHash");
    }

    function test_AppendBatch_RevertsForNonBatcher() public {
        address[3] memory callers = [STRANGER, OWNER, PROPOSER];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.expectRevert(_unauthorized(callers[i]));
            vm.prank(callers[i]);
            s.appendBatch(0, 1, 1, hex"01");
        }
    }

    function test_AppendBatch_RevertsOnWrongIndex() public {
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnexpectedBatchIndex.selector, 0, 1));
        vm.prank(BATCHER);
        s.appendBatch(1, 1, 1, hex"01");

        _append(0, 1, 1);
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnexpectedBatchIndex.selector, 1, 2));
        vm.prank(BATCHER);
        s.appendBatch(2, 2, 2, hex"01");
    }

    function test_AppendBatch_RevertsOnWrongFirstBlock() public {
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnexpectedFirstBlock.selector, 1, 0));
        vm.prank(BATCHER);
        s.appendBatch(0, 0, 1, hex"01"); // block 0 is genesis

        _append(0, 1, 5);
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnexpectedFirstBlock.selector, 6, 7));
        vm.prank(BATCHER);
        s.appendBatch(1, 7, 8, hex"01"); // gap
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnexpectedFirstBlock.selector, 6, 5));
        vm.prank(BATCHER);
        s.appendBatch(1, 5, 8, hex"01"); // overlap
    }

    function test_AppendBatch_RevertsOnEmptyRange() public {
        _append(0, 1, 5);
        vm.expectRevert(abi.encodeWithSelector(Settlement.EmptyBlockRange.selector));
        vm.prank(BATCHER);
        s.appendBatch(1, 6, 5, hex"01");
    }

    function test_AppendBatch_RevertsOnEmptyData() public {
        vm.expectRevert(abi.encodeWithSelector(Settlement.EmptyBatch.selector));
        vm.prank(BATCHER);
        s.appendBatch(0, 1, 1, "");
    }

    function test_AppendBatch_RevertsOnReplay() public {
        bytes memory data = _append(0, 1, 5);
        vm.expectRevert(abi.encodeWithSelector(Settlement.UnexpectedBatchIndex.selector, 1, 0));
        vm.prank(BATCHER);
        s.appendBatch(0, 1, 5, data);
        assertEq(s.batchCount(), 1, "batchCount unchanged");
        assertEq(s.nextBlock(), 6, "nextBlock unchanged");
    }

    function test_GetBatch_RevertsOutOfRange() public {
        vm.expectRevert(abi.encodeWithSignature("Panic(uint256)", 0x32));
        s.getBatch(0);
    }

    function testFuzz_AppendBatch(uint256 span, bytes calldata data) public {
        span = bound(span, 0, 1_000_000);
        if (data.length == 0) return;
        uint64 last = uint64(1 + span);
        vm.expectEmit(true, true, true, true, address(s));
        emit Settlement.BatchAppended(0, 1, last, keccak256(data));
        vm.prank(BATCHER);
        s.appendBatch(0, 1, last, data);
        assertEq(s.nextBlock(), last + 1, "nextBlock");
        (bytes32 dataHash,,,) = s.getBatch(0);
        assertEq(dataHash, keccak256(data), "dataHash");
    }

    // --------------------------------------------------------- proposeStateRoot

    function test_ProposeStateRoot_StoresProposal() public {
        _append(0, 1, 5);
        vm.warp(1_700_000_000);
        _propose(3);

        assertEq(s.latestProposedBlock(), 3, "latestProposedBlock");
        (bytes32 blockHash, bytes32 stateRoot, uint64 ts) = s.getProposal(3);
        assertEq(blockHash, BLOCK_HASH, "blockHash");
        assertEq(stateRoot, STATE_ROOT, "stateRoot");
        assertEq(ts, 1_700_000_000, "l1Timestamp");

        // The last block of the batch is batched too; blocks may be skipped.
        _propose(5);
        assertEq(s.latestProposedBlock(), 5, "latestProposedBlock after second");
        (blockHash,,) = s.getProposal(4);
        assertEq(blockHash, bytes32(0), "skipped block has no proposal");
    }

    function test_ProposeStateRoot_EmitsStateRootProposed() public {
        _append(0, 1, 5);
        vm.warp(1_700_000_123);
        vm.expectEmit(true, true, true, true, address(s));
        emit Settlement.StateRootProposed(2, BLOCK_HASH, STATE_ROOT, 1_700_000_123);
        _propose(2);
    }

    function test_ProposeStateRoot_RevertsForNonProposer() public {
        _append(0, 1, 5);
        address[3] memory callers = [STRANGER, OWNER, BATCHER];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.expectRevert(_unauthorized(callers[i]));
            vm.prank(callers[i]);
            s.proposeStateRoot(1, BLOCK_HASH, STATE_ROOT);
        }
    }

    function test_ProposeStateRoot_RevertsWhenNotNewer() public {
        _append(0, 1, 5);
        vm.expectRevert(abi.encodeWithSelector(Settlement.ProposalNotNewer.selector, 0, 0));
        _propose(0); // genesis is never proposed

        _propose(3);
        vm.expectRevert(abi.encodeWithSelector(Settlement.ProposalNotNewer.selector, 3, 3));
        _propose(3);
        vm.expectRevert(abi.encodeWithSelector(Settlement.ProposalNotNewer.selector, 3, 2));
        _propose(2);
    }

    function test_ProposeStateRoot_RevertsWhenNotBatched() public {
        vm.expectRevert(abi.encodeWithSelector(Settlement.BlockNotBatched.selector, 1, 1));
        _propose(1); // no batch yet

        _append(0, 1, 5);
        vm.expectRevert(abi.encodeWithSelector(Settlement.BlockNotBatched.selector, 6, 6));
        _propose(6);
        vm.expectRevert(abi.encodeWithSelector(Settlement.BlockNotBatched.selector, 100, 6));
        _propose(100);
    }

    function test_ProposeStateRoot_RevertsOnZeroRoot() public {
        _append(0, 1, 5);
        vm.expectRevert(abi.encodeWithSelector(Settlement.ZeroRoot.selector));
        vm.prank(PROPOSER);
        s.proposeStateRoot(1, bytes32(0), STATE_ROOT);
        vm.expectRevert(abi.encodeWithSelector(Settlement.ZeroRoot.selector));
        vm.prank(PROPOSER);
        s.proposeStateRoot(1, BLOCK_HASH, bytes32(0));
        assertEq(s.latestProposedBlock(), 0, "latestProposedBlock unchanged");
    }

    // ------------------------------------------------------------------- roles

    function test_SetBatcher() public {
        address next = address(0xB2);
        vm.expectEmit(true, true, true, true, address(s));
        emit Settlement.BatcherChanged(BATCHER, next);
        vm.prank(OWNER);
        s.setBatcher(next);
        assertEq(s.batcher(), next, "batcher");

        vm.expectRevert(_unauthorized(BATCHER));
        vm.prank(BATCHER);
        s.appendBatch(0, 1, 1, hex"01");
        vm.prank(next);
        s.appendBatch(0, 1, 1, hex"01");
        assertEq(s.batchCount(), 1, "new batcher appended");
    }

    function test_SetBatcher_RevertsForNonOwner() public {
        address[3] memory callers = [STRANGER, BATCHER, PROPOSER];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.expectRevert(_unauthorized(callers[i]));
            vm.prank(callers[i]);
            s.setBatcher(callers[i]);
        }
    }

    function test_SetBatcher_RevertsOnZeroAddress() public {
        vm.expectRevert(_zeroAddress());
        vm.prank(OWNER);
        s.setBatcher(address(0));
    }

    function test_SetProposer() public {
        address next = address(0x92);
        _append(0, 1, 5);
        vm.expectEmit(true, true, true, true, address(s));
        emit Settlement.ProposerChanged(PROPOSER, next);
        vm.prank(OWNER);
        s.setProposer(next);
        assertEq(s.proposer(), next, "proposer");

        vm.expectRevert(_unauthorized(PROPOSER));
        _propose(1);
        vm.prank(next);
        s.proposeStateRoot(1, BLOCK_HASH, STATE_ROOT);
        assertEq(s.latestProposedBlock(), 1, "new proposer proposed");
    }

    function test_SetProposer_RevertsForNonOwner() public {
        address[3] memory callers = [STRANGER, BATCHER, PROPOSER];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.expectRevert(_unauthorized(callers[i]));
            vm.prank(callers[i]);
            s.setProposer(callers[i]);
        }
    }

    function test_SetProposer_RevertsOnZeroAddress() public {
        vm.expectRevert(_zeroAddress());
        vm.prank(OWNER);
        s.setProposer(address(0));
    }

    function test_TransferOwnership() public {
        address next = address(0x0B0B);
        vm.expectEmit(true, true, true, true, address(s));
        emit Settlement.OwnershipTransferred(OWNER, next);
        vm.prank(OWNER);
        s.transferOwnership(next);
        assertEq(s.owner(), next, "owner");

        // The old owner lost every owner-only function; the new one has them.
        vm.expectRevert(_unauthorized(OWNER));
        vm.prank(OWNER);
        s.setBatcher(STRANGER);
        vm.expectRevert(_unauthorized(OWNER));
        vm.prank(OWNER);
        s.transferOwnership(OWNER);
        vm.prank(next);
        s.setBatcher(STRANGER);
        assertEq(s.batcher(), STRANGER, "new owner changed batcher");
    }

    function test_TransferOwnership_RevertsForNonOwner() public {
        address[3] memory callers = [STRANGER, BATCHER, PROPOSER];
        for (uint256 i = 0; i < callers.length; i++) {
            vm.expectRevert(_unauthorized(callers[i]));
            vm.prank(callers[i]);
            s.transferOwnership(callers[i]);
        }
    }

    function test_TransferOwnership_RevertsOnZeroAddress() public {
        vm.expectRevert(_zeroAddress());
        vm.prank(OWNER);
        s.transferOwnership(address(0));
        assertEq(s.owner(), OWNER, "owner unchanged");
    }
}
