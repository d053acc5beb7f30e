// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title TestSmartWallet
/// @notice A minimal EIP-1271 contract wallet for tests of smart-wallet payments. It accepts a
/// signature over a digest when it is `0x01 ‖ r ‖ s ‖ v` (66 bytes) made by its owner's key: longer
/// than an EOA signature, so x402 facilitators must use the `bytes` overload of
/// `transferWithAuthorization`, and the token must ask the wallet.
contract TestSmartWallet {
    address public immutable owner;
    bytes4 private constant EIP1271_MAGIC_VALUE = 0x1626ba7e;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 digest, bytes calldata signature) external view returns (bytes4) {
        if (signature.length != 66 || signature[0] != 0x01) {
            return 0xffffffff;
        }
        bytes32 r = bytes32(signature[1:33]);
        bytes32 s = bytes32(signature[33:65]);
        uint8 v = uint8(signature[65]);
        return ecrecover(digest, v, r, s) == owner ? EIP1271_MAGIC_VALUE : bytes4(0xffffffff);
    }
}
