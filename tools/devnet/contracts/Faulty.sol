// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Produces failed transactions on purpose: a string revert, a custom-error revert and
/// an assertion failure (panic). Successful pokes leave a log so a mix of both shows in a block.
contract Faulty {
    uint256 public pokes;

    event Poked(address indexed caller, uint256 value);

    error Refused(address caller, uint256 value);

    function poke(uint256 value) external {
        if (value % 2 == 1) revert Refused(msg.sender, value);
        pokes += 1;
        emit Poked(msg.sender, value);
    }

    function fail() external pure {
        revert("devnet: deliberate failure");
    }

    function panic() external view {
        assert(pokes == type(uint256).max);
    }
}
