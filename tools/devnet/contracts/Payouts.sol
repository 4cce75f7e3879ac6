// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Moves ether by internal calls, so that a wallet's balance changes without a
/// transaction to or from it: what only traces show (raw/traces, core/native_balance_movements).
contract Forwarder {
    event Forwarded(address indexed to, uint256 value);

    /// Pays `to` the ether sent with the call (a contract forwarding ETH).
    function forward(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "forward failed");
        emit Forwarded(to, msg.value);
    }

    /// Pays `to`, then reverts: the internal transfer is undone with the transaction.
    function forwardThenRevert(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "forward failed");
        revert("devnet: undone after paying");
    }

    /// Pays `half` of the value to `to` in a sub-call that reverts (caught), and the rest to
    /// `to` for real: the transaction succeeds, one of its internal transfers does not count.
    function forwardHalfReverted(address payable to) external payable {
        try this.payAndRevert{value: msg.value / 2}(to) {} catch {}
        (bool ok, ) = to.call{value: msg.value - msg.value / 2}("");
        require(ok, "forward failed");
    }

    function payAndRevert(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "forward failed");
        revert("devnet: sub-call undone");
    }

    /// Creates a contract holding the ether sent (creation with value by a contract).
    function createDoomed(address payable heir) external payable returns (address) {
        return address(new Doomed{value: msg.value}(heir));
    }

    receive() external payable {}
}

/// @notice WETH-style wrapped ether: `withdraw` pays the caller by an internal call.
contract WrappedEther {
    mapping(address => uint256) public balanceOf;

    event Deposit(address indexed dst, uint256 wad);
    event Withdrawal(address indexed src, uint256 wad);

    function deposit() external payable {
        balanceOf[msg.sender] += msg.value;
        emit Deposit(msg.sender, msg.value);
    }

    function withdraw(uint256 wad) external {
        require(balanceOf[msg.sender] >= wad, "balance");
        balanceOf[msg.sender] -= wad;
        payable(msg.sender).transfer(wad);
        emit Withdrawal(msg.sender, wad);
    }
}

/// @notice Holds ether until it self-destructs to its heir (SELFDESTRUCT moves the balance).
contract Doomed {
    address payable public immutable heir;

    constructor(address payable heir_) payable {
        heir = heir_;
    }

    function destroy() external {
        selfdestruct(heir);
    }

    receive() external payable {}
}
