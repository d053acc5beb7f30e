//! The client's DNS resolver: resolves a host name once and hands the connector only the
//! addresses the [`TargetPolicy`] allows, so the connection goes to an address that was checked.
//!
//! A name with no allowed address fails with the first refused address's class (so the caller
//! learns that `metadata.internal` resolves to a link-local address); a name that does not
//! resolve fails as unresolvable. Both errors travel through the HTTP client as the error's
//! source and are recovered intact by [`super::Outbound`].

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{OutboundError, TargetPolicy};

/// The resolver the guarded client uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckingResolver {
    policy: TargetPolicy,
}

impl CheckingResolver {
    pub(crate) fn new(policy: TargetPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for CheckingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolve(policy, &host).await?;
            let addresses: Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

/// Resolves `host` (port 0: the connector puts the URL's port in) and keeps the allowed
/// addresses; an error when none is left.
pub(crate) async fn resolve(
    policy: TargetPolicy,
    host: &str,
) -> Result<Vec<SocketAddr>, OutboundError> {
    let unresolvable = |reason: String| OutboundError::Unresolvable {
        host: host.chars().take(253).collect(),
        reason,
    };
    let found = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|error| unresolvable(error.to_string()))?;
    let mut refused = None;
    let allowed: Vec<SocketAddr> = found
        .filter(|address| match policy.check_ip(address.ip()) {
            Ok(()) => true,
            Err(error) => {
                refused.get_or_insert(error);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(refused.unwrap_or_else(|| unresolvable("no addresses".into())));
    }
    Ok(allowed)
}
