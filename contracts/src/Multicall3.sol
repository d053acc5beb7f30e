// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title Multicall3
/// @notice awx's own batcher with the ABI of the standard Multicall3's `aggregate3`, for
/// development chains where the standard deployment at 0xcA11bde05977b3631167028862bE2a173976CA11
/// does not exist: our tests deploy this contract and copy its runtime code to that address.
/// Calls run in order, each with the whole remaining gas and no value. A call that fails with
/// `allowFailure` false reverts the batch ("Multicall3: call failed"); with `allowFailure` true its
/// failure (and revert data) is recorded in its result and the batch goes on.
contract Multicall3 {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData) {
        uint256 count = calls.length;
        returnData = new Result[](count);
        for (uint256 i = 0; i < count; ++i) {
            Call3 calldata item = calls[i];
            (bool success, bytes memory data) = item.target.call(item.callData);
            if (!success && !item.allowFailure) {
                revert("Multicall3: call failed");
            }
            returnData[i] = Result({success: success, returnData: data});
        }
    }
}
