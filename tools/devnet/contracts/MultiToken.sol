// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Minimal ERC-1155 for the local devnet: the owner mints (one id or a batch), holders
/// transfer one id or a batch. It answers ERC-165 `supportsInterface` for ERC-165 and ERC-1155.
/// Transfers to a contract call its receiver hook like the standard says; the devnet sends to
/// accounts.
contract MultiToken {
    address public immutable minter;

    mapping(uint256 => mapping(address => uint256)) private _balances;
    mapping(address => mapping(address => bool)) public isApprovedForAll;

    event TransferSingle(
        address indexed operator, address indexed from, address indexed to, uint256 id, uint256 value
    );
    event TransferBatch(
        address indexed operator,
        address indexed from,
        address indexed to,
        uint256[] ids,
        uint256[] values
    );
    event ApprovalForAll(address indexed account, address indexed operator, bool approved);
    event URI(string value, uint256 indexed id);

    error NotMinter(address caller);
    error NotAuthorized(address caller, address from);
    error InsufficientBalance(address from, uint256 id, uint256 balance, uint256 needed);
    error LengthMismatch(uint256 ids, uint256 values);
    error UnsafeRecipient(address to);

    constructor() {
        minter = msg.sender;
    }

    function supportsInterface(bytes4 id) external pure returns (bool) {
        return id == 0x01ffc9a7 || id == 0xd9b67a26 || id == 0x0e89341c;
    }

    function uri(uint256) external pure returns (string memory) {
        return "https://multi.devnet.local/{id}.json";
    }

    function balanceOf(address account, uint256 id) public view returns (uint256) {
        return _balances[id][account];
    }

    function balanceOfBatch(address[] calldata accounts, uint256[] calldata ids)
        external
        view
        returns (uint256[] memory out)
    {
        if (accounts.length != ids.length) revert LengthMismatch(accounts.length, ids.length);
        out = new uint256[](ids.length);
        for (uint256 i = 0; i < ids.length; i++) {
            out[i] = _balances[ids[i]][accounts[i]];
        }
    }

    function setApprovalForAll(address operator, bool approved) external {
        isApprovedForAll[msg.sender][operator] = approved;
        emit ApprovalForAll(msg.sender, operator, approved);
    }

    function mint(address to, uint256 id, uint256 value) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        _balances[id][to] += value;
        emit TransferSingle(msg.sender, address(0), to, id, value);
        _checkSingle(address(0), to, id, value);
    }

    function mintBatch(address to, uint256[] calldata ids, uint256[] calldata values) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        if (ids.length != values.length) revert LengthMismatch(ids.length, values.length);
        for (uint256 i = 0; i < ids.length; i++) {
            _balances[ids[i]][to] += values[i];
        }
        emit TransferBatch(msg.sender, address(0), to, ids, values);
        _checkBatch(address(0), to, ids, values);
    }

    function safeTransferFrom(address from, address to, uint256 id, uint256 value, bytes calldata)
        external
    {
        _authorize(from);
        _move(from, to, id, value);
        emit TransferSingle(msg.sender, from, to, id, value);
        _checkSingle(from, to, id, value);
    }

    function safeBatchTransferFrom(
        address from,
        address to,
        uint256[] calldata ids,
        uint256[] calldata values,
        bytes calldata
    ) external {
        _authorize(from);
        if (ids.length != values.length) revert LengthMismatch(ids.length, values.length);
        for (uint256 i = 0; i < ids.length; i++) {
            _move(from, to, ids[i], values[i]);
        }
        emit TransferBatch(msg.sender, from, to, ids, values);
        _checkBatch(from, to, ids, values);
    }

    function _authorize(address from) private view {
        if (msg.sender != from && !isApprovedForAll[from][msg.sender]) {
            revert NotAuthorized(msg.sender, from);
        }
    }

    function _move(address from, address to, uint256 id, uint256 value) private {
        uint256 balance = _balances[id][from];
        if (balance < value) revert InsufficientBalance(from, id, balance, value);
        unchecked {
            _balances[id][from] = balance - value;
        }
        _balances[id][to] += value;
    }

    function _checkSingle(address from, address to, uint256 id, uint256 value) private {
        if (to.code.length == 0) return;
        bytes4 answer = IERC1155Receiver(to).onERC1155Received(msg.sender, from, id, value, "");
        if (answer != IERC1155Receiver.onERC1155Received.selector) revert UnsafeRecipient(to);
    }

    function _checkBatch(address from, address to, uint256[] calldata ids, uint256[] calldata values)
        private
    {
        if (to.code.length == 0) return;
        bytes4 answer =
            IERC1155Receiver(to).onERC1155BatchReceived(msg.sender, from, ids, values, "");
        if (answer != IERC1155Receiver.onERC1155BatchReceived.selector) revert UnsafeRecipient(to);
    }
}

interface IERC1155Receiver {
    function onERC1155Received(
        address operator,
        address from,
        uint256 id,
        uint256 value,
        bytes calldata data
    ) external returns (bytes4);

    function onERC1155BatchReceived(
        address operator,
        address from,
        uint256[] calldata ids,
        uint256[] calldata values,
        bytes calldata data
    ) external returns (bytes4);
}
