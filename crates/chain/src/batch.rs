//! Batches of calls in one transaction through Multicall3's `aggregate3`: the calldata of a
//! batch, the decoding of its results, and, for anvil, putting our own `Multicall3`
//! (`contracts/src/Multicall3.sol`, same ABI) at the address where the standard deployment lives
//! on Base, Ethereum and Polygon.

use alloy::primitives::{Address, Bytes, address};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::SolCall as _;

use crate::ChainError;

/// The deployment bytecode of our `Multicall3`, compiled by `make contracts`.
const MULTICALL3_BIN: &str = include_str!("../../../contracts/out/Multicall3.bin");

/// Where Multicall3 lives on Base, Ethereum, Polygon (and most EVM chains); on anvil,
/// [`install_multicall3`] puts ours there.
pub const MULTICALL3_ADDRESS: Address = address!("cA11bde05977b3631167028862bE2a173976CA11");

/// Generated bindings.
mod bindings {
    alloy::sol! {
    /// The part of Multicall3 awx calls.
    interface IMulticall3 {
        struct Call3 {
            address target;
            bool allowFailure;
            bytes callData;
        }

        struct Result {
            bool success;
            bytes returnData;
        }

        function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory returnData);
    }
    }
}

pub use bindings::IMulticall3;

/// One call of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call3 {
    /// The contract called.
    pub target: Address,
    /// Whether the batch goes on when this call fails (its failure is then only recorded);
    /// otherwise a failure reverts the whole batch.
    pub allow_failure: bool,
    /// The call's input (selector and arguments).
    pub call_data: Bytes,
}

/// The outcome of one call of a batch, in the order of the calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// Whether the call succeeded.
    pub success: bool,
    /// What it returned, or its revert data.
    pub return_data: Bytes,
}

/// The calldata of `aggregate3(calls)`.
pub fn aggregate3_calldata(calls: &[Call3]) -> Bytes {
    let calls = calls
        .iter()
        .map(|call| IMulticall3::Call3 {
            target: call.target,
            allowFailure: call.allow_failure,
            callData: call.call_data.clone(),
        })
        .collect();
    Bytes::from(IMulticall3::aggregate3Call { calls }.abi_encode())
}

/// The results of `aggregate3` from its return data (of an `eth_call` simulating a batch).
pub fn decode_aggregate3_results(data: &[u8]) -> Result<Vec<CallResult>, ChainError> {
    let results = IMulticall3::aggregate3Call::abi_decode_returns(data)
        .map_err(|error| ChainError::Node(format!("bad aggregate3 return data: {error}")))?;
    Ok(results
        .into_iter()
        .map(|result| CallResult { success: result.success, return_data: result.returnData })
        .collect())
}

/// For anvil only: makes [`MULTICALL3_ADDRESS`] hold our `Multicall3` and returns that address.
///
/// Deploys the contract from the committed artifact with the provider's wallet, reads its runtime
/// code, and copies it to the address with `anvil_setCode`. Does nothing when the address
/// already has code, so calling it again is harmless.
pub async fn install_multicall3(provider: &DynProvider) -> Result<Address, ChainError> {
    let rpc = |error: alloy::transports::TransportError| ChainError::Rpc(error.to_string());
    if !provider.get_code_at(MULTICALL3_ADDRESS).await.map_err(rpc)?.is_empty() {
        return Ok(MULTICALL3_ADDRESS);
    }
    let deployed =
        crate::token::deploy(provider, crate::token::hex_bytecode(MULTICALL3_BIN)?).await?;
    let code = provider.get_code_at(deployed).await.map_err(rpc)?;
    if code.is_empty() {
        return Err(ChainError::Node("the deployed Multicall3 has no code".into()));
    }
    let _: serde_json::Value = provider
        .raw_request("anvil_setCode".into(), (MULTICALL3_ADDRESS, &code))
        .await
        .map_err(rpc)?;
    if provider.get_code_at(MULTICALL3_ADDRESS).await.map_err(rpc)? != code {
        return Err(ChainError::Node("anvil_setCode did not install Multicall3".into()));
    }
    Ok(MULTICALL3_ADDRESS)
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{U256, hex};
    use alloy::sol_types::SolValue as _;

    use super::*;

    #[test]
    fn aggregate3_calldata_is_the_selector_and_the_abi_encoded_calls() {
        let target = Address::repeat_byte(0x11);
        let calls = [
            Call3 { target, allow_failure: true, call_data: Bytes::from_static(&[0xde, 0xad]) },
            Call3 { target: Address::ZERO, allow_failure: false, call_data: Bytes::new() },
        ];
        let data = aggregate3_calldata(&calls);
        assert_eq!(data[..4], hex!("82ad56cb"));

        // Head: the offset of the array; then its length and the offsets of its two tuples (the
        // first is five words long).
        let word = |index: usize| U256::from_be_slice(&data[4 + 32 * index..4 + 32 * (index + 1)]);
        assert_eq!(word(0), U256::from(0x20));
        assert_eq!(word(1), U256::from(2));
        assert_eq!(word(2), U256::from(0x40));
        assert_eq!(word(3), U256::from(0x40 + 5 * 32));
        // First tuple: target, allowFailure, offset of callData, its length, its padded bytes.
        assert_eq!(word(4), U256::from_be_slice(target.as_slice()));
        assert_eq!(word(5), U256::from(1));
        assert_eq!(word(6), U256::from(0x60));
        assert_eq!(word(7), U256::from(2));
        assert_eq!(data[4 + 32 * 8..4 + 32 * 9], {
            let mut padded = [0u8; 32];
            padded[..2].copy_from_slice(&[0xde, 0xad]);
            padded
        });
        // Second tuple: zero target, false, offset of callData, empty.
        assert_eq!(word(9), U256::ZERO);
        assert_eq!(word(10), U256::ZERO);
        assert_eq!(word(11), U256::from(0x60));
        assert_eq!(word(12), U256::ZERO);
        assert_eq!(data.len(), 4 + 32 * 13);

        // The same as encoding the tuple array by hand.
        let by_hand = (vec![
            (target, true, Bytes::from_static(&[0xde, 0xad])),
            (Address::ZERO, false, Bytes::new()),
        ],)
            .abi_encode_params();
        assert_eq!(data[4..], by_hand[..]);
    }

    #[test]
    fn aggregate3_results_decode_in_order() {
        let encoded = vec![
            (true, Bytes::from_static(&[1, 2, 3])),
            (false, Bytes::from_static(&[0x08, 0xc3, 0x79, 0xa0])),
        ]
        .abi_encode();
        let results = decode_aggregate3_results(&encoded).unwrap();
        assert_eq!(
            results,
            [
                CallResult { success: true, return_data: Bytes::from_static(&[1, 2, 3]) },
                CallResult {
                    success: false,
                    return_data: Bytes::from_static(&[0x08, 0xc3, 0x79, 0xa0]),
                },
            ]
        );
        assert!(decode_aggregate3_results(&[1, 2]).is_err());
    }

    #[test]
    fn the_committed_artifact_is_hex() {
        assert!(crate::token::hex_bytecode(MULTICALL3_BIN).is_ok_and(|code| !code.is_empty()));
    }
}
