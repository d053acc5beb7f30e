//! The chain watcher: follows each chain's blocks `confirmations` behind its head and reads
//! every `Transfer` and `AuthorizationUsed` log of the watched tokens (`eth_getLogs`, at most
//! `watch.blocks_per_pass_max` blocks at a time).
//!
//! One pass per chain every `watch.interval_ms`, under a session advisory lock on that chain (so
//! several replicas are safe: the others skip it). A pass:
//!
//! 1. **Reorganisations.** The hash of the last block of each scanned range is stored
//!    (`settlement.watched_blocks`, the last `watch.blocks_remembered`). If the chain no longer
//!    has the newest stored hash, stored hashes are compared downwards until one matches: the
//!    fork's base. Every deposit above it whose block hash is no longer the chain's is reversed
//!    (the ledger takes it back, with the reason), and the cursor goes back to the base, so the
//!    blocks after it are scanned again: a transfer that reappears in another block is credited
//!    again, as a new deposit.
//! 2. **Scan** `cursor ..= min(head − confirmations, cursor + blocks_per_pass_max − 1)`: the
//!    addresses the logs name are looked up in the policy service (`LookupWallets`), and for our
//!    agents' wallets:
//!    - a `Transfer` into a wallet is a deposit ([`crate::deposits`]), stored then credited, once
//!      per (network, transaction, log index, block hash);
//!    - an `AuthorizationUsed` of a wallet in a transaction awx did not send marks the payment
//!      with that nonce paid by that transaction (the policy service captures it and the item is
//!      `settled_externally`, so the batch worker never nets it); a nonce awx never issued is an
//!      alert;
//!    - a `Transfer` out of a wallet in a transaction awx did not send, and that used no
//!      authorization awx issued, is an alert (a wallet key was misused).
//!
//!    A deposit recorded in the range (by the faucet, ahead of the watcher) that the chain's logs
//!    no longer show is reversed.
//! 3. **Advance**: the range's last block hash and the cursor are stored in one transaction,
//!    after everything in the range is recorded. A crash before that scans the range again,
//!    which finds every deposit recorded (nothing is credited twice, no block is skipped).
//!
//! An RPC call that fails or takes longer than `watch.rpc_timeout_ms` fails the pass; the chain
//! is retried after a wait that doubles up to `watch.backoff_max_ms`. A node that refuses a log
//! range gets half of it. Alerts go to `settlement.chain_alerts`, the metric
//! `settlement_watcher_alerts_total{kind}` and the error log.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use awx_api::ledger::DepositSource;
use awx_api::policy::{
    AuthorizationUse, AuthorizationUsed, LOOKUP_WALLETS_MAX, LookupWallets, WalletOwner,
};
use awx_chain::{ChainError, TokenEvent, TokenLog};
use awx_types::Amount;
use awx_x402::{Address, B256};
use sqlx::Connection as _;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::batch::fail_point;
use crate::config::WatchSettings;
use crate::deposits::SeenDeposit;
use crate::facilitator::{Chain, Facilitator, FacilitatorError};
use crate::settle::lower;

/// What one pass did on one chain (for tests, logs and the benchmark).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WatchReport {
    /// Another replica held the chain's lock: nothing was done.
    pub skipped: bool,
    /// The chain's head when the pass began.
    pub head: u64,
    /// The blocks scanned (`None` when the cursor was already at the confirmed head).
    pub scanned: Option<(u64, u64)>,
    /// Logs read.
    pub logs: usize,
    /// Deposits credited (or found credited) in the range.
    pub deposits: usize,
    /// Deposits reversed.
    pub reversed: usize,
    /// Whether a reorganisation was found.
    pub reorg: bool,
    /// Authorizations of our wallets used by someone else.
    pub authorizations: usize,
    /// Alerts raised.
    pub alerts: usize,
}

/// The watcher.
#[derive(Debug)]
pub struct Watcher {
    facilitator: Arc<Facilitator>,
    decimals: Mutex<BTreeMap<(u64, Address), u8>>,
}

