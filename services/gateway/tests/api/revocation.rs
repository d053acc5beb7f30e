//! Revocation across replicas, within the stated bound.

use std::time::{Duration, Instant};

use awx_gateway::auth::key::Scope;

use crate::helpers::{Backing, TestApp, error_code};

#[tokio::test]
async fn a_revoked_key_is_refused_by_another_replica_within_the_bound() {
    let backing = Backing::new().await;
    let bound = Duration::from_secs(1);
    let a = TestApp::replica(&backing, |s| s.auth.revocation_check_seconds = 1).await;
    let b = TestApp::replica(&backing, |s| s.auth.revocation_check_seconds = 1).await;
    let (_, admin) = a.account("acme").await;
    let (key_id, key) = a.create_key(&admin, &[Scope::Agent]).await;
    // Replica B verifies and remembers the key.
    assert_eq!(b.get("/api/v1/ping", &key).await.status(), 200);
    assert_eq!(b.get("/api/v1/ping", &key).await.status(), 200);

    let response = a
        .client
        .delete(a.url(&format!("/api/v1/keys/{key_id}")))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revoked_at = Instant::now();
    loop {
        let response = b.get("/api/v1/ping", &key).await;
        if response.status() == 401 {
            assert_eq!(error_code(response).await.1, "api_key_revoked");
            break;
        }
        // The bound, plus the time of one request round trip.
        assert!(
            revoked_at.elapsed() < bound + Duration::from_millis(500),
            "replica B still accepts the key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it stays refused on both.
    assert_eq!(a.get("/api/v1/ping", &key).await.status(), 401);
    assert_eq!(b.get("/api/v1/ping", &key).await.status(), 401);
}
