//! A signer service on a fresh database and Redis prefix, a bus client to talk to it, an
//! independent reading of the stored keys (AES-256-GCM done here, not through the service), and
//! the policy service's side of an authorization: its decision key and requests with decisions.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use std::time::{SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, B256, Bytes, U256};
use awx_api::signer::{
    AuthorizationSigned, CreateWallet, Relayers, SignAuthorization, SignTransaction,
    SignedTransaction,
};
use awx_bus::{Bus, BusConfig, BusError};
use awx_decision::{DecisionClaims, DecisionKey};
use awx_service_kit::shutdown::Shutdown;
use awx_signer_service::contracts::AllowList;
use awx_signer_service::custody::Custody;
use awx_signer_service::{Kek, SignerService, SignerSettings};
use awx_test_support::{RedisNamespace, TestDb};
use awx_types::{AgentId, PaymentId};
use awx_x402::{Eip3009Authorization, TokenDomain};
use secrecy::SecretString;
use sqlx::{PgPool, Row as _};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// The test KEK, as an operator would give it.
pub(crate) const KEK_HEX: &str = "8f3ca1d2e4b5c6978a9b0c1d2e3f405162738495a6b7c8d9eafb0c1d2e3f4051";
/// Another KEK.
pub(crate) const OTHER_KEK_HEX: &str =
    "1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a";

/// A contract on the allow-list of [`ALLOWED_NETWORK`] in [`TestSigner::start`]'s settings.
pub(crate) const ALLOWED_CONTRACT: Address = Address::repeat_byte(0xc0);
/// The chain of [`ALLOWED_CONTRACT`].
pub(crate) const ALLOWED_CHAIN_ID: u64 = 8453;
pub(crate) const ALLOWED_NETWORK: &str = "eip155:8453";

pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// The policy service's decision key in the tests (its seed, as the policy service keeps it).
pub(crate) const DECISION_SEED_HEX: &str =
    "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
/// How long the tests' decisions live.
pub(crate) const DECISION_LIFETIME_SECONDS: i64 = 60;
/// The token of the tests' authorizations that need no chain, and its EIP-712 domain.
pub(crate) const AUTHORIZATION_TOKEN: Address = Address::repeat_byte(0xd0);
pub(crate) const AUTHORIZATION_CHAIN_ID: u64 = 84532;

pub(crate) fn decision_key() -> DecisionKey {
    DecisionKey::from_seed_hex(DECISION_SEED_HEX).unwrap()
}

pub(crate) fn now_unix() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

pub(crate) fn kek() -> Kek {
    Kek::from_hex(KEK_HEX, "test").unwrap()
}

pub(crate) fn other_kek() -> Kek {
    Kek::from_hex(OTHER_KEK_HEX, "test").unwrap()
}

/// Settings on `db` and `namespace`, with the test contract allowed.
pub(crate) fn settings(db: &TestDb, namespace: &RedisNamespace) -> SignerSettings {
    let mut settings = SignerSettings::default();
    settings.database.url = SecretString::from(db.url());
    settings.database.migrate = false;
    settings.database.max_connections = 4;
    settings.bus.redis_url = SecretString::from(awx_test_support::redis_url());
    settings.bus.prefix = namespace.prefix().to_owned();
    settings.bus.block_ms = 100;
    settings.allowed_contracts.insert(ALLOWED_NETWORK.to_owned(), vec![ALLOWED_CONTRACT]);
    settings.decision_public_key_hex = Some(decision_key().public_key_hex());
    settings
}

/// A running signer service and a client of it.
pub(crate) struct TestSigner {
    pub(crate) db: TestDb,
    pub(crate) client: Bus,
    pub(crate) contracts: Arc<AllowList>,
    pub(crate) custody: Arc<Custody>,
    pub(crate) relayers: Vec<Address>,
    shutdown: Shutdown,
    running: Option<JoinHandle<anyhow::Result<()>>>,
    // Dropped last: the keys of the prefix are deleted when the test ends.
    _namespace: RedisNamespace,
}

impl TestSigner {
    pub(crate) async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub(crate) async fn with(adjust: impl FnOnce(&mut SignerSettings)) -> Self {
        awx_test_support::init_logging();
        let db = TestDb::new().await;
        let namespace = RedisNamespace::new();
        let mut settings = settings(&db, &namespace);
        adjust(&mut settings);
        let service = SignerService::build_with_kek(settings, kek()).await.unwrap();
        let contracts = service.contracts();
        let custody = service.custody();
        let relayers = service.relayers().await.unwrap();
        let shutdown = Shutdown::new();
        let running = tokio::spawn(service.run(shutdown.clone()));
        let client = client(&namespace).await;
        Self {
            db,
            client,
            contracts,
            custody,
            relayers,
            shutdown,
            running: Some(running),
            _namespace: namespace,
        }
    }

    pub(crate) fn relayer(&self) -> Address {
        self.relayers[0]
    }

    pub(crate) async fn sign(
        &self,
        request: &SignTransaction,
    ) -> Result<SignedTransaction, BusError> {
        self.client.send(request, TIMEOUT).await
    }

