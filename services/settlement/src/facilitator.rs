//! The facilitator: verify, settle, supported.
//!
//! Every request is first normalized to v2 shapes; when its payer (`authorization.from`) is one
//! of our agents' wallets ([`crate::own_wallets`], known in this service without a round trip),
//! the policy service answers ([`crate::own`]) and no chain is called; a verify of an
//! authorization this replica heard announced is answered from memory
//! ([`awx_api::issued::IssuedMemory`]). Other payers' payments
//! never reach the policy service.
//!
//! For outside payers, verify follows the reference facilitator (x402-v2.md §5.1): the offline
//! checks of `awx-x402`, the signature (an EOA's recovers to the payer; a contract wallet's is
//! left to the token), the asset's bytecode, then a simulation of `transferWithAuthorization`
//! with the overload the signature needs; when the simulation fails, `authorizationState`,
//! `name`, `version` and `balanceOf` are read one by one to name the reason.
//!
//! Settle re-runs the checks without simulation, then (see [`crate::settle`]) records the
//! settlement keyed by (network, payer, nonce), signs and stores the transaction, broadcasts it,
//! and waits a bounded time for the receipt.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use awx_api::policy::OwnPaymentReply;
use awx_chain::{ChainClient, ChainError, RevertKind};
use awx_types::AccountId;
use awx_x402::{
    Address, CheckedExactEvm, Eip3009Payload, ErrorReason, FacilitatorRequest, Invalid,
    NormalizedRequest, SignatureCheck, SupportedKind, SupportedResponse, VerifyResponse,
    check_eoa_signature, check_exact_evm,
};
use sqlx::PgPool;
use tokio::sync::RwLock;

use crate::config::SettlementSettings;

/// The ERC-6492 magic suffix of a counterfactual smart-wallet signature.
const ERC6492_MAGIC: [u8; 32] = [
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
    0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92, 0x64, 0x92,
];

/// Why a facilitator operation could not be answered (as opposed to a payment being invalid).
#[derive(Debug, thiserror::Error)]
pub enum FacilitatorError {
    /// The request cannot be read.
    #[error("{0}")]
    InvalidRequest(String),
    /// The chain's node failed, or a transaction is not mined yet.
    #[error("chain: {0}")]
    Chain(String),
    /// The signer failed or refused.
    #[error("signer: {0}")]
    Signer(String),
    /// The policy service (which answers for our own agents' payments) did not answer, or
    /// answered something unexpected.
    #[error("policy: {0}")]
    PolicyUnavailable(String),
    /// The faucet cannot mint on this network.
    #[error("faucet: {0}")]
    FaucetUnavailable(String),
    /// The ledger did not answer.
    #[error("ledger: {0}")]
    Ledger(String),
    /// Stored state contradicts a request (a broken invariant).
    #[error("inconsistent: {0}")]
    Inconsistent(String),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another service refused the request with this stable code (passed on as it is).
    #[error("{code}: {message}")]
    Rejected {
        /// The code.
        code: String,
        /// Why.
        message: String,
    },
}

/// One chain the facilitator works on.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The CAIP-2 network.
    pub network: awx_x402::Network,
    /// The chain id.
    pub chain_id: u64,
    /// The node.
    pub client: ChainClient,
    /// How long a settle waits for a receipt.
    pub receipt_wait: Duration,
    /// The token the development faucet mints, when the faucet is on.
    pub faucet_token: Option<Address>,
    /// Blocks after a batch transaction's block before it counts as confirmed, and behind the
    /// head the chain watcher stays.
    pub confirmations: u64,
    /// The tokens the chain watcher follows (deposits, authorizations used).
    pub watch_tokens: Vec<Address>,
    /// Where the chain watcher starts without a cursor.
    pub watch_from_block: Option<u64>,
}

/// The facilitator: chains, relayers, storage.
#[derive(Debug)]
pub struct Facilitator {
    /// Postgres (the settlement schema).
    pub pool: PgPool,
    /// The bus, to reach the signer.
    pub bus: awx_bus::Bus,
    /// The settings.
    pub settings: SettlementSettings,
    chains: BTreeMap<String, Chain>,
    relayers: RwLock<Vec<Address>>,
    /// Which payers are our agents' wallets.
    pub(crate) own_wallets: crate::own_wallets::OwnWallets,
    /// The authorizations our agents were issued, as announced.
    pub(crate) issued: awx_api::issued::IssuedMemory,
}

