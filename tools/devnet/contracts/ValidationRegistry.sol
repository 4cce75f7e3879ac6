// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IAgentOwnership {
    function ownerOf(uint256 agentId) external view returns (address);
}

/// @notice ERC-8004 validation registry: an agent's owner asks a validator to check some work
/// (identified by a request hash); the validator answers with a score from 0 to 100.
/// A validator may answer the same request more than once (progressive validation).
contract ValidationRegistry {
    struct Request {
        address validatorAddress;
        uint256 agentId;
        uint8 response;
        bool answered;
    }

    IAgentOwnership public immutable identityRegistry;
    mapping(bytes32 => Request) private _requests;

    event ValidationRequest(
        address indexed validatorAddress, uint256 indexed agentId, string requestUri, bytes32 indexed requestHash
    );
    event ValidationResponse(
        address indexed validatorAddress,
        uint256 indexed agentId,
        bytes32 indexed requestHash,
        uint8 response,
        string responseUri,
        bytes32 responseHash,
        bytes32 tag
    );

    error NotAgentOwner(uint256 agentId, address caller);
    error RequestExists(bytes32 requestHash);
    error UnknownRequest(bytes32 requestHash);
    error NotValidator(bytes32 requestHash, address caller);
    error ResponseOutOfRange(uint8 response);

    constructor(address identityRegistry_) {
        identityRegistry = IAgentOwnership(identityRegistry_);
    }

    function validationRequest(
        address validatorAddress,
        uint256 agentId,
        string calldata requestUri,
        bytes32 requestHash
    ) external {
        if (identityRegistry.ownerOf(agentId) != msg.sender) revert NotAgentOwner(agentId, msg.sender);
        if (_requests[requestHash].validatorAddress != address(0)) revert RequestExists(requestHash);
        _requests[requestHash] = Request(validatorAddress, agentId, 0, false);
        emit ValidationRequest(validatorAddress, agentId, requestUri, requestHash);
    }

    function validationResponse(
        bytes32 requestHash,
        uint8 response,
        string calldata responseUri,
        bytes32 responseHash,
        bytes32 tag
    ) external {
        Request storage r = _requests[requestHash];
        if (r.validatorAddress == address(0)) revert UnknownRequest(requestHash);
        if (r.validatorAddress != msg.sender) revert NotValidator(requestHash, msg.sender);
        if (response > 100) revert ResponseOutOfRange(response);
        r.response = response;
        r.answered = true;
        emit ValidationResponse(msg.sender, r.agentId, requestHash, response, responseUri, responseHash, tag);
    }

    function getValidationStatus(bytes32 requestHash)
        external
        view
        returns (address validatorAddress, uint256 agentId, uint8 response, bool answered)
    {
        Request memory r = _requests[requestHash];
        return (r.validatorAddress, r.agentId, r.response, r.answered);
    }
}
