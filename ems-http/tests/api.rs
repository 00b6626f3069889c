//! The HTTP API in process: auth, the sale path, conventions (envelope, ETag,
//! idempotency keys), webhooks, operations endpoints, and the OpenAPI document
//! against the routes.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Duration;
use common::{TestApp, PASSWORD};
use serde_json::{json, Value};

#[tokio::test]
async fn register_login_and_me() {
    let t = TestApp::new().await;
    let r = t
        .post(
            "/auth/register",
            None,
            json!({ "email": "Ana@Example.com", "password": "a-long-password", "display_name": "Ana" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["user"]["email"], "ana@example.com");
    assert_eq!(r.body["user"]["role"], "customer");
    let token = r.body["tokens"]["access_token"].as_str().expect("token");

    let me = t.get("/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["email"], "ana@example.com");

    let again = t
        .post(
            "/auth/register",
            None,
            json!({ "email": "ana@example.com", "password": "a-long-password", "display_name": "Ana" }),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "already_exists");

    let weak = t
        .post(
            "/auth/register",
            None,
            json!({ "email": "bo@example.com", "password": "short", "display_name": "Bo" }),
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(weak.body["details"]["field"], "password");
    // Nothing was stored for the refused registration.
    let login = t
        .post(
            "/auth/login",
            None,
            json!({ "email": "bo@example.com", "password": "short" }),
        )
        .await;
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);

    let wrong = t
        .post(
            "/auth/login",
            None,
            json!({ "email": "ana@example.com", "password": "not-her-password" }),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.error_code(), "unauthenticated");
}

#[tokio::test]
async fn tampered_and_expired_tokens_are_refused() {
    let t = TestApp::new().await;
    assert_eq!(t.get("/me", Some(&t.customer)).await.status, StatusCode::OK);

    // Flip one character of the signature.
    let mut forged = t.customer.clone();
    let last = forged.pop().expect("non-empty");
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = t.get("/me", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthenticated");

    // Claims rewritten to admin, signature kept.
    let parts: Vec<&str> = t.customer.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value =
        serde_json::from_slice(&b64.decode(parts[1]).expect("payload")).expect("claims");
    claims["role"] = json!("admin");
    let elevated = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    let r = t
        .post("/organizations", Some(&elevated), json!({ "name": "Mine" }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // "alg": "none" is refused.
    let none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    assert_eq!(
        t.get("/me", Some(&none)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Garbage and a wrong scheme.
    let r = t
        .call(
            Method::GET,
            "/me",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Access tokens last 15 minutes on the service clock.
    t.clock.advance(Duration::minutes(16));
    let r = t.get("/me", Some(&t.customer)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("expired")));
}

async fn pair(t: &TestApp, email: &str) -> (String, String) {
    let r = t
        .post(
            "/auth/login",
            None,
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    (
        r.body["access_token"].as_str().expect("access").to_owned(),
        r.body["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned(),
    )
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let t = TestApp::new().await;
    let (_, first) = pair(&t, "customer@test.io").await;
    let r = t
        .post("/auth/refresh", None, json!({ "refresh_token": first }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let second = r.body["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(second, first);
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["refresh_expires_in"], 7 * 24 * 3600);

    // Replaying the spent token is refused and kills the rotated one too.
    let replay = t
        .post("/auth/refresh", None, json!({ "refresh_token": first }))
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);
    let after = t
        .post("/auth/refresh", None, json!({ "refresh_token": second }))
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "family revoked");

    // Another login is a separate family and still works.
    let (_, other) = pair(&t, "customer@test.io").await;
    let ok = t
        .post("/auth/refresh", None, json!({ "refresh_token": other }))
        .await;
    assert_eq!(ok.status, StatusCode::OK);

    // Refresh tokens expire after 7 days.
    let (_, late) = pair(&t, "customer@test.io").await;
    t.clock.advance(Duration::days(7) + Duration::seconds(1));
    let r = t
        .post("/auth/refresh", None, json!({ "refresh_token": late }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_revokes_the_login() {
    let t = TestApp::new().await;
    let (_, refresh) = pair(&t, "customer@test.io").await;
    let r = t
        .post("/auth/logout", None, json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t
        .post("/auth/refresh", None, json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn password_reset_by_token() {
    let t = TestApp::new().await;
    let (_, refresh) = pair(&t, "customer@test.io").await;
    let r = t
        .post(
            "/auth/password-reset",
            None,
            json!({ "email": "customer@test.io" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // Unknown emails get the same answer and no token.
    let r = t
        .post(
            "/auth/password-reset",
            None,
            json!({ "email": "nobody@test.io" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let sent = t.outbox.0.lock().expect("outbox").clone();
    assert_eq!(sent.len(), 1);
    let (email, token) = sent[0].clone();
    assert_eq!(email, "customer@test.io");

    let weak = t
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "password": "short" }),
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    let ok = t
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "password": "a-brand-new-password" }),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.text);
    let reused = t
        .post(
            "/auth/password-reset/confirm",
            None,
            json!({ "token": token, "password": "yet-another-password" }),
        )
        .await;
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "tokens work once"
    );

    let old = t
        .post(
            "/auth/login",
            None,
            json!({ "email": "customer@test.io", "password": PASSWORD }),
        )
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = t
        .post(
            "/auth/login",
            None,
            json!({ "email": "customer@test.io", "password": "a-brand-new-password" }),
        )
        .await;
    assert_eq!(new.status, StatusCode::OK);
    let r = t
        .post("/auth/refresh", None, json!({ "refresh_token": refresh }))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "old logins end");
}

#[tokio::test]
async fn event_lifecycle_with_etags() {
    let t = TestApp::new().await;
    let r = t
        .post("/events", Some(&t.organizer), t.new_event("Jazz Night"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "draft");
    let id = r.body["id"].as_str().expect("id").to_owned();
    assert_eq!(r.header("location"), Some(format!("/events/{id}").as_str()));
    let etag = r.header("etag").expect("etag").to_owned();
    assert_eq!(etag, "\"1\"");

    // Drafts are invisible to customers and anonymous readers.
    assert_eq!(
        t.get(&format!("/events/{id}"), None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        t.get(&format!("/events/{id}"), Some(&t.customer))
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    async fn patch(t: &TestApp, id: &str, tag: &str) -> common::Reply {
        t.call(
            Method::PATCH,
            &format!("/events/{id}"),
            Some(&t.organizer),
            Some(json!({ "title": format!("Jazz Night {tag}") })),
            &[("if-match", tag)],
        )
        .await
    }
    let ok = patch(&t, &id, &etag).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.header("etag"), Some("\"2\""));
    let stale = patch(&t, &id, &etag).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.error_code(), "conflict");
    let missing = t
        .call(
            Method::PATCH,
            &format!("/events/{id}"),
            Some(&t.organizer),
            Some(json!({ "title": "x" })),
            &[],
        )
        .await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_REQUIRED);

    // Another organization's organizer may not edit it.
    let foreign = t
        .call(
            Method::PATCH,
            &format!("/events/{id}"),
            Some(&t.other_organizer),
            Some(json!({ "title": "Mine now" })),
            &[("if-match", "\"2\"")],
        )
        .await;
    assert!(
        foreign.status == StatusCode::FORBIDDEN || foreign.status == StatusCode::NOT_FOUND,
        "{}",
        foreign.status
    );

    let (pid, _) = t.published(10).await;
    let listed = t
        .get("/events?status=published&city=lisbon&limit=10", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let ids: Vec<&str> = listed.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, vec![pid.as_str()], "only the published event");

    let bad = t.get("/events?status=bogus", None).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["details"]["field"], "status");
}

#[tokio::test]
async fn checkout_is_idempotent_by_key_and_tickets_check_in_once() {
    let t = TestApp::new().await;
    let (event, tier) = t.published(10).await;

    let first = t.checkout(&event, &tier, 2, "order-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["booking"]["status"], "confirmed");
    assert_eq!(first.body["booking"]["total"]["amount"], "40.00");
    assert_eq!(first.body["booking"]["total"]["currency"], "EUR");
    let tickets = first.body["tickets"].as_array().expect("tickets");
    assert_eq!(tickets.len(), 2);

    let again = t.checkout(&event, &tier, 2, "order-1").await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.body["booking"]["id"], first.body["booking"]["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));

    let other_body = t.checkout(&event, &tier, 3, "order-1").await;
    assert_eq!(other_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other_body.error_code(), "idempotency_key_reused");

    let no_key = t
        .post(
            "/checkout",
            Some(&t.customer),
            json!({ "event_id": event, "items": [{ "tier_id": tier, "quantity": 1 }] }),
        )
        .await;
    assert_eq!(no_key.status, StatusCode::PRECONDITION_REQUIRED);

    let avail = t.get(&format!("/events/{event}/availability"), None).await;
    assert_eq!(avail.status, StatusCode::OK, "{}", avail.text);
    let tier_avail = avail.body["tiers"]
        .as_array()
        .expect("tiers")
        .iter()
        .find(|x| x["tier_id"] == tier.as_str())
        .expect("tier listed")
        .clone();
    assert_eq!(tier_avail["available"], 8, "exactly 2 sold: {tier_avail}");

    let sold_out = t.checkout(&event, &tier, 9, "order-2").await;
    assert_eq!(sold_out.status, StatusCode::CONFLICT);
    assert_eq!(sold_out.error_code(), "sold_out");
    assert_eq!(sold_out.body["details"]["available"], 8);

    let booking = first.body["booking"]["id"].as_str().expect("booking");
    let mine = t.get("/me/bookings", Some(&t.customer)).await;
    assert_eq!(mine.body["items"].as_array().map(Vec::len), Some(1));
    let listed = t
        .get(&format!("/bookings/{booking}/tickets"), Some(&t.customer))
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    // Somebody else's booking is not visible.
    let other = t
        .get(&format!("/bookings/{booking}"), Some(&t.other_organizer))
        .await;
    assert!(matches!(
        other.status,
        StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ));

    let code = tickets[0]["code"].as_str().expect("code");
    let path = format!("/events/{event}/check-in");
    let customer_scan = t
        .post(&path, Some(&t.customer), json!({ "code": code }))
        .await;
    assert_eq!(
        customer_scan.status,
        StatusCode::FORBIDDEN,
        "customers do not scan"
    );
    let admitted = t
        .post(&path, Some(&t.organizer), json!({ "code": code }))
        .await;
    assert_eq!(admitted.status, StatusCode::OK, "{}", admitted.text);
    let twice = t
        .post(&path, Some(&t.organizer), json!({ "code": code }))
        .await;
    assert_eq!(twice.status, StatusCode::OK);
    assert_ne!(
        admitted.body, twice.body,
        "the second scan is refused: {}",
        twice.text
    );
    assert!(twice.text.contains("already"), "{}", twice.text);
}

#[tokio::test]
async fn webhooks_check_signatures_and_apply_once() {
    let t = TestApp::new().await;
    let (event, tier) = t.published(10).await;
    t.gateway.push(ems_core::payment::FakeBehavior::Pending);
    let pending = t.checkout(&event, &tier, 1, "pending-1").await;
    assert_eq!(pending.status, StatusCode::CREATED, "{}", pending.text);
    assert_eq!(pending.body["booking"]["status"], "pending");
    let reference = pending.body["payment"]["reference"]
        .as_str()
        .expect("reference")
        .to_owned();

    let hook = t.gateway.settle(&reference, true);
    let send = |signature: Option<String>, body: Vec<u8>| {
        let mut b = Request::builder()
            .method(Method::POST)
            .uri("/webhooks/fake");
        if let Some(s) = signature {
            b = b.header("ems-signature", s);
        }
        t.raw(
            b.header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request"),
        )
    };
    let forged = send(Some("v1=Zm9yZ2Vk".into()), hook.body.clone()).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    assert_eq!(forged.error_code(), "invalid_signature");
    let unsigned = send(None, hook.body.clone()).await;
    assert_eq!(unsigned.status, StatusCode::BAD_REQUEST);
    let booking = pending.body["booking"]["id"].as_str().expect("booking");
    let still = t
        .get(&format!("/bookings/{booking}"), Some(&t.customer))
        .await;
    assert_eq!(
        still.body["booking"]["status"], "pending",
        "nothing changed"
    );

    let ok = send(hook.signature.clone(), hook.body.clone()).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(ok.body["status"], "confirmed");
    let dup = send(hook.signature.clone(), hook.body.clone()).await;
    assert_eq!(dup.status, StatusCode::OK, "duplicates are acknowledged");
    let done = t
        .get(&format!("/bookings/{booking}"), Some(&t.customer))
        .await;
    assert_eq!(done.body["booking"]["status"], "confirmed");
    assert_eq!(done.body["tickets"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_4xx() {
    let t = TestApp::new().await;
    let bad_json = t
        .raw(
            Request::builder()
                .method(Method::POST)
                .uri("/events")
                .header("authorization", format!("Bearer {}", t.organizer))
                .header("content-type", "application/json")
                .body(Body::from("{\"title\": "))
                .expect("request"),
        )
        .await;
    assert_eq!(
        bad_json.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_json.text
    );
    assert_eq!(bad_json.error_code(), "bad_request");

    let wrong_shape = t
        .post("/events", Some(&t.organizer), json!({ "title": 5 }))
        .await;
    assert_eq!(wrong_shape.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong_shape.error_code(), "invalid_input");

    let no_type = t
        .raw(
            Request::builder()
                .method(Method::POST)
                .uri("/auth/login")
                .body(Body::from("{}"))
                .expect("request"),
        )
        .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = "x".repeat(ems_http::ops::BODY_LIMIT + 1);
    let big = t
        .post(
            "/auth/register",
            None,
            json!({ "email": "a@b.c", "password": huge, "display_name": "x" }),
        )
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.text);

    let bad_id = t.get("/events/not-a-uuid", None).await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_id.error_code(), "bad_request");

    let unknown = t.get("/no/such/route", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");

    let given = t
        .call(
            Method::GET,
            "/health",
            None,
            None,
            &[("x-request-id", "abc-123")],
        )
        .await;
    assert_eq!(given.header("x-request-id"), Some("abc-123"));
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let t = TestApp::new().await;
    let (event, tier) = t.published(1).await;
    assert_eq!(
        t.checkout(&event, &tier, 1, "m-1").await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        t.checkout(&event, &tier, 1, "m-2").await.status,
        StatusCode::CONFLICT
    );
    let h = t.get("/health", None).await;
    assert_eq!(h.status, StatusCode::OK);
    let r = t.get("/ready", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["backend"], "memory");
    let m = t.get("/metrics", None).await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.text.contains("ems_http_request_duration_seconds_bucket"),
        "{}",
        m.text
    );
    assert!(m.text.contains(r#"route="/checkout""#));
    assert!(m
        .text
        .contains(r#"ems_checkouts_total{outcome="confirmed"} 1"#));
    assert!(m.text.contains("ems_sold_outs_total 1"));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let one = std::num::NonZeroU32::new(1).expect("non-zero");
    let t = common::TestApp::with(common::Options {
        per_ip: ems_http::RateLimit {
            per_second: one,
            burst: std::num::NonZeroU32::new(10).expect("non-zero"),
        },
        ..Default::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(t.get("/health", None).await);
    }
    let limited = statuses
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .expect("the burst runs out");
    assert_eq!(limited.error_code(), "rate_limited");
    let retry: u64 = limited
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry >= 1);
}

#[tokio::test]
async fn domain_events_for_admins_and_their_organizers() {
    let t = TestApp::new().await;
    let (event, _) = t.published(5).await;
    let all = t.get("/domain-events?limit=500", Some(&t.admin)).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let types: Vec<&str> = all
        .body
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event"]["type"].as_str())
        .collect();
    assert!(types.contains(&"event_published"), "{types:?}");
    assert!(types.contains(&"user_registered"));

    let mine = t.get("/domain-events?limit=500", Some(&t.organizer)).await;
    assert_eq!(mine.status, StatusCode::OK);
    let mine = mine.body.as_array().expect("events").clone();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|e| e["event"]["event_id"] == event.as_str()
        || e["event"]["organization"] == t.org.id.to_string()));
    let others = t
        .get("/domain-events?limit=500", Some(&t.other_organizer))
        .await;
    assert!(others
        .body
        .as_array()
        .expect("events")
        .iter()
        .all(|e| e["event"]["event_id"] != event.as_str()));
    assert_eq!(
        t.get("/domain-events", Some(&t.customer)).await.status,
        StatusCode::FORBIDDEN
    );

    // The stream resumes after a cursor.
    let last = mine
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .expect("seq");
    let req = Request::builder()
        .uri("/domain-events/stream")
        .header("authorization", format!("Bearer {}", t.organizer))
        .header("last-event-id", (last - 1).to_string())
        .body(Body::empty())
        .expect("request");
    let mut req = req;
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            1,
        ))));
    let res = tower::ServiceExt::oneshot(t.router.clone(), req)
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body().into_data_stream();
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        use futures::StreamExt as _;
        let mut text = String::new();
        while let Some(Ok(bytes)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&bytes));
            if text.contains("\n\n") {
                break;
            }
        }
        text
    })
    .await
    .expect("an event arrives");
    assert!(chunk.contains(&format!("id: {last}")), "{chunk}");
}

#[tokio::test]
async fn openapi_documents_every_route_and_only_routes() {
    let t = TestApp::new().await;
    let doc = t.get("/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.body["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    let paths = doc.body["paths"].as_object().expect("paths");
    assert!(paths.len() >= 40, "{} paths", paths.len());
    let nil = "00000000-0000-0000-0000-000000000000";
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path.replace("{gateway}", "fake").replace(['{', '}'], "");
        let concrete = concrete
            .split('/')
            .map(|seg| {
                if path.contains(&format!("{{{seg}}}")) {
                    nil
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = if concrete.ends_with("/stream") {
                // Streams answer 401 without a token; enough to show the route.
                t.call(m, &concrete, None, None, &[]).await
            } else {
                t.call(m, &concrete, Some(&t.admin), Some(json!({})), &[])
                    .await
            };
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                r.body["message"] != "no such route",
                "{method} {path} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked >= 45, "{checked} operations");
    // And a route that is not documented does not exist.
    let r = t.get("/admin/secret", Some(&t.admin)).await;
    assert_eq!(r.body["message"], "no such route");
}