/// Seconds since the epoch.
pub fn now_unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

/// A payment that passed every check settle needs.
#[derive(Debug, Clone)]
pub struct Valid<'a> {
    /// The request in v2 shapes.
    pub request: NormalizedRequest,
    /// The checked payment.
    pub checked: CheckedExactEvm,
    /// Its chain.
    pub chain: &'a Chain,
}

/// The outcome of the checks.
#[derive(Debug)]
pub enum Checked<'a> {
    /// Every check passed.
    Valid(Box<Valid<'a>>),
    /// A check failed: answer this.
    Invalid(Invalid),
}

fn invalid(reason: ErrorReason, message: impl Into<String>, payer: Option<Address>) -> Invalid {
    Invalid { reason, message: message.into(), payer }
}

/// The request in v2 shapes (v1 requests are converted).
pub fn normalize(request: &FacilitatorRequest) -> Result<NormalizedRequest, FacilitatorError> {
    request.normalize().map_err(|error| FacilitatorError::InvalidRequest(error.to_string()))
}

fn chain_error(error: ChainError) -> FacilitatorError {
    FacilitatorError::Chain(error.to_string())
}

/// The reason strings of a revert, as the reference facilitator maps them (x402-v2.md §5.2).
pub fn revert_reason(kind: RevertKind) -> ErrorReason {
    match kind {
        RevertKind::NonceUsed => ErrorReason::InvalidExactEvmNonceAlreadyUsed,
        RevertKind::Expired => ErrorReason::InvalidExactEvmPayloadAuthorizationValidBefore,
        RevertKind::NotYetValid => ErrorReason::InvalidExactEvmPayloadAuthorizationValidAfter,
        RevertKind::InvalidSignature => ErrorReason::InvalidExactEvmSignature,
        RevertKind::InsufficientBalance => ErrorReason::InvalidExactEvmInsufficientBalance,
        RevertKind::Other => ErrorReason::InvalidExactEvmTransactionFailed,
    }
}

impl Facilitator {
    /// A facilitator over the configured networks.
    pub fn new(
        pool: PgPool,
        bus: awx_bus::Bus,
        settings: SettlementSettings,
    ) -> Result<Self, FacilitatorError> {
        let mut chains = BTreeMap::new();
        for network in &settings.networks {
            let parsed = awx_x402::Network::parse_caip2(&network.network)
                .map_err(|error| FacilitatorError::InvalidRequest(error.to_string()))?;
            let chain_id = parsed.evm_chain_id().ok_or_else(|| {
                FacilitatorError::InvalidRequest(format!(
                    "{} is not an EVM network",
                    network.network
                ))
            })?;
            let client =
                ChainClient::connect_with_options(&network.rpc_url, settings.rpc_options())
                    .map_err(chain_error)?;
            let faucet_token = network.faucet_token.filter(|_| network.faucet);
            let mut watch_tokens = network.watch.tokens.clone();
            if watch_tokens.is_empty() {
                watch_tokens.extend(
                    awx_x402::TokenRegistry::builtin()
                        .iter()
                        .filter(|token| token.chain_id() == Some(chain_id))
                        .map(|token| token.address),
                );
                watch_tokens.extend(faucet_token);
            }
            watch_tokens.sort_unstable();
            watch_tokens.dedup();
            chains.insert(
                parsed.to_string(),
                Chain {
                    network: parsed,
                    chain_id,
                    client,
                    receipt_wait: Duration::from_millis(network.receipt_wait_ms),
                    faucet_token,
                    confirmations: network.confirmations,
                    watch_tokens,
                    watch_from_block: network.watch.from_block,
                },
            );
        }
        Ok(Self {
            pool,
            bus,
            settings,
            chains,
            relayers: RwLock::new(Vec::new()),
            own_wallets: crate::own_wallets::OwnWallets::default(),
            issued: awx_api::issued::IssuedMemory::default(),
        })
    }

    /// The chain of a CAIP-2 network, if served.
    pub fn chain(&self, network: &str) -> Option<&Chain> {
        self.chains.get(network)
    }

    /// Every chain served.
    pub fn chains(&self) -> impl Iterator<Item = &Chain> {
        self.chains.values()
    }

