//! `awx admin`: operator commands that work on the database directly.

use std::io::Write as _;

use anyhow::Context as _;
use awx_gateway::accounts::{self, AccountError};
use awx_gateway::config::AuthSettings;
use secrecy::SecretString;

/// Options of `awx admin`.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// The Postgres URL of the platform's database (before or after the subcommand).
    #[arg(
        long,
        global = true,
        env = "AWX_DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/awx"
    )]
    database_url: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AdminCommand {
    /// Create the first account and print its admin key (refused once any account exists).
    Bootstrap {
        /// The account's name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Create another account and print its admin key.
    CreateAccount {
        /// The account's name.
        #[arg(long)]
        name: String,
    },
}

impl AdminArgs {
    /// The database URL in effect.
    #[cfg(test)]
    pub(crate) fn database_url(&self) -> &str {
        &self.database_url
    }
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let settings = awx_service_kit::db::DatabaseSettings {
        url: SecretString::from(args.database_url),
        max_connections: 2,
        ..awx_service_kit::db::DatabaseSettings::default()
    };
    let pool =
        awx_service_kit::db::connect(&settings).await.context("connecting to the database")?;
    let auth = AuthSettings::default();
    let (account, key) = match args.command {
        AdminCommand::Bootstrap { name } => match accounts::bootstrap(&pool, &auth, &name).await {
            Err(AccountError::AlreadyBootstrapped) => {
                anyhow::bail!(
                    "an account already exists: bootstrap only creates the first one (use `awx admin create-account`)"
                )
            }
            other => other.context("bootstrapping")?,
        },
        AdminCommand::CreateAccount { name } => {
            accounts::create_account(&pool, &auth, &name).await.context("creating the account")?
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "account  {} ({})", awx_types::AccountId::from_uuid(account.id), account.name)?;
    writeln!(out, "key id   {}", awx_types::ApiKeyId::from_uuid(key.row.id))?;
    writeln!(out, "api key  {}", key.plaintext.expose())?;
    writeln!(out, "The API key is shown only now: store it. It has the admin scope.")?;
    Ok(())
}
