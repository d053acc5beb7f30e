//! Our EIP-3009 test token (`contracts/src/TestUSDC.sol`) and the EIP-1271 test wallet on a
//! chain: deployment from the committed artifacts, minting, reads, and `transferWithAuthorization`
//! with the overload chosen by signature length, as the reference facilitator chooses it; the
//! calldata of `mint` and of `transferWithAuthorization` for relayers that sign elsewhere, and
//! `Transfer` logs found in receipts.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::{SolEvent, SolValue};
use awx_x402::Eip3009Payload;
use awx_x402::eip3009::EcdsaSignature;

use crate::ChainError;
use crate::revert::classify_send_error;

/// The deployment bytecode of `TestUSDC`, compiled by `make contracts`.
const TEST_USDC_BIN: &str = include_str!("../../../contracts/out/TestUSDC.bin");
/// The deployment bytecode of `TestSmartWallet`.
const TEST_SMART_WALLET_BIN: &str = include_str!("../../../contracts/out/TestSmartWallet.bin");

/// Generated bindings.
#[allow(
    clippy::too_many_arguments,
    reason = "the generated calls mirror the EIP-3009 functions, which take up to nine arguments"
)]
mod bindings {
    alloy::sol! {
    /// The parts of `TestUSDC` (and of any EIP-3009 token) awx calls.
    #[sol(rpc)]
    interface Eip3009Token {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

        function name() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function balanceOf(address account) external view returns (uint256);
        function transfer(address to, uint256 value) external returns (bool);
        function totalSupply() external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function mint(address to, uint256 value) external;
        function configureMinter(address minter, bool allowed) external;
        function isMinter(address account) external view returns (bool);

        /// Overload 0: the v,r,s form, for 65-byte ECDSA signatures.
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        /// Overload 1: the bytes form, for any signature (smart wallets).
        function transferWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, bytes signature) external;

        function receiveWithAuthorization(address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
        function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external;
    }
    }
}

pub use bindings::Eip3009Token;

/// Which `transferWithAuthorization` overload a signature needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferOverload {
    /// `(…, uint8 v, bytes32 r, bytes32 s)`: a 65-byte ECDSA signature.
    Vrs,
    /// `(…, bytes signature)`: anything else (EIP-1271 smart wallets).
    Bytes,
}

impl TransferOverload {
    /// The overload for a signature of this length, as the reference facilitator picks it.
    pub fn for_signature(signature: &[u8]) -> Self {
        if signature.len() == 65 { Self::Vrs } else { Self::Bytes }
    }
}

/// An EIP-3009 token reached through a provider (which signs when it has a wallet).
#[derive(Debug, Clone)]
pub struct Token {
    contract: Eip3009Token::Eip3009TokenInstance<DynProvider>,
}

pub(crate) fn hex_bytecode(text: &str) -> Result<Vec<u8>, ChainError> {
    alloy::primitives::hex::decode(text.trim())
        .map_err(|error| ChainError::Node(format!("committed bytecode is not hex: {error}")))
}

pub(crate) async fn deploy(provider: &DynProvider, code: Vec<u8>) -> Result<Address, ChainError> {
    let request = TransactionRequest::default().with_deploy_code(code);
    let receipt = provider
        .send_transaction(request)
        .await
        .map_err(|error| ChainError::Rpc(error.to_string()))?
        .get_receipt()
        .await
        .map_err(|error| ChainError::Rpc(error.to_string()))?;
    if !receipt.status() {
        return Err(ChainError::Node("deployment reverted".into()));
    }
    receipt.contract_address.ok_or_else(|| ChainError::Node("deployment has no address".into()))
}

/// Deploys `TestUSDC` with the EIP-712 domain (`name`, `version`); the provider's wallet
/// becomes owner and minter.
pub async fn deploy_test_usdc(
    provider: &DynProvider,
    name: &str,
    version: &str,
) -> Result<Token, ChainError> {
    let mut code = hex_bytecode(TEST_USDC_BIN)?;
    code.extend((name.to_owned(), version.to_owned()).abi_encode_params());
    let address = deploy(provider, code).await?;
    Ok(Token::at(address, provider.clone()))
}

/// Deploys `TestSmartWallet` owned by `owner`'s key; returns the wallet's address.
pub async fn deploy_test_smart_wallet(
    provider: &DynProvider,
    owner: Address,
) -> Result<Address, ChainError> {
    let mut code = hex_bytecode(TEST_SMART_WALLET_BIN)?;
    code.extend(owner.abi_encode());
    deploy(provider, code).await
}

/// The signature `TestSmartWallet` accepts: `0x01 ‖ r ‖ s ‖ v` by its owner (66 bytes).
pub fn smart_wallet_signature(owner_signature: &EcdsaSignature) -> Bytes {
    let mut bytes = Vec::with_capacity(66);
    bytes.push(1);
    bytes.extend_from_slice(&owner_signature.to_bytes());
    Bytes::from(bytes)
}

