// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice ERC-8004 identity registry, reduced to what the devnet needs: an agent id per
/// registration, its URI (the agent's registration file or domain) and its owner address,
/// plus key/value metadata. Agent ids start at 1.
contract IdentityRegistry {
    uint256 public agentCount;
    mapping(uint256 => address) public ownerOf;
    mapping(uint256 => string) public tokenURI;
    mapping(uint256 => mapping(string => bytes)) private _metadata;

    event Registered(uint256 indexed agentId, string tokenURI, address indexed owner);
    event MetadataSet(uint256 indexed agentId, string indexed indexedKey, string key, bytes value);

    error UnknownAgent(uint256 agentId);
    error NotAgentOwner(uint256 agentId, address caller);

    function register(string calldata agentURI) external returns (uint256 agentId) {
        agentId = ++agentCount;
        ownerOf[agentId] = msg.sender;
        tokenURI[agentId] = agentURI;
        emit Registered(agentId, agentURI, msg.sender);
    }

    function setMetadata(uint256 agentId, string calldata key, bytes calldata value) external {
        if (ownerOf[agentId] != msg.sender) revert NotAgentOwner(agentId, msg.sender);
        _metadata[agentId][key] = value;
        emit MetadataSet(agentId, key, key, value);
    }

    function getMetadata(uint256 agentId, string calldata key) external view returns (bytes memory) {
        return _metadata[agentId][key];
    }

    function agentExists(uint256 agentId) external view returns (bool) {
        return ownerOf[agentId] != address(0);
    }
}
