// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice ERC-20s that break the ABI the way real old tokens do, so the token-metadata reader
/// is tested against them on the devnet:
/// - `Bytes32Token` returns `name()` and `symbol()` as `bytes32` (as MKR and SAI do), not
///   `string`;
/// - `NamelessToken` has no `name()` at all (a call falls through and reverts) and a `symbol()`
///   that reverts.
/// Both keep the ERC-20 transfer rules and events of `Token`.
abstract contract PlainBalances {
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    error InsufficientAllowance(address spender, uint256 allowance, uint256 needed);

    function _mint(address to, uint256 supply) internal {
        totalSupply = supply;
        balanceOf[to] = supply;
        emit Transfer(address(0), to, supply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed < value) revert InsufficientAllowance(msg.sender, allowed, value);
        allowance[from][msg.sender] = allowed - value;
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        uint256 balance = balanceOf[from];
        if (balance < value) revert InsufficientBalance(from, balance, value);
        unchecked {
            balanceOf[from] = balance - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}

contract Bytes32Token is PlainBalances {
    bytes32 public immutable name;
    bytes32 public immutable symbol;
    uint256 public constant decimals = 18; // uint256, not uint8: MKR's declaration

    constructor(bytes32 name_, bytes32 symbol_, uint256 supply) {
        name = name_;
        symbol = symbol_;
        _mint(msg.sender, supply);
    }
}

contract NamelessToken is PlainBalances {
    uint8 public immutable decimals;

    error NoSymbol();

    constructor(uint8 decimals_, uint256 supply) {
        decimals = decimals_;
        _mint(msg.sender, supply);
    }

    function symbol() external pure returns (string memory) {
        revert NoSymbol();
    }
}