impl Token {
    /// The token at `address`.
    pub fn at(address: Address, provider: DynProvider) -> Self {
        Self { contract: Eip3009Token::new(address, provider) }
    }

    /// The contract address.
    pub fn address(&self) -> Address {
        *self.contract.address()
    }

    /// `name()`, which is the EIP-712 domain name.
    pub async fn name(&self) -> Result<String, ChainError> {
        self.contract.name().call().await.map_err(|e| ChainError::Rpc(e.to_string()))
    }

    /// `version()`, the EIP-712 domain version.
    pub async fn version(&self) -> Result<String, ChainError> {
        self.contract.version().call().await.map_err(|e| ChainError::Rpc(e.to_string()))
    }

    /// `decimals()`.
    pub async fn decimals(&self) -> Result<u8, ChainError> {
        self.contract.decimals().call().await.map_err(|e| ChainError::Rpc(e.to_string()))
    }

    /// `balanceOf(account)`.
    pub async fn balance_of(&self, account: Address) -> Result<U256, ChainError> {
        self.contract.balanceOf(account).call().await.map_err(|e| ChainError::Rpc(e.to_string()))
    }

    /// `authorizationState(authorizer, nonce)`: whether the nonce was used or canceled.
    pub async fn authorization_state(
        &self,
        authorizer: Address,
        nonce: B256,
    ) -> Result<bool, ChainError> {
        self.contract
            .authorizationState(authorizer, nonce)
            .call()
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))
    }

    /// A plain ERC-20 `transfer` of `value` to `to` from the provider's wallet; waits for the
    /// receipt.
    pub async fn transfer(
        &self,
        to: Address,
        value: U256,
    ) -> Result<TransactionReceipt, ChainError> {
        let pending =
            self.contract.transfer(to, value).send().await.map_err(classify_send_error)?;
        confirm(pending.get_receipt().await)
    }

    /// Mints `value` to `to` (the provider's wallet must be a minter) and waits for the receipt.
    pub async fn mint(&self, to: Address, value: U256) -> Result<TransactionReceipt, ChainError> {
        let pending = self.contract.mint(to, value).send().await.map_err(classify_send_error)?;
        confirm(pending.get_receipt().await)
    }

    /// Allows or forbids `minter` to mint (the provider's wallet must be the owner).
    pub async fn configure_minter(&self, minter: Address, allowed: bool) -> Result<(), ChainError> {
        let pending = self
            .contract
            .configureMinter(minter, allowed)
            .send()
            .await
            .map_err(classify_send_error)?;
        confirm(pending.get_receipt().await).map(|_| ())
    }

    /// Submits `transferWithAuthorization` for a signed x402 payload from the provider's wallet,
    /// with the v,r,s overload for a 65-byte signature and the bytes overload otherwise, and
    /// waits for the receipt. A revert is reported by its cause ([`crate::RevertKind`]).
    pub async fn transfer_with_authorization(
        &self,
        payload: &Eip3009Payload,
    ) -> Result<TransactionReceipt, ChainError> {
        let pending = match self.transfer_call(payload)? {
            TransferCall::Vrs(call) => call.send().await,
            TransferCall::Bytes(call) => call.send().await,
        }
        .map_err(classify_send_error)?;
        confirm(pending.get_receipt().await)
    }

    /// The calldata of `transferWithAuthorization` for a payload, with the overload its signature
    /// needs (for a relayer's transaction signed elsewhere).
    pub fn transfer_calldata(payload: &Eip3009Payload) -> Result<Bytes, ChainError> {
        use alloy::sol_types::SolCall as _;
        let auth = &payload.authorization;
        Ok(match TransferOverload::for_signature(&payload.signature) {
            TransferOverload::Vrs => {
                let signature = EcdsaSignature::from_bytes(&payload.signature)
                    .map_err(|error| ChainError::Signature(error.to_string()))?;
                Bytes::from(
                    Eip3009Token::transferWithAuthorization_0Call {
                        from: auth.from,
                        to: auth.to,
                        value: auth.value,
                        validAfter: auth.valid_after,
                        validBefore: auth.valid_before,
                        nonce: auth.nonce,
                        v: signature.v(),
                        r: signature.r(),
                        s: signature.s(),
                    }
                    .abi_encode(),
                )
            }
            TransferOverload::Bytes => Bytes::from(
                Eip3009Token::transferWithAuthorization_1Call {
                    from: auth.from,
                    to: auth.to,
                    value: auth.value,
                    validAfter: auth.valid_after,
                    validBefore: auth.valid_before,
                    nonce: auth.nonce,
                    signature: payload.signature.clone(),
                }
                .abi_encode(),
            ),
        })
    }

    /// Simulates `transferWithAuthorization` (an `eth_call`), as verification does.
    pub async fn simulate_transfer_with_authorization(
        &self,
        payload: &Eip3009Payload,
    ) -> Result<(), ChainError> {
        match self.transfer_call(payload)? {
            TransferCall::Vrs(call) => call.call().await.map(|_| ()),
            TransferCall::Bytes(call) => call.call().await.map(|_| ()),
        }
        .map_err(classify_send_error)
    }

    fn transfer_call(&self, payload: &Eip3009Payload) -> Result<TransferCall<'_>, ChainError> {
        let auth = &payload.authorization;
        Ok(match TransferOverload::for_signature(&payload.signature) {
            TransferOverload::Vrs => {
                let signature = EcdsaSignature::from_bytes(&payload.signature)
                    .map_err(|error| ChainError::Signature(error.to_string()))?;
                TransferCall::Vrs(self.contract.transferWithAuthorization_0(
                    auth.from,
                    auth.to,
                    auth.value,
                    auth.valid_after,
                    auth.valid_before,
                    auth.nonce,
                    signature.v(),
                    signature.r(),
                    signature.s(),
                ))
            }
            TransferOverload::Bytes => {
                TransferCall::Bytes(self.contract.transferWithAuthorization_1(
                    auth.from,
                    auth.to,
                    auth.value,
                    auth.valid_after,
                    auth.valid_before,
                    auth.nonce,
                    payload.signature.clone(),
                ))
            }
        })
    }

    /// The calldata of `mint(to, value)` (for a relayer's transaction signed elsewhere; the
    /// sender must be a minter, or the call reverts).
    pub fn mint_calldata(to: Address, value: U256) -> Bytes {
        use alloy::sol_types::SolCall as _;
        Bytes::from(Eip3009Token::mintCall { to, value }.abi_encode())
    }

    /// This token's first `Transfer(from, to, value)` log in `receipt`.
    fn transfer_log<'r>(
        &self,
        receipt: &'r TransactionReceipt,
        from: Address,
        to: Address,
        value: U256,
    ) -> Option<&'r alloy::rpc::types::Log> {
        receipt.inner.logs().iter().find(|log| {
            log.address() == self.address()
                && Eip3009Token::Transfer::decode_log_data(log.data())
                    .is_ok_and(|event| event.from == from && event.to == to && event.value == value)
        })
    }

    /// Whether `receipt` carries this token's `Transfer(from, to, value)` log.
    pub fn receipt_has_transfer(
        &self,
        receipt: &TransactionReceipt,
        from: Address,
        to: Address,
        value: U256,
    ) -> bool {
        self.transfer_log(receipt, from, to, value).is_some()
    }

    /// Whether `receipt` carries this token's `AuthorizationUsed(authorizer, nonce)` log: the
    /// authorization was used in that transaction (in a batch, other calls may have failed).
    pub fn receipt_has_authorization_used(
        &self,
        receipt: &TransactionReceipt,
        authorizer: Address,
        nonce: B256,
    ) -> bool {
        receipt.inner.logs().iter().any(|log| {
            log.address() == self.address()
                && Eip3009Token::AuthorizationUsed::decode_log_data(log.data())
                    .is_ok_and(|event| event.authorizer == authorizer && event.nonce == nonce)
        })
    }

    /// Every `Transfer(from, to, value)` log of any token in `receipt`: (token, from, to, value).
    pub fn transfers_in(receipt: &TransactionReceipt) -> Vec<(Address, Address, Address, U256)> {
        receipt
            .inner
            .logs()
            .iter()
            .filter_map(|log| {
                Eip3009Token::Transfer::decode_log_data(log.data())
                    .ok()
                    .map(|event| (log.address(), event.from, event.to, event.value))
            })
            .collect()
    }

    /// The index in its block of this token's `Transfer(from, to, value)` log in `receipt` (a
    /// mint is `from` the zero address), or `None` when the receipt has no such log.
    pub fn transfer_log_index(
        &self,
        receipt: &TransactionReceipt,
        from: Address,
        to: Address,
        value: U256,
    ) -> Option<u64> {
        self.transfer_log(receipt, from, to, value).and_then(|log| log.log_index)
    }
}

type VrsCall<'a> =
    alloy::contract::SolCallBuilder<&'a DynProvider, Eip3009Token::transferWithAuthorization_0Call>;
type BytesCall<'a> =
    alloy::contract::SolCallBuilder<&'a DynProvider, Eip3009Token::transferWithAuthorization_1Call>;

enum TransferCall<'a> {
    Vrs(VrsCall<'a>),
    Bytes(BytesCall<'a>),
}

fn confirm(
    receipt: Result<TransactionReceipt, alloy::providers::PendingTransactionError>,
) -> Result<TransactionReceipt, ChainError> {
    let receipt = receipt.map_err(|error| ChainError::Rpc(error.to_string()))?;
    if receipt.status() {
        Ok(receipt)
    } else {
        Err(ChainError::Reverted {
            kind: crate::RevertKind::Other,
            message: "transaction reverted".into(),
        })
    }
}
