//! The credential store contract on every backend (memory, PostgreSQL,
//! MongoDB), and two servers over one database sharing logins.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use ems_core::id::UserId;
use ems_http::auth::{CredentialStore, RefreshRecord, RefreshUse};
use ems_http::MemoryCredentials;
use sha2::{Digest, Sha256};
use uuid::Uuid;

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

async fn contract(store: Arc<dyn CredentialStore>) {
    let now = Utc
        .with_ymd_and_hms(2030, 1, 1, 10, 0, 0)
        .single()
        .expect("instant");
    let user = UserId::new();

    // Passwords.
    assert_eq!(store.password(user).await.expect("read"), None);
    store.set_password(user, "phc-1".into()).await.expect("set");
    store
        .set_password(user, "phc-2".into())
        .await
        .expect("replace");
    assert_eq!(
        store.password(user).await.expect("read").as_deref(),
        Some("phc-2")
    );

    // Refresh tokens: spent once; a replay revokes the family.
    let family = Uuid::now_v7();
    let record = |name: &str, family: Uuid, expires: chrono::DateTime<Utc>| RefreshRecord {
        digest: digest(name),
        family,
        user,
        expires_at: expires,
    };
    let later = now + Duration::days(7);
    store
        .insert_refresh(record("a1", family, later))
        .await
        .expect("insert");
    store
        .insert_refresh(record("a2", family, later))
        .await
        .expect("insert");
    match store.use_refresh(digest("a1"), now).await.expect("use") {
        RefreshUse::Fresh(r) => {
            assert_eq!(r.family, family);
            assert_eq!(r.user, user);
        }
        other => panic!("a live token is fresh, got {other:?}"),
    }
    assert!(matches!(
        store.use_refresh(digest("a1"), now).await.expect("use"),
        RefreshUse::Reused { family: f, .. } if f == family
    ));
    assert!(
        matches!(
            store.use_refresh(digest("a2"), now).await.expect("use"),
            RefreshUse::Reused { .. }
        ),
        "the whole family is revoked"
    );
    assert_eq!(
        store.use_refresh(digest("never"), now).await.expect("use"),
        RefreshUse::Unknown
    );

    // Expiry.
    let old = Uuid::now_v7();
    store
        .insert_refresh(record("old", old, now - Duration::seconds(1)))
        .await
        .expect("insert");
    assert_eq!(
        store.use_refresh(digest("old"), now).await.expect("use"),
        RefreshUse::Unknown
    );

    // Logout revokes a family; revoke_user revokes all of a user's.
    let f2 = Uuid::now_v7();
    store
        .insert_refresh(record("b1", f2, later))
        .await
        .expect("insert");
    assert!(store.revoke_family(f2).await.expect("revoke"));
    assert!(!store
        .revoke_family(Uuid::now_v7())
        .await
        .expect("revoke unknown"));
    assert!(matches!(
        store.use_refresh(digest("b1"), now).await.expect("use"),
        RefreshUse::Reused { .. }
    ));
    let f3 = Uuid::now_v7();
    store
        .insert_refresh(record("c1", f3, later))
        .await
        .expect("insert");
    store.revoke_user(user).await.expect("revoke user");
    assert!(matches!(
        store.use_refresh(digest("c1"), now).await.expect("use"),
        RefreshUse::Reused { .. }
    ));

    // Reset tokens work once and expire.
    store
        .insert_reset(digest("r1"), user, now + Duration::minutes(30))
        .await
        .expect("insert");
    assert_eq!(
        store.take_reset(digest("r1"), now).await.expect("take"),
        Some(user)
    );
    assert_eq!(
        store.take_reset(digest("r1"), now).await.expect("take"),
        None
    );
    store
        .insert_reset(digest("r2"), user, now + Duration::minutes(30))
        .await
        .expect("insert");
    assert_eq!(
        store
            .take_reset(digest("r2"), now + Duration::minutes(31))
            .await
            .expect("take"),
        None
    );

    // Concurrent uses of one token: exactly one is fresh.
    let f4 = Uuid::now_v7();
    store
        .insert_refresh(record("race", f4, later))
        .await
        .expect("insert");
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.use_refresh(digest("race"), now).await })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        if let RefreshUse::Fresh(_) = t.await.expect("task").expect("use") {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "one winner among concurrent refreshes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_credentials_keep_the_contract() {
    contract(Arc::new(MemoryCredentials::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_credentials_keep_the_contract() {
    let store = ems_storage_postgres::testing::fresh_store("ems_test", 8)
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let credentials = ems_http::auth::PostgresCredentials::new(store.pool().clone());
    credentials.ensure_schema().await.expect("schema");
    credentials.ensure_schema().await.expect("schema twice");
    contract(Arc::new(credentials)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_credentials_keep_the_contract() {
    let store = ems_storage_mongo::testing::fresh_store("ems_test")
        .await
        .expect("the test MongoDB (MONGODB_URL) is reachable");
    let credentials = ems_http::auth::MongoCredentials::new(store.database().clone());
    credentials.ensure_indexes().await.expect("indexes");
    contract(Arc::new(credentials)).await;
}

/// Two servers over one PostgreSQL database: an account registered on one logs
/// in on the other, and a refresh token spent on one is a replay on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_logins_through_postgres() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    let options = ems_storage_postgres::testing::fresh_database("ems_test")
        .await
        .expect("the test PostgreSQL (DATABASE_URL) is reachable");
    let mut routers = Vec::new();
    for _ in 0..2 {
        let store = ems_storage_postgres::testing::pool_store(options.clone(), 4)
            .await
            .expect("pool");
        store.migrate().await.expect("migrations");
        let credentials = ems_http::auth::PostgresCredentials::new(store.pool().clone());
        credentials.ensure_schema().await.expect("schema");
        let ems = ems_core::Ems::builder(Arc::new(store))
            .build()
            .expect("ems");
        let app =
            ems_http::AppBuilder::new(ems, "postgres", ems_http::AuthConfig::new(vec![3u8; 32]))
                .credentials(Arc::new(credentials))
                .build()
                .expect("app");
        routers.push(app.router());
    }
    async fn post(router: &axum::Router, path: &str, body: Value) -> (StatusCode, Value) {
        let mut req = Request::post(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                1,
            ))));
        let res = router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
    let (s, _) = post(
        &routers[0],
        "/auth/register",
        json!({ "email": "shared@test.io", "password": "a-long-password", "display_name": "Shared" }),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, tokens) = post(
        &routers[1],
        "/auth/login",
        json!({ "email": "shared@test.io", "password": "a-long-password" }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let first = tokens["refresh_token"].clone();
    let (s, _) = post(
        &routers[1],
        "/auth/refresh",
        json!({ "refresh_token": first }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = post(
        &routers[0],
        "/auth/refresh",
        json!({ "refresh_token": first }),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a replay on the other server is caught"
    );
}
