// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Child
/// @notice Deployed by `Probe`; can self-destruct (EIP-6780 semantics).
contract Child {
    uint256 public value;

    constructor(uint256 value_) payable {
        value = value_;
    }

    function destroy(address payable to) external {
        selfdestruct(to);
    }
}

/// @title Probe
/// @notice Exercises the behaviours the parallel executor must reproduce:
/// hot storage slots, read-after-write chains, reverts, gas burning,
/// CREATE/CREATE2, self-destruct, the beneficiary's balance, value
/// forwarding, transient storage and BLOCKHASH. Storage: slot i of `slots`
/// is storage slot i.
contract Probe {
    uint256[16] public slots;

    event Bumped(uint256 indexed slot, uint256 value);
    event Created(address child);

    /// Increments one slot (a hot spot when many transactions use the same one).
    function bump(uint256 slot) external {
        uint256 v = slots[slot % 16] + 1;
        slots[slot % 16] = v;
        emit Bumped(slot % 16, v);
    }

    /// Writes `slots[to] = slots[from] + 1`: chains of reads after writes.
    function chain(uint256 from, uint256 to) external {
        slots[to % 16] = slots[from % 16] + 1;
    }

    /// Writes a slot and then reverts.
    function fail(uint256 slot) external {
        slots[slot % 16] = 12345;
        revert("probe: fail");
    }

    /// Burns gas in a loop (runs out of gas with a low limit).
    function burn(uint256 rounds) external {
        uint256 acc;
        for (uint256 i = 0; i < rounds; i++) {
            acc = uint256(keccak256(abi.encode(acc, i)));
        }
        slots[15] = acc;
    }

    /// Deploys a child with CREATE (salt 0) or CREATE2.
    function create(bytes32 salt, uint256 value) external payable returns (address child) {
        if (salt == bytes32(0)) {
            child = address(new Child{value: msg.value}(value));
        } else {
            child = address(new Child{value: msg.value, salt: salt}(value));
        }
        emit Created(child);
    }

    /// Deploys a child and destroys it in the same transaction (EIP-6780:
    /// the account is removed), sending its balance to `to`.
    function createAndDestroy(bytes32 salt, address payable to) external payable {
        Child child = new Child{value: msg.value, salt: salt}(1);
        child.destroy(to);
    }

    /// Destroys an existing child (EIP-6780: only its balance moves).
    function destroy(Child child, address payable to) external {
        child.destroy(to);
    }

    /// Records the beneficiary's balance (a real read of it).
    function coinbaseBalance() external {
        slots[14] = block.coinbase.balance;
    }

    /// Forwards the value sent to `to` (e.g. the beneficiary).
    function pay(address payable to) external payable {
        (bool ok,) = to.call{value: msg.value}("");
        require(ok, "probe: pay");
    }

    /// Uses transient storage, then stores the result.
    function useTransient(uint256 v) external {
        assembly {
            tstore(0, v)
        }
        uint256 r;
        assembly {
            r := tload(0)
        }
        slots[13] = r + 1;
    }

    /// Stores the previous block's hash.
    function previousHash() external {
        slots[12] = uint256(blockhash(block.number - 1));
    }

    /// Calls the SHA-256 and identity precompiles.
    function precompiles(bytes calldata data) external {
        slots[11] = uint256(sha256(data));
        (bool ok, bytes memory out) = address(4).staticcall(data);
        require(ok && out.length == data.length, "probe: identity");
    }
}