    pub(crate) async fn create_wallet(&self, agent_id: AgentId) -> Address {
        self.client.send(&CreateWallet { agent_id }, TIMEOUT).await.unwrap().address
    }

    pub(crate) async fn sign_authorization(
        &self,
        request: &SignAuthorization,
    ) -> Result<AuthorizationSigned, BusError> {
        self.client.send(request, TIMEOUT).await
    }

    pub(crate) async fn relayers_over_the_bus(&self) -> Vec<Address> {
        self.client.send(&Relayers {}, TIMEOUT).await.unwrap().relayers
    }

    pub(crate) async fn log_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM signer.signing_log")
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }

    /// Stops the service and checks it stopped cleanly.
    pub(crate) async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(running) = self.running.take() {
            running.await.unwrap().unwrap();
        }
        self.client.close();
    }
}

/// A bus client in another service's name.
pub(crate) async fn client(namespace: &RedisNamespace) -> Bus {
    let mut config = BusConfig::new("settlement", "settlement");
    config.redis_url = SecretString::from(awx_test_support::redis_url());
    config.prefix = namespace.prefix().to_owned();
    Bus::connect(config).await.unwrap()
}

/// A request the test signer accepts, from `from`.
pub(crate) fn request(from: Address) -> SignTransaction {
    SignTransaction {
        request_id: Uuid::now_v7(),
        chain_id: ALLOWED_CHAIN_ID,
        from,
        to: ALLOWED_CONTRACT,
        input: Bytes::from(vec![0xa9, 0x05, 0x9c, 0xbb, 1, 2, 3, 4]),
        nonce: 7,
        gas_limit: 120_000,
        max_fee_per_gas: 3_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
    }
}

/// A stored key row.
pub(crate) struct StoredKey {
    pub(crate) address: String,
    pub(crate) purpose: String,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) nonce: Vec<u8>,
    pub(crate) kek_id: String,
}

/// Every stored key, oldest first.
pub(crate) async fn stored_keys(pool: &PgPool) -> Vec<StoredKey> {
    sqlx::query(
        "SELECT address, purpose, ciphertext, nonce, kek_id FROM signer.keys \
         ORDER BY created_at, id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|row| StoredKey {
        address: row.get("address"),
        purpose: row.get("purpose"),
        ciphertext: row.get("ciphertext"),
        nonce: row.get("nonce"),
        kek_id: row.get("kek_id"),
    })
    .collect()
}

fn kek_bytes(hex: &str) -> [u8; 32] {
    let mut bytes = [0_u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    bytes
}

/// Decrypts a stored key with the test KEK, independently of the service: AES-256-GCM, the
/// row's nonce, the address text as associated data.
pub(crate) fn decrypt_independently(key: &StoredKey, kek_hex: &str) -> Option<[u8; 32]> {
    let cipher = Aes256Gcm::new(&Key::<Aes256Gcm>::from(kek_bytes(kek_hex)));
    let nonce: [u8; 12] = key.nonce.as_slice().try_into().ok()?;
    let plaintext = cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: &key.ciphertext, aad: key.address.as_bytes() })
        .ok()?;
    plaintext.as_slice().try_into().ok()
}

/// A payment of `value` from `from` (the wallet of `agent_id`) to a random payee on the test
/// token, valid for five minutes, with a decision of the test key binding it.
pub(crate) fn authorization_request(agent_id: AgentId, from: Address) -> SignAuthorization {
    let now = now_unix();
    let mut request = SignAuthorization {
        payment_id: PaymentId::new(),
        agent_id,
        chain_id: AUTHORIZATION_CHAIN_ID,
        token: AUTHORIZATION_TOKEN,
        token_name: "USDC".into(),
        token_version: "2".into(),
        authorization: Eip3009Authorization {
            from,
            to: Address::random(),
            value: U256::from(10_000),
            valid_after: U256::ZERO,
            valid_before: U256::from(u64::try_from(now).unwrap() + 300),
            nonce: B256::random(),
        },
        decision: String::new(),
    };
    request.decision = decide(&request, &decision_key(), now, DECISION_LIFETIME_SECONDS);
    request
}

/// A decision of `key`, issued at `now` for `lifetime_seconds`, binding exactly `request`.
pub(crate) fn decide(
    request: &SignAuthorization,
    key: &DecisionKey,
    now: i64,
    lifetime_seconds: i64,
) -> String {
    let domain = TokenDomain {
        name: request.token_name.clone(),
        version: request.token_version.clone(),
        chain_id: request.chain_id,
        verifying_contract: request.token,
    };
    let claims = DecisionClaims::new(
        &request.payment_id.to_string(),
        &request.agent_id.to_string(),
        now,
        lifetime_seconds,
        request.chain_id,
        &domain,
        &request.authorization,
    );
    key.sign(&claims).unwrap()
}

/// `request` with a fresh decision of the test key binding it as it now is.
pub(crate) fn redecided(mut request: SignAuthorization) -> SignAuthorization {
    request.decision = decide(&request, &decision_key(), now_unix(), DECISION_LIFETIME_SECONDS);
    request
}
