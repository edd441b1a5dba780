// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Vm
/// @notice The few forge cheatcodes these tests use (forge-std is not available offline).
/// @dev Signatures match forge's cheatcode precompile at `VM_ADDRESS`.
interface Vm {
    /// @notice Sets msg.sender for the next call (or contract creation) only.
    function prank(address msgSender) external;

    /// @notice Expects the next call to revert with exactly `revertData`.
    function expectRevert(bytes calldata revertData) external;

    /// @notice Expects the next event from `emitter` to match the one emitted right after this call.
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter)
        external;

    /// @notice Like the five-argument form, but any emitter matches (for events from a constructor).
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;

    /// @notice Sets block.timestamp.
    function warp(uint256 newTimestamp) external;

    /// @notice Sets block.number.
    function roll(uint256 newHeight) external;

    /// @notice Fails the test with `message` and both values unless they are equal.
    function assertEq(uint256 left, uint256 right, string calldata message) external pure;

    /// @notice Fails the test with `message` and both values unless they are equal.
    function assertEq(address left, address right, string calldata message) external pure;

    /// @notice Fails the test with `message` and both values unless they are equal.
    function assertEq(bytes32 left, bytes32 right, string calldata message) external pure;
}

/// @dev The cheatcode address: address(uint160(uint256(keccak256("hevm cheat code")))).
address constant VM_ADDRESS = 0x7109709ECfa91a80626fF3989D68f67F5b1DD12D;

/// @title Test
/// @notice Minimal base for forge tests: the `vm` handle and assertion helpers.
abstract contract Test {
    /// @notice Handle to forge's cheatcodes.
    Vm internal constant vm = Vm(VM_ADDRESS);

    /// @notice Fails unless `left == right`.
    function assertEq(uint256 left, uint256 right, string memory what) internal pure {
        vm.assertEq(left, right, what);
    }

    /// @notice Fails unless `left == right`.
    function assertEq(address left, address right, string memory what) internal pure {
        vm.assertEq(left, right, what);
    }

    /// @notice Fails unless `left == right`.
    function assertEq(bytes32 left, bytes32 right, string memory what) internal pure {
        vm.assertEq(left, right, what);
    }

    /// @notice Returns `x` mapped into [lo, hi] (for fuzz inputs); requires lo <= hi.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (lo == 0 && hi == type(uint256).max) return x;
        return lo + x % (hi - lo + 1);
    }
}
