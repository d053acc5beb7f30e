//! Replicas starting at once on one database create exactly `relayer_count` relayers, and agree
//! on them.

use awx_signer_service::SignerService;
use awx_test_support::{RedisNamespace, TestDb};

use crate::helpers::{kek, settings, stored_keys};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_starting_together_create_exactly_the_relayers_wanted() {
    let db = TestDb::new().await;
    let namespace = RedisNamespace::new();
    let mut settings = settings(&db, &namespace);
    settings.relayer_count = 3;

    let starts: Vec<_> = (0..2)
        .map(|_| tokio::spawn(SignerService::build_with_kek(settings.clone(), kek())))
        .collect();
    let mut services = Vec::new();
    for start in starts {
        services.push(start.await.unwrap().unwrap());
    }

    let stored = stored_keys(&db.pool).await;
    assert_eq!(stored.len(), 3, "exactly relayer_count keys");
    assert!(stored.iter().all(|key| key.purpose == "relayer"));
    let first = services[0].relayers().await.unwrap();
    assert_eq!(first.len(), 3);
    assert_eq!(services[1].relayers().await.unwrap(), first, "both replicas see the same");
    let stored_addresses: Vec<String> = stored.iter().map(|key| key.address.clone()).collect();
    let expected: Vec<String> = first.iter().map(|address| format!("{address:#x}")).collect();
    assert_eq!(stored_addresses, expected, "oldest first");
}