    /// The chain with `chain_id`, if served.
    pub fn chain_by_id(&self, chain_id: u64) -> Option<&Chain> {
        self.chains.values().find(|chain| chain.chain_id == chain_id)
    }

    /// The relayer addresses (asked of the signer once, then cached).
    pub async fn relayers(&self) -> Result<Vec<Address>, FacilitatorError> {
        if let Some(cached) = Some(self.relayers.read().await.clone()).filter(|r| !r.is_empty()) {
            return Ok(cached);
        }
        let timeout = Duration::from_millis(self.settings.signer_timeout_ms);
        let reply = self
            .bus
            .send(&awx_api::signer::Relayers {}, timeout)
            .await
            .map_err(|error| FacilitatorError::Signer(error.to_string()))?;
        if reply.relayers.is_empty() {
            return Err(FacilitatorError::Signer("the signer has no relayer keys".into()));
        }
        *self.relayers.write().await = reply.relayers.clone();
        Ok(reply.relayers)
    }

    /// Runs every check of an outside payer's payment; `simulate` adds the on-chain simulation
    /// (verify does, settle does not, as the reference facilitator's default).
    pub async fn check(
        &self,
        normalized: NormalizedRequest,
        simulate: bool,
    ) -> Result<Checked<'_>, FacilitatorError> {
        let Some(chain) = self.chains.get(&normalized.requirements.network) else {
            return Ok(Checked::Invalid(invalid(
                ErrorReason::InvalidNetwork,
                format!(
                    "network {:?} is not supported by this facilitator",
                    normalized.requirements.network
                ),
                None,
            )));
        };
        let checked = match check_exact_evm(
            &normalized.payload,
            &normalized.requirements,
            now_unix_seconds(),
        ) {
            Ok(checked) => checked,
            Err(rejected) => return Ok(Checked::Invalid(rejected)),
        };
        let payer = Some(checked.payer());
        match check_eoa_signature(&checked) {
            SignatureCheck::ValidEoa => {}
            SignatureCheck::NotByPayer => {
                // A contract wallet may accept a 65-byte signature through EIP-1271; anyone else
                // has signed for someone else.
                if chain.client.code(checked.payer()).await.map_err(chain_error)?.is_empty() {
                    return Ok(Checked::Invalid(invalid(
                        ErrorReason::InvalidExactEvmSignature,
                        "the signature is not the payer's",
                        payer,
                    )));
                }
            }
            SignatureCheck::SmartWallet => {
                if chain.client.code(checked.payer()).await.map_err(chain_error)?.is_empty() {
                    let counterfactual =
                        checked.signature.len() > 32 && checked.signature.ends_with(&ERC6492_MAGIC);
                    return Ok(Checked::Invalid(if counterfactual {
                        invalid(
                            ErrorReason::Eip6492FactoryNotAllowed,
                            "ERC-6492 wallet deployment is not allowed",
                            payer,
                        )
                    } else {
                        invalid(
                            ErrorReason::InvalidExactEvmPayloadUndeployedSmartWallet,
                            "a smart-wallet signature from an address with no code",
                            payer,
                        )
                    }));
                }
            }
        }
        if chain.client.code(checked.asset()).await.map_err(chain_error)?.is_empty() {
            return Ok(Checked::Invalid(invalid(
                ErrorReason::AssetNotDeployedContract,
                format!("no contract at {}", checked.asset()),
                payer,
            )));
        }
        if simulate {
            let payload = Eip3009Payload {
                signature: checked.signature.clone(),
                authorization: checked.authorization.clone(),
            };
            match chain
                .client
                .token(checked.asset())
                .simulate_transfer_with_authorization(&payload)
                .await
            {
                Ok(()) => {}
                Err(ChainError::Reverted { message, .. }) => {
                    let (reason, message) = self.diagnose(chain, &checked, message).await?;
                    return Ok(Checked::Invalid(invalid(reason, message, payer)));
                }
                Err(ChainError::Signature(message)) => {
                    return Ok(Checked::Invalid(invalid(
                        ErrorReason::InvalidExactEvmSignature,
                        message,
                        payer,
                    )));
                }
                Err(error) => return Err(chain_error(error)),
            }
        }
        Ok(Checked::Valid(Box::new(Valid { request: normalized, checked, chain })))
    }

    /// Why a simulation failed, read from the token one call at a time (a local chain has no
    /// Multicall3), in the reference facilitator's order.
    async fn diagnose(
        &self,
        chain: &Chain,
        checked: &CheckedExactEvm,
        revert: String,
    ) -> Result<(ErrorReason, String), FacilitatorError> {
        let token = chain.client.token(checked.asset());
        let auth = &checked.authorization;
        match token.authorization_state(auth.from, auth.nonce).await {
            Ok(true) => {
                return Ok((
                    ErrorReason::InvalidExactEvmNonceAlreadyUsed,
                    "the authorization's nonce was used or canceled".into(),
                ));
            }
            Ok(false) => {}
            Err(error) if error.to_string().contains("revert") => {
                return Ok((
                    ErrorReason::InvalidExactEvmEip3009NotSupported,
                    "the token does not implement EIP-3009".into(),
                ));
            }
            Err(error) => return Err(chain_error(error)),
        }
        if let Ok(name) = token.name().await
            && name != checked.domain.name
        {
            return Ok((
                ErrorReason::InvalidExactEvmTokenNameMismatch,
                format!(
                    "the token's name is {name:?}, the requirements say {:?}",
                    checked.domain.name
                ),
            ));
        }
        if let Ok(version) = token.version().await
            && version != checked.domain.version
        {
            return Ok((
                ErrorReason::InvalidExactEvmTokenVersionMismatch,
                format!(
                    "the token's version is {version:?}, the requirements say {:?}",
                    checked.domain.version
                ),
            ));
        }
        match token.balance_of(auth.from).await {
            Ok(balance) if balance < auth.value => {
                return Ok((
                    ErrorReason::InvalidExactEvmInsufficientBalance,
                    format!("the payer holds {balance}, the payment is {}", auth.value),
                ));
            }
            Ok(_) => {}
            Err(error) => return Err(chain_error(error)),
        }
        Ok((ErrorReason::InvalidExactEvmTransactionSimulationFailed, revert))
    }

    /// Verifies a payment: the policy service's verdict for our own agents' payments, the
    /// checks and a simulation on chain for anyone else's. Nothing is written either way.
    pub async fn verify(
        &self,
        provider: AccountId,
        request: &FacilitatorRequest,
    ) -> Result<VerifyResponse, FacilitatorError> {
        let normalized = normalize(request)?;
        if let Some(response) = self.verify_issued(&normalized) {
            return Ok(response);
        }
        if self.is_own_payer(&normalized).await? {
            metrics::counter!("settlement_own_verify_total", "answered_by" => "policy")
                .increment(1);
            match self.own_verify(provider, &normalized).await? {
                OwnPaymentReply::NotOurs => {}
                OwnPaymentReply::Verified { response } => return Ok(response),
                OwnPaymentReply::Settled { .. } => {
                    return Err(FacilitatorError::PolicyUnavailable(
                        "the policy service answered a verify with a settlement".into(),
                    ));
                }
            }
        }
        Ok(match self.check(normalized, true).await? {
            Checked::Valid(valid) => VerifyResponse::valid(valid.checked.payer().to_checksum(None)),
            Checked::Invalid(rejected) => VerifyResponse::invalid(
                rejected.reason,
                rejected.message,
                rejected.payer.map(|payer| payer.to_checksum(None)),
            ),
        })
    }

    /// Every served network as a v2 kind (and as a v1 kind when it has a v1 name), with the
    /// relayers as signers.
    pub async fn supported(&self) -> Result<SupportedResponse, FacilitatorError> {
        let mut kinds = Vec::new();
        for chain in self.chains.values() {
            kinds.push(SupportedKind {
                x402_version: 2,
                scheme: "exact".into(),
                network: chain.network.to_string(),
                extra: None,
            });
            if let Some(name) = chain.network.v1_name() {
                kinds.push(SupportedKind {
                    x402_version: 1,
                    scheme: "exact".into(),
                    network: name.into(),
                    extra: None,
                });
            }
        }
        let relayers = self.relayers().await?;
        let signers = BTreeMap::from([(
            "eip155:*".to_owned(),
            relayers.iter().map(|address| address.to_checksum(None)).collect(),
        )]);
        Ok(SupportedResponse { kinds, extensions: Vec::new(), signers })
    }
}
