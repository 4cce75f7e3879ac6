// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice A tiny contract that holds ether for its owner; deployed directly or by the factory.
contract Vault {
    address public immutable owner;
    uint256 public immutable label;

    event Deposited(address indexed from, uint256 value);

    constructor(address owner_, uint256 label_) payable {
        owner = owner_;
        label = label_;
    }

    receive() external payable {
        emit Deposited(msg.sender, msg.value);
    }
}

/// @notice Deploys vaults with CREATE or CREATE2: contract creation by a contract, which shows up
/// in receipts only through the logs and traces, not as `contractAddress`.
contract VaultFactory {
    address[] public vaults;

    event VaultCreated(address indexed vault, address indexed owner, uint256 label, bool deterministic);

    function create(uint256 label) external payable returns (address vault) {
        vault = address(new Vault{value: msg.value}(msg.sender, label));
        vaults.push(vault);
        emit VaultCreated(vault, msg.sender, label, false);
    }

    function create2(uint256 label, bytes32 salt) external payable returns (address vault) {
        vault = address(new Vault{value: msg.value, salt: salt}(msg.sender, label));
        vaults.push(vault);
        emit VaultCreated(vault, msg.sender, label, true);
    }

    function vaultCount() external view returns (uint256) {
        return vaults.length;
    }
}
