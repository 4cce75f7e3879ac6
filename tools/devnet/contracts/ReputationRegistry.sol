// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IAgentOwners {
    function ownerOf(uint256 agentId) external view returns (address);
}

/// @notice ERC-8004 reputation registry: clients leave feedback on an agent with a score
/// from 0 to 100, two bytes32 tags and an optional file (URI + hash). Feedback indexes count
/// from 1 per (agent, client).
contract ReputationRegistry {
    struct Feedback {
        uint8 score;
        bytes32 tag1;
        bytes32 tag2;
        bool revoked;
    }

    IAgentOwners public immutable identityRegistry;
    mapping(uint256 => mapping(address => Feedback[])) private _feedback;
    mapping(uint256 => uint64) public feedbackCount;
    mapping(uint256 => uint256) private _scoreSum;

    event NewFeedback(
        uint256 indexed agentId,
        address indexed clientAddress,
        uint8 score,
        bytes32 indexed tag1,
        bytes32 tag2,
        string fileuri,
        bytes32 filehash
    );
    event FeedbackRevoked(uint256 indexed agentId, address indexed clientAddress, uint64 indexed feedbackIndex);

    error UnknownAgent(uint256 agentId);
    error SelfFeedback(uint256 agentId);
    error ScoreOutOfRange(uint8 score);
    error NoSuchFeedback(uint256 agentId, address clientAddress, uint64 feedbackIndex);

    constructor(address identityRegistry_) {
        identityRegistry = IAgentOwners(identityRegistry_);
    }

    function giveFeedback(
        uint256 agentId,
        uint8 score,
        bytes32 tag1,
        bytes32 tag2,
        string calldata fileuri,
        bytes32 filehash
    ) external {
        if (score > 100) revert ScoreOutOfRange(score);
        address owner = identityRegistry.ownerOf(agentId);
        if (owner == address(0)) revert UnknownAgent(agentId);
        if (owner == msg.sender) revert SelfFeedback(agentId);
        _feedback[agentId][msg.sender].push(Feedback(score, tag1, tag2, false));
        feedbackCount[agentId] += 1;
        _scoreSum[agentId] += score;
        emit NewFeedback(agentId, msg.sender, score, tag1, tag2, fileuri, filehash);
    }

    function revokeFeedback(uint256 agentId, uint64 feedbackIndex) external {
        Feedback[] storage list = _feedback[agentId][msg.sender];
        if (feedbackIndex == 0 || feedbackIndex > list.length || list[feedbackIndex - 1].revoked) {
            revert NoSuchFeedback(agentId, msg.sender, feedbackIndex);
        }
        Feedback storage f = list[feedbackIndex - 1];
        f.revoked = true;
        feedbackCount[agentId] -= 1;
        _scoreSum[agentId] -= f.score;
        emit FeedbackRevoked(agentId, msg.sender, feedbackIndex);
    }

    function getLastIndex(uint256 agentId, address clientAddress) external view returns (uint64) {
        return uint64(_feedback[agentId][clientAddress].length);
    }

    /// @return count live (not revoked) feedback entries; averageScore their mean score
    function getSummary(uint256 agentId) external view returns (uint64 count, uint8 averageScore) {
        count = feedbackCount[agentId];
        averageScore = count == 0 ? 0 : uint8(_scoreSum[agentId] / count);
    }
}
