//! Building and running the signer service: the command server of the `signer` family, and
//! nothing else. The signer listens on no port (no API, no ops endpoints); it is reached only
//! through bus commands, and its liveness shows as answers to them (`Relayers` is the cheapest).

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use anyhow::Context as _;
use awx_decision::DecisionVerifier;
use awx_service_kit::config::Validate as _;
use awx_service_kit::shutdown::Shutdown;
use sqlx::PgPool;

use crate::commands::SignerHandlers;
use crate::config::{SERVICE, SignerSettings};
use crate::contracts::{AllowList, AllowListError};
use crate::custody::{Custody, Limits};
use crate::kek::{Kek, KekId};
use crate::local::LocalSigner;
use crate::signer::{KeyPurpose, Signer as _};

/// A built signer service, not yet running.
#[derive(Debug)]
pub struct SignerService {
    custody: Arc<Custody>,
    local: Arc<LocalSigner>,
    pool: PgPool,
    bus: awx_bus::Bus,
}

impl SignerService {
    /// Reads the key-encryption key (`AWX_SIGNER_KEK` or `kek_file`; refusing to start without
    /// exactly one), then builds as [`SignerService::build_with_kek`].
    pub async fn build(settings: SignerSettings) -> anyhow::Result<Self> {
        let kek = Kek::from_env_or_file(settings.kek_file.as_deref())
            .context("reading the key-encryption key")?;
        Self::build_with_kek(settings, kek).await
    }

    /// Checks the settings, connects Postgres (migrating if configured) and the bus, loads and
    /// decrypts the keys with `kek` (refusing keys under another KEK), and creates relayer keys
    /// until `relayer_count` exist. `settings.kek_file` is not read.
    pub async fn build_with_kek(mut settings: SignerSettings, kek: Kek) -> anyhow::Result<Self> {
        settings.bus.service = SERVICE.to_owned();
        settings.bus.schema = SERVICE.to_owned();
        settings.validate().map_err(anyhow::Error::msg).context("checking the signer settings")?;
        let contracts = AllowList::from_settings(&settings.allowed_contracts)
            .context("reading allowed_contracts")?;
        let decisions = settings
            .decision_public_key_hex
            .as_deref()
            .map(DecisionVerifier::from_public_key_hex)
            .transpose()
            .context("reading decision_public_key_hex")?;
        let pool = awx_service_kit::db::connect(&settings.database)
            .await
            .context("connecting to Postgres")?;
        let bus =
            awx_bus::Bus::connect(settings.bus.clone()).await.context("connecting the bus")?;
        let local = Arc::new(
            LocalSigner::open(&pool, kek, settings.relayer_count)
                .await
                .context("loading the signer's keys")?,
        );
        let relayers = local.addresses(KeyPurpose::Relayer).await?;
        tracing::info!(
            backend = local.backend(),
            kek_id = %local.kek_id(),
            keys = local.key_count(),
            relayers = ?relayers,
            decision_public_key = decisions.as_ref().map(|verifier| verifier.public_key_hex()),
            "signer keys loaded"
        );
        if decisions.is_none() {
            tracing::warn!(
                "no decision_public_key_hex: every SignAuthorization will be refused \
                 (decision_invalid)"
            );
        }
        let custody = Arc::new(
            Custody::new(local.clone(), Arc::new(contracts), Limits::from_settings(&settings))
                .with_decisions(decisions),
        );
        Ok(Self { custody, local, pool, bus })
    }

    /// The rules and the backend (for callers in the same process, such as tests).
    pub fn custody(&self) -> Arc<Custody> {
        self.custody.clone()
    }

    /// The allow-list; keep it to change the list while the service runs.
    pub fn contracts(&self) -> Arc<AllowList> {
        self.custody.contracts().clone()
    }

    /// Allows `contract` on `network` (`eip155:<chain id>`) in this process, from now on;
    /// `true` if it was not allowed yet. See [`crate::contracts`].
    pub fn allow_contract(&self, network: &str, contract: Address) -> Result<bool, AllowListError> {
        self.custody.contracts().allow(network, contract)
    }

    /// The id of the key-encryption key in use.
    pub fn kek_id(&self) -> &KekId {
        self.local.kek_id()
    }

    /// The relayer addresses, oldest first.
    pub async fn relayers(&self) -> anyhow::Result<Vec<Address>> {
        Ok(self.local.addresses(KeyPurpose::Relayer).await?)
    }

    /// Serves the `signer` commands until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let server = SignerHandlers::new(self.custody.clone())
            .server(&self.bus, self.pool.clone())
            .context("registering the signer commands")?;
        let commands = shutdown.spawn(server.run(shutdown.token()));
        shutdown.cancelled().await;
        let drained = shutdown.drain(Duration::from_secs(10)).await;
        if !drained {
            tracing::warn!("signer tasks outlived the shutdown grace");
        }
        self.bus.close();
        match commands.await {
            Ok(result) => result.context("serving signer commands"),
            Err(error) if error.is_cancelled() => Ok(()),
            Err(error) => Err(error).context("signer command task"),
        }
    }
}