fn chain_error(error: ChainError) -> FacilitatorError {
    FacilitatorError::Chain(error.to_string())
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Watcher {
    /// A watcher over the facilitator's chains.
    pub fn new(facilitator: Arc<Facilitator>) -> Self {
        Self { facilitator, decimals: Mutex::new(BTreeMap::new()) }
    }

    fn settings(&self) -> &WatchSettings {
        &self.facilitator.settings.watch
    }

    /// An RPC call bounded by `watch.rpc_timeout_ms`.
    async fn rpc<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, ChainError>>,
    ) -> Result<T, FacilitatorError> {
        let limit = Duration::from_millis(self.settings().rpc_timeout_ms);
        match tokio::time::timeout(limit, call).await {
            Ok(result) => result.map_err(chain_error),
            Err(_) => Err(FacilitatorError::Chain(format!("{what} took longer than {limit:?}"))),
        }
    }

    /// One pass on every chain; a chain that fails is reported in its place.
    pub async fn run_once(&self) -> Vec<(String, Result<WatchReport, FacilitatorError>)> {
        let mut reports = Vec::new();
        for chain in self.facilitator.chains() {
            reports.push((chain.network.to_string(), self.pass_locked(chain).await));
        }
        reports
    }

    /// One pass on `chain` under its advisory lock (skipped when another replica holds it).
    pub async fn pass_locked(&self, chain: &Chain) -> Result<WatchReport, FacilitatorError> {
        let mut lock = self.facilitator.pool.acquire().await?.detach();
        let key = format!("awx.watch:{}", chain.network);
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
                .bind(&key)
                .fetch_one(&mut lock)
                .await?;
        if !locked {
            return Ok(WatchReport { skipped: true, ..WatchReport::default() });
        }
        let result = self.pass(chain).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut lock)
            .await;
        if let Err(error) = unlocked {
            tracing::warn!(error.message = %error, "releasing the watcher's lock failed; closing its connection");
        }
        let _ = lock.close().await;
        result
    }

    async fn pass(&self, chain: &Chain) -> Result<WatchReport, FacilitatorError> {
        let network = chain.network.to_string();
        let head = self.rpc("eth_blockNumber", chain.client.block_number()).await?;
        let mut report = WatchReport { head, ..WatchReport::default() };
        let confirmed = head.checked_sub(chain.confirmations);
        let mut cursor = self.cursor(chain, confirmed.unwrap_or(0)).await?;
        if let Some(base) = self.find_fork(chain).await? {
            report.reorg = true;
            report.reversed += self.reverse_above(chain, base).await?;
            cursor = base.saturating_add(1);
            sqlx::query("DELETE FROM settlement.watched_blocks WHERE network = $1 AND number > $2")
                .bind(&network)
                .bind(to_i64(base))
                .execute(&self.facilitator.pool)
                .await?;
            self.set_cursor(chain, cursor).await?;
        }
        let Some(confirmed) = confirmed.filter(|confirmed| *confirmed >= cursor) else {
            return Ok(report);
        };
        let planned_to =
            confirmed.min(cursor.saturating_add(self.settings().blocks_per_pass_max - 1));
        let mut to = planned_to;
        // The hash of the range's last block, read before the logs: a log of that block with
        // another hash means the chain changed under the pass (it is tried again).
        let to_hash = self
            .rpc("eth_getBlockByNumber", chain.client.block_hash(to))
            .await?
            .ok_or_else(|| FacilitatorError::Chain(format!("block {to} is missing")))?;
        let logs = loop {
            match self
                .rpc("eth_getLogs", chain.client.token_logs(&chain.watch_tokens, cursor, to))
                .await
            {
                Ok(logs) => break logs,
                Err(error) if to > cursor => {
                    to = cursor.saturating_add((to - cursor) / 2);
                    tracing::warn!(%network, from = cursor, to, error.message = %error, "the node refused a log range; halving it");
                }
                Err(error) => return Err(error),
            }
        };
        let to_hash = if to == planned_to {
            to_hash
        } else {
            // The range was halved: read the new last block's hash.
            self.rpc("eth_getBlockByNumber", chain.client.block_hash(to))
                .await?
                .ok_or_else(|| FacilitatorError::Chain(format!("block {to} is missing")))?
        };
        if logs.iter().any(|log| log.block_number == to && log.block_hash != to_hash) {
            return Err(FacilitatorError::Chain(format!(
                "block {to} changed while it was read (a reorganisation in progress)"
            )));
        }
        report.scanned = Some((cursor, to));
        report.logs = logs.len();
        self.scan(chain, &logs, cursor, to, &mut report).await?;
        self.advance(chain, to, to_hash).await?;
        Ok(report)
    }

    /// The chain's cursor, created at `watch.from_block` (or the confirmed head) the first time.
    async fn cursor(&self, chain: &Chain, confirmed: u64) -> Result<u64, FacilitatorError> {
        let start = chain.watch_from_block.unwrap_or(confirmed);
        let next: i64 = sqlx::query_scalar(
            "WITH inserted AS (
               INSERT INTO settlement.watch_cursors (network, next_block) VALUES ($1, $2)
               ON CONFLICT (network) DO NOTHING RETURNING next_block)
             SELECT next_block FROM inserted
             UNION ALL SELECT next_block FROM settlement.watch_cursors WHERE network = $1
             LIMIT 1",
        )
        .bind(chain.network.to_string())
        .bind(to_i64(start))
        .fetch_one(&self.facilitator.pool)
        .await?;
        Ok(to_u64(next))
    }

    async fn set_cursor(&self, chain: &Chain, next: u64) -> Result<(), FacilitatorError> {
        sqlx::query(
            "UPDATE settlement.watch_cursors SET next_block = $2, updated_at = now() WHERE network = $1",
        )
        .bind(chain.network.to_string())
        .bind(to_i64(next))
        .execute(&self.facilitator.pool)
        .await?;
        Ok(())
    }

    /// The base of a reorganisation (the newest stored block the chain still has), or `None`
    /// when the newest stored block is still the chain's.
    async fn find_fork(&self, chain: &Chain) -> Result<Option<u64>, FacilitatorError> {
        let stored: Vec<(i64, String)> = sqlx::query_as(
            "SELECT number, hash FROM settlement.watched_blocks WHERE network = $1 ORDER BY number DESC",
        )
        .bind(chain.network.to_string())
        .fetch_all(&self.facilitator.pool)
        .await?;
        let mut lowest = None;
        for (index, (number, hash)) in stored.iter().enumerate() {
            let number = to_u64(*number);
            let canonical =
                self.rpc("eth_getBlockByNumber", chain.client.block_hash(number)).await?;
            if canonical.is_some_and(|canonical| format!("{canonical:#x}") == *hash) {
                return Ok((index > 0).then_some(number));
            }
            lowest = Some(number);
        }
        match lowest {
            None => Ok(None),
            Some(lowest) => {
                // Deeper than every stored hash: scan again from below the oldest one.
                tracing::error!(network = %chain.network, lowest, "a reorganisation deeper than the remembered blocks; scanning again from there");
                Ok(Some(lowest.saturating_sub(1)))
            }
        }
    }

    /// Reverses every deposit above `base` whose block is no longer the chain's; the count.
    async fn reverse_above(&self, chain: &Chain, base: u64) -> Result<usize, FacilitatorError> {
        let rows: Vec<(Uuid, i64, String)> = sqlx::query_as(
            "SELECT id, block_number, block_hash FROM settlement.deposits
             WHERE network = $1 AND block_number > $2 AND state <> 'reversed' ORDER BY block_number",
        )
        .bind(chain.network.to_string())
        .bind(to_i64(base))
        .fetch_all(&self.facilitator.pool)
        .await?;
        let mut canonical: BTreeMap<i64, Option<B256>> = BTreeMap::new();
        let mut reversed = 0;
        for (id, number, hash) in rows {
            let current = match canonical.get(&number) {
                Some(current) => *current,
                None => {
                    let current = self
                        .rpc("eth_getBlockByNumber", chain.client.block_hash(to_u64(number)))
                        .await?;
                    canonical.insert(number, current);
                    current
                }
            };
            if current.is_some_and(|current| format!("{current:#x}") == hash) {
                continue;
            }
            let reason = format!(
                "reorganisation: block {number} ({hash}) is no longer on the chain{}",
                current.map(|current| format!(" (now {current:#x})")).unwrap_or_default()
            );
            self.facilitator.reverse_deposit(id, &reason).await?;
            reversed += 1;
        }
        Ok(reversed)
    }

    /// Records what `logs` (blocks `from..=to`) say of our wallets.
    async fn scan(
        &self,
        chain: &Chain,
        logs: &[TokenLog],
        from: u64,
        to: u64,
        report: &mut WatchReport,
    ) -> Result<(), FacilitatorError> {
        let network = chain.network.to_string();
        let wallets = self.wallets(logs).await?;
        let touching: Vec<&TokenLog> = logs
            .iter()
            .filter(|log| match &log.event {
                TokenEvent::Transfer { from, to, .. } => {
                    wallets.contains_key(from) || wallets.contains_key(to)
                }
                TokenEvent::AuthorizationUsed { authorizer, .. } => {
                    wallets.contains_key(authorizer)
                }
            })
            .collect();
        let hashes: Vec<String> = touching
            .iter()
            .map(|log| format!("{:#x}", log.tx_hash))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let ours: BTreeSet<String> =
            sqlx::query_scalar("SELECT hash FROM settlement.chain_txs WHERE hash = ANY($1)")
                .bind(&hashes)
                .fetch_all(&self.facilitator.pool)
                .await?
                .into_iter()
                .collect();

        // Authorizations first: a transfer out of a wallet is explained by an authorization awx
        // issued in the same transaction.
        let mut explained: BTreeSet<(B256, Address)> = BTreeSet::new();
        for log in &touching {
            let TokenEvent::AuthorizationUsed { authorizer, nonce } = log.event else { continue };
            if ours.contains(&format!("{:#x}", log.tx_hash)) {
                explained.insert((log.tx_hash, authorizer));
                continue;
            }
            report.authorizations += 1;
            if self.authorization_used(chain, log, authorizer, nonce, report).await? {
                explained.insert((log.tx_hash, authorizer));
            }
        }

        let mut seen: BTreeSet<(B256, u64, B256)> = BTreeSet::new();
        for log in &touching {
            let TokenEvent::Transfer { from: sender, to: recipient, value } = log.event else {
                continue;
            };
            if let Some(owner) = wallets.get(&recipient) {
                let amount = Amount::from_atomic(u128::try_from(value).map_err(|_| {
                    FacilitatorError::Inconsistent(format!(
                        "a transfer of {value} in {:#x} does not fit an amount",
                        log.tx_hash
                    ))
                })?);
                if !amount.is_zero() {
                    let decimals = self.decimals(chain, log.token).await?;
                    let deposit = SeenDeposit {
                        network: network.clone(),
                        token: log.token,
                        decimals,
                        tx_hash: log.tx_hash,
                        log_index: log.log_index,
                        block_number: log.block_number,
                        block_hash: log.block_hash,
                        from: sender,
                        to: recipient,
                        owner: owner.owner,
                        agent: owner.agent,
                        amount,
                        source: DepositSource::Chain,
                    };
                    self.facilitator.record_deposit(&deposit).await?;
                    seen.insert((log.tx_hash, log.log_index, log.block_hash));
                    report.deposits += 1;
                    fail_point("watch_after_deposit").await;
                }
            }
            if wallets.contains_key(&sender)
                && !ours.contains(&format!("{:#x}", log.tx_hash))
                && !explained.contains(&(log.tx_hash, sender))
            {
                let detail = format!(
                    "{value} of {} left the agent wallet {sender} to {recipient} in a transaction awx did not sign",
                    log.token
                );
                self.alert(chain, "unsigned_outflow", log, sender, &detail).await?;
                report.alerts += 1;
            }
        }

        // Deposits recorded in the range (by the faucet, ahead of the watcher) that the chain no
        // longer shows.
        let recorded: Vec<(Uuid, String, i64, String, i64)> = sqlx::query_as(
            "SELECT id, tx_hash, log_index, block_hash, block_number FROM settlement.deposits
             WHERE network = $1 AND block_number BETWEEN $2 AND $3 AND state <> 'reversed'",
        )
        .bind(&network)
        .bind(to_i64(from))
        .bind(to_i64(to))
        .fetch_all(&self.facilitator.pool)
        .await?;
        for (id, tx_hash, log_index, block_hash, number) in recorded {
            let key = (
                tx_hash.parse::<B256>().unwrap_or_default(),
                to_u64(log_index),
                block_hash.parse::<B256>().unwrap_or_default(),
            );
            if seen.contains(&key) {
                continue;
            }
            let reason = format!(
                "reorganisation: the transfer is no longer in block {number} ({block_hash})"
            );
            self.facilitator.reverse_deposit(id, &reason).await?;
            report.reversed += 1;
        }
        Ok(())
    }

    /// An authorization of one of our wallets used in a transaction awx did not send: `true`
    /// when awx issued it.
    async fn authorization_used(
        &self,
        chain: &Chain,
        log: &TokenLog,
        authorizer: Address,
        nonce: B256,
        report: &mut WatchReport,
    ) -> Result<bool, FacilitatorError> {
        let network = chain.network.to_string();
        let nonce_text = format!("{nonce:#x}");
        // A queued item: paid by this transaction, never to be netted.
        let item: Option<String> = sqlx::query_scalar(
            "WITH marked AS (
               UPDATE settlement.items SET state = 'settled_externally', settled_tx = $4, settled_at = now(), updated_at = now()
               WHERE network = $1 AND payer = $2 AND nonce = $3 AND state = 'queued'
               RETURNING state)
             SELECT state FROM marked
             UNION ALL SELECT state FROM settlement.items WHERE network = $1 AND payer = $2 AND nonce = $3
             LIMIT 1",
        )
        .bind(&network)
        .bind(lower(authorizer))
        .bind(&nonce_text)
        .bind(format!("{:#x}", log.tx_hash))
        .fetch_optional(&self.facilitator.pool)
        .await?;
        if item.is_some() {
            tracing::info!(%network, payer = %authorizer, nonce = %nonce_text, tx_hash = %log.tx_hash,
                "a captured payment's authorization was submitted on chain outside awx");
            return Ok(true);
        }
        let net_transfer: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM settlement.net_transfers WHERE network = $1 AND payer = $2 AND nonce = $3)",
        )
        .bind(&network)
        .bind(lower(authorizer))
        .bind(&nonce_text)
        .fetch_one(&self.facilitator.pool)
        .await?;
        if net_transfer {
            return Ok(true);
        }
        let command = AuthorizationUsed {
            network,
            token: log.token,
            payer: authorizer,
            nonce,
            tx_hash: log.tx_hash,
        };
        let timeout = Duration::from_millis(self.facilitator.settings.policy_timeout_ms);
        let reply = self
            .facilitator
            .bus
            .send(&command, timeout)
            .await
            .map_err(|error| FacilitatorError::PolicyUnavailable(error.to_string()))?;
        match reply.outcome {
            AuthorizationUse::Captured | AuthorizationUse::Recorded => Ok(true),
            AuthorizationUse::Unexpected => {
                let detail = format!(
                    "the authorization of payment {} (nonce {nonce_text}) was used on chain in a state that should not allow it",
                    reply.payment_id.map(|id| id.to_string()).unwrap_or_default()
                );
                self.alert(chain, "unexpected_use", log, authorizer, &detail).await?;
                report.alerts += 1;
                Ok(true)
            }
            AuthorizationUse::Unknown => {
                let detail = format!(
                    "the wallet {authorizer} used nonce {nonce_text}, which awx never issued"
                );
                self.alert(chain, "unknown_nonce", log, authorizer, &detail).await?;
                report.alerts += 1;
                Ok(false)
            }
        }
    }

    /// Stores an alert (once per log and kind) and raises it.
    async fn alert(
        &self,
        chain: &Chain,
        kind: &'static str,
        log: &TokenLog,
        wallet: Address,
        detail: &str,
    ) -> Result<(), FacilitatorError> {
        let inserted = sqlx::query(
            "INSERT INTO settlement.chain_alerts (id, network, kind, tx_hash, log_index, wallet, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(chain.network.to_string())
        .bind(kind)
        .bind(format!("{:#x}", log.tx_hash))
        .bind(to_i64(log.log_index))
        .bind(lower(wallet))
        .bind(detail)
        .execute(&self.facilitator.pool)
        .await?;
        if inserted.rows_affected() > 0 {
            metrics::counter!("settlement_watcher_alerts_total", "kind" => kind, "network" => chain.network.to_string())
                .increment(1);
            tracing::error!(network = %chain.network, kind, tx_hash = %log.tx_hash, %wallet, detail,
                "ALERT: an agent wallet was used outside awx");
        }
        Ok(())
    }

    /// The agents' wallets among the addresses `logs` name.
    async fn wallets(
        &self,
        logs: &[TokenLog],
    ) -> Result<BTreeMap<Address, WalletOwner>, FacilitatorError> {
        let mut addresses = BTreeSet::new();
        for log in logs {
            match log.event {
                TokenEvent::Transfer { from, to, .. } => {
                    addresses.insert(from);
                    addresses.insert(to);
                }
                TokenEvent::AuthorizationUsed { authorizer, .. } => {
                    addresses.insert(authorizer);
                }
            }
        }
        addresses.remove(&Address::ZERO);
        let addresses: Vec<Address> = addresses.into_iter().collect();
        let timeout = Duration::from_millis(self.facilitator.settings.policy_timeout_ms);
        let mut wallets = BTreeMap::new();
        for chunk in addresses.chunks(LOOKUP_WALLETS_MAX) {
            let reply = self
                .facilitator
                .bus
                .send(&LookupWallets { addresses: chunk.to_vec() }, timeout)
                .await
                .map_err(|error| FacilitatorError::PolicyUnavailable(error.to_string()))?;
            for wallet in reply.wallets {
                wallets.insert(wallet.address, wallet);
            }
        }
        Ok(wallets)
    }

    async fn decimals(&self, chain: &Chain, token: Address) -> Result<u8, FacilitatorError> {
        let key = (chain.chain_id, token);
        if let Some(decimals) = self.decimals.lock().await.get(&key) {
            return Ok(*decimals);
        }
        let decimals = self.rpc("decimals()", chain.client.token(token).decimals()).await?;
        self.decimals.lock().await.insert(key, decimals);
        Ok(decimals)
    }

    /// Stores the range's last block hash and moves the cursor past it, in one transaction.
    async fn advance(&self, chain: &Chain, to: u64, hash: B256) -> Result<(), FacilitatorError> {
        let network = chain.network.to_string();
        let mut tx = self.facilitator.pool.begin().await?;
        sqlx::query(
            "INSERT INTO settlement.watched_blocks (network, number, hash) VALUES ($1, $2, $3)
             ON CONFLICT (network, number) DO UPDATE SET hash = excluded.hash",
        )
        .bind(&network)
        .bind(to_i64(to))
        .bind(format!("{hash:#x}"))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM settlement.watched_blocks WHERE network = $1 AND number < $2")
            .bind(&network)
            .bind(to_i64(to.saturating_sub(self.settings().blocks_remembered)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE settlement.watch_cursors SET next_block = $2, updated_at = now() WHERE network = $1",
        )
        .bind(&network)
        .bind(to_i64(to.saturating_add(1)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::gauge!("settlement_watcher_block", "network" => network)
            .set(u32::try_from(to).unwrap_or(u32::MAX));
        Ok(())
    }
}

/// Runs passes on every chain every `watch.interval_ms` until `cancel`; a failing chain waits
/// twice as long each time (up to `watch.backoff_max_ms`) and never has a block skipped.
pub async fn run(watcher: Arc<Watcher>, cancel: CancellationToken) {
    let settings = watcher.settings().clone();
    let interval = Duration::from_millis(settings.interval_ms);
    let backoff_max = Duration::from_millis(settings.backoff_max_ms);
    let mut waits: BTreeMap<String, (Duration, tokio::time::Instant)> = BTreeMap::new();
    loop {
        let now = tokio::time::Instant::now();
        for chain in watcher.facilitator.chains() {
            let network = chain.network.to_string();
            if waits.get(&network).is_some_and(|(_, until)| *until > now) {
                continue;
            }
            // Catch up without waiting while the chain is far ahead.
            let mut result = watcher.pass_locked(chain).await;
            while let Ok(report) = &result {
                let behind = report
                    .scanned
                    .is_some_and(|(_, to)| to.saturating_add(chain.confirmations) < report.head);
                if !behind || cancel.is_cancelled() {
                    break;
                }
                result = watcher.pass_locked(chain).await;
            }
            match result {
                Ok(_) => {
                    waits.remove(&network);
                }
                Err(error) => {
                    let wait = waits
                        .get(&network)
                        .map_or(interval, |(wait, _)| wait.saturating_mul(2))
                        .min(backoff_max);
                    tracing::warn!(%network, error.message = %error, wait_ms = wait.as_millis(), "the chain watcher failed; retrying");
                    metrics::counter!("settlement_watcher_errors_total", "network" => network.clone())
                        .increment(1);
                    waits.insert(network, (wait, tokio::time::Instant::now() + wait));
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
