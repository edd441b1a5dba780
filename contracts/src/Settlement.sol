// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Settlement contract v0
/// @notice L1 anchor of the rollup. The batcher posts ordered batches of L2 blocks (the batch
///         bytes stay in the transaction's calldata, only their hash is stored) and the proposer
///         posts the block hash and state root of L2 blocks whose batch is already on L1.
///         v0 has no fault proofs: proposals are trusted claims that a verifier can recompute
///         from genesis plus the batch data.
/// @dev Block 0 is the L2 genesis block, so the first batch must start at block 1.
contract Settlement {
    /// @notice A batch of consecutive L2 blocks posted by the batcher.
    /// @param dataHash keccak256 of the batch bytes passed to `appendBatch`.
    /// @param firstBlock First L2 block number in the batch.
    /// @param lastBlock Last L2 block number in the batch (inclusive).
    /// @param l1Block L1 block number in which the batch was appended.
    struct Batch {
        bytes32 dataHash;
        uint64 firstBlock;
        uint64 lastBlock;
        uint64 l1Block;
    }

    /// @notice A proposed L2 output.
    /// @param blockHash Hash of the L2 block.
    /// @param stateRoot State root after the L2 block.
    /// @param l1Timestamp L1 timestamp at which the proposal was made.
    struct Proposal {
        bytes32 blockHash;
        bytes32 stateRoot;
        uint64 l1Timestamp;
    }

    /// @notice Hash of the L2 genesis block (block 0).
    bytes32 public immutable genesisHash;

    /// @notice Chain id of the L2.
    uint64 public immutable l2ChainId;

    /// @notice Account allowed to append batches.
    address public batcher;

    /// @notice Next L2 block number a batch must start at (1 before the first batch).
    uint64 public nextBlock;

    /// @notice Account allowed to propose state roots.
    address public proposer;

    /// @notice Highest L2 block number with a proposal (0 = none yet).
    uint64 public latestProposedBlock;

    /// @notice Account allowed to change the roles and to transfer ownership.
    address public owner;

    /// @dev Batches in append order; the array index is the batch index.
    Batch[] private _batches;

    /// @dev Proposals by L2 block number.
    mapping(uint64 l2Block => Proposal) private _proposals;

    /// @notice Emitted once, on deployment.
    /// @param genesisHash Hash of the L2 genesis block.
    /// @param l2ChainId Chain id of the L2.
    /// @param owner Initial owner (the deployer).
    /// @param batcher Initial batcher.
    /// @param proposer Initial proposer.
    event Initialized(bytes32 genesisHash, uint64 l2ChainId, address owner, address batcher, address proposer);

    /// @notice Emitted when a batch is appended.
    /// @param index Index of the batch.
    /// @param firstBlock First L2 block number in the batch.
    /// @param lastBlock Last L2 block number in the batch (inclusive).
    /// @param dataHash keccak256 of the batch bytes.
    event BatchAppended(uint256 indexed index, uint64 firstBlock, uint64 lastBlock, bytes32 dataHash);

    /// @notice Emitted when a state root is proposed.
    /// @param l2Block L2 block number of the proposal.
    /// @param blockHash Hash of the L2 block.
    /// @param stateRoot State root after the L2 block.
    /// @param l1Timestamp L1 timestamp of the proposal.
    event StateRootProposed(uint64 indexed l2Block, bytes32 blockHash, bytes32 stateRoot, uint64 l1Timestamp);

    /// @notice Emitted when the batcher changes.
    /// @param previous Old batcher.
    /// @param current New batcher.
    event BatcherChanged(address previous, address current);

    /// @notice Emitted when the proposer changes.
    /// @param previous Old proposer.
    /// @param current New proposer.
    event ProposerChanged(address previous, address current);

    /// @notice Emitted when ownership is transferred.
    /// @param previous Old owner.
    /// @param current New owner.
    event OwnershipTransferred(address previous, address current);

    /// @notice The caller does not hold the role the function requires.
    /// @param caller The rejected caller.
    error Unauthorized(address caller);

    /// @notice A role cannot be given to the zero address.
    error ZeroAddress();

    /// @notice The batch index is not the next one.
    /// @param expected The next batch index (`batchCount()`).
    /// @param got The index passed in.
    error UnexpectedBatchIndex(uint256 expected, uint256 got);

    /// @notice The batch does not start right after the previous one.
    /// @param expected The block the batch must start at (`nextBlock()`).
    /// @param got The first block passed in.
    error UnexpectedFirstBlock(uint64 expected, uint64 got);

    /// @notice The batch's last block is before its first block.
    error EmptyBlockRange();

    /// @notice The batch data is empty.
    error EmptyBatch();

    /// @notice The proposed block is not above the latest proposed block.
    /// @param latest The latest proposed block.
    /// @param got The block passed in.
    error ProposalNotNewer(uint64 latest, uint64 got);

    /// @notice The proposed block is not covered by an appended batch yet.
    /// @param l2Block The block passed in.
    /// @param nextBlock The first block not yet batched.
    error BlockNotBatched(uint64 l2Block, uint64 nextBlock);

    /// @notice A proposed block hash or state root is zero.
    error ZeroRoot();

    /// @dev Reverts with `Unauthorized` unless the caller is `account`.
    modifier onlyRole(address account) {
        if (msg.sender != account) revert Unauthorized(msg.sender);
        _;
    }

    /// @notice Deploys the contract; the deployer becomes the owner.
    /// @param genesisHash_ Hash of the L2 genesis block.
    /// @param l2ChainId_ Chain id of the L2.
    /// @param batcher_ Initial batcher (nonzero).
    /// @param proposer_ Initial proposer (nonzero).
    constructor(bytes32 genesisHash_, uint64 l2ChainId_, address batcher_, address proposer_) {
        if (batcher_ == address(0) || proposer_ == address(0)) revert ZeroAddress();
        genesisHash = genesisHash_;
        l2ChainId = l2ChainId_;
        owner = msg.sender;
        batcher = batcher_;
        proposer = proposer_;
        nextBlock = 1;
        emit Initialized(genesisHash_, l2ChainId_, msg.sender, batcher_, proposer_);
    }

    /// @notice Number of batches appended so far; also the index the next batch must use.
    /// @return The batch count.
    function batchCount() external view returns (uint256) {
        return _batches.length;
    }

    /// @notice Returns an appended batch. Reverts (array out-of-bounds panic) if there is none.
    /// @param index Index of the batch.
    /// @return dataHash keccak256 of the batch bytes.
    /// @return firstBlock First L2 block number in the batch.
    /// @return lastBlock Last L2 block number in the batch (inclusive).
    /// @return l1Block L1 block number in which the batch was appended.
    function getBatch(uint256 index)
        external
        view
        returns (bytes32 dataHash, uint64 firstBlock, uint64 lastBlock, uint64 l1Block)
    {
        Batch storage b = _batches[index];
        return (b.dataHash, b.firstBlock, b.lastBlock, b.l1Block);
    }

    /// @notice Returns the proposal for an L2 block; all zero if there is none.
    /// @param l2Block L2 block number.
    /// @return blockHash Hash of the L2 block.
    /// @return stateRoot State root after the L2 block.
    /// @return l1Timestamp L1 timestamp of the proposal.
    function getProposal(uint64 l2Block)
        external
        view
        returns (bytes32 blockHash, bytes32 stateRoot, uint64 l1Timestamp)
    {
        Proposal storage p = _proposals[l2Block];
        return (p.blockHash, p.stateRoot, p.l1Timestamp);
    }

    /// @notice Appends the batch of L2 blocks `firstBlock..=lastBlock`. Only the batcher.
    /// @dev Only keccak256(data) is stored; the bytes remain available in this transaction's input.
    ///      `index` makes a replayed or reordered submission fail instead of appending twice.
    /// @param index Must equal `batchCount()`.
    /// @param firstBlock Must equal `nextBlock()`.
    /// @param lastBlock Last L2 block in the batch; at least `firstBlock`.
    /// @param data The encoded batch; not empty.
    function appendBatch(uint256 index, uint64 firstBlock, uint64 lastBlock, bytes calldata data)
        external
        onlyRole(batcher)
    {
        if (index != _batches.length) revert UnexpectedBatchIndex(_batches.length, index);
        if (firstBlock != nextBlock) revert UnexpectedFirstBlock(nextBlock, firstBlock);
        if (lastBlock < firstBlock) revert EmptyBlockRange();
        if (data.length == 0) revert EmptyBatch();

        bytes32 dataHash = keccak256(data);
        _batches.push(Batch(dataHash, firstBlock, lastBlock, uint64(block.number)));
        nextBlock = lastBlock + 1;
        emit BatchAppended(index, firstBlock, lastBlock, dataHash);
    }

    /// @notice Proposes the block hash and state root of an already batched L2 block. Only the proposer.
    /// @param l2Block Must be above `latestProposedBlock()` and below `nextBlock()`.
    /// @param blockHash Hash of the L2 block; nonzero.
    /// @param stateRoot State root after the L2 block; nonzero.
    function proposeStateRoot(uint64 l2Block, bytes32 blockHash, bytes32 stateRoot)
        external
        onlyRole(proposer)
    {
        if (l2Block <= latestProposedBlock) revert ProposalNotNewer(latestProposedBlock, l2Block);
        if (l2Block >= nextBlock) revert BlockNotBatched(l2Block, nextBlock);
        if (blockHash == bytes32(0) || stateRoot == bytes32(0)) revert ZeroRoot();

        uint64 l1Timestamp = uint64(block.timestamp);
        _proposals[l2Block] = Proposal(blockHash, stateRoot, l1Timestamp);
        latestProposedBlock = l2Block;
        emit StateRootProposed(l2Block, blockHash, stateRoot, l1Timestamp);
    }

    /// @notice Replaces the batcher. Only the owner.
    /// @param newBatcher The new batcher; nonzero.
    function setBatcher(address newBatcher) external onlyRole(owner) {
        if (newBatcher == address(0)) revert ZeroAddress();
        emit BatcherChanged(batcher, newBatcher);
        batcher = newBatcher;
    }

    /// @notice Replaces the proposer. Only the owner.
    /// @param newProposer The new proposer; nonzero.
    function setProposer(address newProposer) external onlyRole(owner) {
        if (newProposer == address(0)) revert ZeroAddress();
        emit ProposerChanged(proposer, newProposer);
        proposer = newProposer;
    }

    /// @notice Transfers ownership. Only the owner.
    /// @param newOwner The new owner; nonzero.
    function transferOwnership(address newOwner) external onlyRole(owner) {
        if (newOwner == address(0)) revert ZeroAddress();
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }
}
