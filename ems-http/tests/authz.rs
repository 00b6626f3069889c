//! The authorization matrix: every route × anonymous / customer / organizer of
//! another organization / organizer / admin → the expected status, from one
//! table. Each cell gets fresh fixtures, so a success in one cell cannot change
//! another's outcome.

mod common;

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::Duration;
use common::TestApp;
use serde_json::{json, Value};

/// A request to send: path, body, extra headers, and whether the answer is a
/// stream (only its status is read).
struct Call {
    path: String,
    body: Option<Value>,
    headers: Vec<(String, String)>,
    stream: bool,
}

impl Call {
    fn to(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            body: None,
            headers: Vec::new(),
            stream: false,
        }
    }

    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
}

type Setup = for<'a> fn(&'a TestApp, u32) -> Pin<Box<dyn Future<Output = Call> + Send + 'a>>;

/// anonymous, customer, organizer of another organization, organizer, admin.
/// Another organization's bookings and holds are 404 to an organizer (their
/// existence is not disclosed), its events' management is 403.
const WHO: [&str; 5] = ["anonymous", "customer", "other org", "organizer", "admin"];

struct Row {
    method: Method,
    route: &'static str,
    setup: Setup,
    expect: [u16; 5],
}

macro_rules! row {
    ($method:ident $route:literal, $expect:expr, |$t:ident, $n:ident| $body:expr) => {
        Row {
            method: Method::$method,
            route: $route,
            setup: |$t, $n| {
                Box::pin(async move {
                    let _ = ($t, $n);
                    $body
                })
            },
            expect: $expect,
        }
    };
}

/// The event's current ETag, as its organizer reads it.
async fn etag(t: &TestApp, event: &str) -> String {
    let r = t.get(&format!("/events/{event}"), Some(&t.organizer)).await;
    r.header("etag").expect("etag").to_owned()
}

async fn draft(t: &TestApp) -> (String, String) {
    let r = t
        .post("/events", Some(&t.organizer), t.new_event("Draft"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let tier = t
        .post(
            &format!("/events/{id}/tiers"),
            Some(&t.organizer),
            tier_body("GA", 10),
        )
        .await;
    assert_eq!(tier.status, StatusCode::CREATED, "{}", tier.text);
    let tag = etag(t, &id).await;
    (id, tag)
}

fn tier_body(name: &str, capacity: u32) -> Value {
    json!({
        "name": name,
        "price": { "amount": "20.00", "currency": "EUR" },
        "capacity": capacity,
        "min_per_order": 1,
        "max_per_order": 10,
        "sales_start": null,
        "sales_end": null,
        "shared_quotas": []
    })
}

/// A confirmed booking of the customer: (event, tier, booking, first ticket code).
async fn booking(t: &TestApp, n: u32) -> (String, String, String, String) {
    let (event, tier) = t.published(20).await;
    let r = t.checkout(&event, &tier, 1, &format!("fixture-{n}")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    (
        event,
        tier,
        r.body["booking"]["id"]
            .as_str()
            .expect("booking")
            .to_owned(),
        r.body["tickets"][0]["code"]
            .as_str()
            .expect("code")
            .to_owned(),
    )
}

fn resource_body(t: &TestApp, n: u32) -> Value {
    json!({
        "organization": t.org.id,
        "kind": { "kind": "venue" },
        "name": format!("Hall {n}"),
        "stock": { "type": "exclusive" },
        "price": { "amount": "500.00", "currency": "EUR" },
        "price_unit": "per_booking",
        "time_zone": "Europe/Lisbon",
        "slots": [],
        "venue": { "capacity": 200, "address": "Rua A 1", "latitude": 38.7, "longitude": -9.1 }
    })
}

async fn resource(t: &TestApp, n: u32) -> String {
    let r = t
        .post("/resources", Some(&t.organizer), resource_body(t, n))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().expect("id").to_owned()
}

fn day() -> String {
    (common::epoch() + Duration::days(40))
        .date_naive()
        .to_string()
}

async fn facility_booking(t: &TestApp, n: u32) -> String {
    let res = resource(t, n).await;
    let r = t
        .post(
            "/facility-bookings",
            Some(&t.organizer),
            json!({
                "organization": t.org.id,
                "requests": [{ "resource": res, "when": { "type": "slot", "date": day(), "slot": "Evening" }, "quantity": 1 }]
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body[0]["id"].as_str().expect("id").to_owned()
}

async fn coupon(t: &TestApp, n: u32) -> String {
    let r = t
        .post("/coupons", Some(&t.organizer), coupon_body(t, n))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.body["id"].as_str().expect("id").to_owned()
}

fn coupon_body(t: &TestApp, n: u32) -> Value {
    json!({
        "organization": t.org.id,
        "code": format!("CODE{n}"),
        "scope": { "kind": "organization" },
        "discount": { "kind": "fixed", "value": { "amount": "5.00", "currency": "EUR" } },
        "valid_from": null,
        "valid_until": null,
        "min_quantity": 1,
        "max_uses": null,
        "max_uses_per_customer": null
    })
}

async fn refresh_token(t: &TestApp) -> String {
    let r = t
        .post(
            "/auth/login",
            None,
            json!({ "email": "customer@test.io", "password": common::PASSWORD }),
        )
        .await;
    r.body["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned()
}

const A: u16 = 200;
const C: u16 = 201;
const N: u16 = 204;
const U: u16 = 401;
const F: u16 = 403;
const M: u16 = 404;

fn table() -> Vec<Row> {
    vec![
        row!(GET "/health", [A; 5], |t, n| Call::to("/health")),
        row!(GET "/ready", [A; 5], |t, n| Call::to("/ready")),
        row!(GET "/metrics", [A; 5], |t, n| Call::to("/metrics")),
        row!(GET "/openapi.json", [A; 5], |t, n| Call::to("/openapi.json")),
        row!(POST "/auth/register", [C; 5], |t, n| Call::to("/auth/register").body(json!({
            "email": format!("new{n}@test.io"), "password": "a-long-password", "display_name": "New" }))),
        row!(POST "/auth/login", [A; 5], |t, n| Call::to("/auth/login").body(json!({
            "email": "customer@test.io", "password": common::PASSWORD }))),
        row!(POST "/auth/refresh", [A; 5], |t, n| {
            let token = refresh_token(t).await;
            Call::to("/auth/refresh").body(json!({ "refresh_token": token }))
        }),
        row!(POST "/auth/logout", [N; 5], |t, n| {
            let token = refresh_token(t).await;
            Call::to("/auth/logout").body(json!({ "refresh_token": token }))
        }),
        row!(POST "/auth/password-reset", [202; 5], |t, n| Call::to("/auth/password-reset")
            .body(json!({ "email": "customer@test.io" }))),
        row!(POST "/auth/password-reset/confirm", [422; 5], |t, n| Call::to("/auth/password-reset/confirm")
            .body(json!({ "token": "not-a-token", "password": "a-long-password" }))),
        row!(GET "/me", [U, A, A, A, A], |t, n| Call::to("/me")),
        row!(GET "/events", [A; 5], |t, n| Call::to("/events")),
        row!(POST "/events", [U, F, F, C, C], |t, n| Call::to("/events").body(t.new_event("New"))),
        row!(GET "/events/{id} (published)", [A; 5], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}"))
        }),
        row!(GET "/events/{id} (draft)", [M, M, M, A, A], |t, n| {
            let (e, _) = draft(t).await;
            Call::to(format!("/events/{e}"))
        }),
        row!(PATCH "/events/{id}", [U, F, F, A, A], |t, n| {
            let (e, etag) = draft(t).await;
            Call::to(format!("/events/{e}")).body(json!({ "title": "Renamed" })).header("if-match", etag)
        }),
        row!(POST "/events/{id}/publish", [U, F, F, A, A], |t, n| {
            let (e, tag) = draft(t).await;
            Call::to(format!("/events/{e}/publish")).header("if-match", tag)
        }),
        row!(POST "/events/{id}/reschedule", [U, F, F, A, A], |t, n| {
            let (e, _) = t.published(5).await;
            let starts = common::epoch() + Duration::days(60);
            Call::to(format!("/events/{e}/reschedule"))
                .body(json!({ "starts_at": starts, "ends_at": starts + Duration::hours(2) }))
                .header("if-match", etag(t, &e).await)
        }),
        row!(POST "/events/{id}/cancel", [U, F, F, A, A], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}/cancel")).header("if-match", etag(t, &e).await)
        }),
        row!(POST "/events/{id}/complete", [U, F, F, 409, 409], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}/complete")).header("if-match", etag(t, &e).await)
        }),
        row!(GET "/events/{id}/tiers", [A; 5], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}/tiers"))
        }),
        row!(POST "/events/{id}/tiers", [U, F, F, C, C], |t, n| {
            let (e, _) = draft(t).await;
            Call::to(format!("/events/{e}/tiers")).body(tier_body("More", 5))
        }),
        row!(PUT "/events/{id}/tiers/{tier_id}", [U, F, F, A, A], |t, n| {
            let (e, tier) = t.published(5).await;
            Call::to(format!("/events/{e}/tiers/{tier}")).body(tier_body("GA", 8)).header("if-match", "\"1\"")
        }),
        row!(POST "/events/{id}/quotas", [U, F, F, C, C], |t, n| {
            let (e, _) = draft(t).await;
            Call::to(format!("/events/{e}/quotas")).body(json!({ "name": "Floor", "capacity": 5 }))
        }),
        row!(GET "/events/{id}/availability", [A; 5], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}/availability"))
        }),
        row!(POST "/events/{id}/quote", [A; 5], |t, n| {
            let (e, tier) = t.published(5).await;
            Call::to(format!("/events/{e}/quote")).body(json!({ "items": [{ "tier_id": tier, "quantity": 1 }] }))
        }),
        row!(POST "/events/{id}/holds", [U, C, C, C, C], |t, n| {
            let (e, tier) = t.published(5).await;
            Call::to(format!("/events/{e}/holds")).body(json!({ "items": [{ "tier_id": tier, "quantity": 1 }] }))
        }),
        row!(GET "/holds/{id}", [U, A, M, A, A], |t, n| {
            let (e, tier) = t.published(5).await;
            let h = t.post(&format!("/events/{e}/holds"), Some(&t.customer),
                json!({ "items": [{ "tier_id": tier, "quantity": 1 }] })).await;
            Call::to(format!("/holds/{}", h.body["id"].as_str().expect("hold")))
        }),
        row!(DELETE "/holds/{id}", [U, A, M, A, A], |t, n| {
            let (e, tier) = t.published(5).await;
            let h = t.post(&format!("/events/{e}/holds"), Some(&t.customer),
                json!({ "items": [{ "tier_id": tier, "quantity": 1 }] })).await;
            Call::to(format!("/holds/{}", h.body["id"].as_str().expect("hold")))
        }),
        row!(POST "/checkout", [U, C, C, C, C], |t, n| {
            let (e, tier) = t.published(5).await;
            Call::to("/checkout")
                .body(json!({ "event_id": e, "items": [{ "tier_id": tier, "quantity": 1 }] }))
                .header("idempotency-key", format!("matrix-{n}"))
        }),
        row!(POST "/webhooks/{gateway}", [400; 5], |t, n| Call::to("/webhooks/fake")
            .body(json!({ "id": "evt", "payment_reference": "x", "kind": { "kind": "payment_succeeded" } }))
            .header("ems-signature", "v1=forged")),
        row!(POST "/payments/{id}/reconcile", [U, F, F, F, A], |t, n| {
            let (_, _, b, _) = booking(t, n).await;
            let p = t.get(&format!("/bookings/{b}/payments"), Some(&t.admin)).await;
            Call::to(format!("/payments/{}/reconcile", p.body["payments"][0]["id"].as_str().expect("payment")))
        }),
        row!(POST "/refunds/{id}/retry", [U, F, F, 409, 409], |t, n| {
            let (_, _, b, _) = booking(t, n).await;
            let c = t.post(&format!("/bookings/{b}/cancel"), Some(&t.customer), json!({})).await;
            assert_eq!(c.status, StatusCode::OK, "{}", c.text);
            let p = t.get(&format!("/bookings/{b}/payments"), Some(&t.admin)).await;
            Call::to(format!("/refunds/{}/retry", p.body["refunds"][0]["id"].as_str().expect("refund")))
        }),
        row!(POST "/coupons", [U, F, F, C, C], |t, n| Call::to("/coupons").body(coupon_body(t, n + 10_000))),
        row!(GET "/coupons/{id}/uses", [U, F, F, A, A], |t, n| {
            let c = coupon(t, n).await;
            Call::to(format!("/coupons/{c}/uses"))
        }),
        row!(GET "/me/bookings", [U, A, A, A, A], |t, n| Call::to("/me/bookings")),
        row!(GET "/events/{id}/bookings", [U, F, F, A, A], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}/bookings"))
        }),
        row!(GET "/bookings/{id}", [U, A, M, A, A], |t, n| {
            let (_, _, b, _) = booking(t, n).await;
            Call::to(format!("/bookings/{b}"))
        }),
        row!(POST "/bookings/{id}/cancel", [U, A, M, A, A], |t, n| {
            let (_, _, b, _) = booking(t, n).await;
            Call::to(format!("/bookings/{b}/cancel"))
        }),
        row!(GET "/bookings/{id}/payments", [U, A, M, A, A], |t, n| {
            let (_, _, b, _) = booking(t, n).await;
            Call::to(format!("/bookings/{b}/payments"))
        }),
        row!(GET "/bookings/{id}/tickets", [U, A, M, A, A], |t, n| {
            let (_, _, b, _) = booking(t, n).await;
            Call::to(format!("/bookings/{b}/tickets"))
        }),
        row!(POST "/events/{id}/check-in", [U, F, F, A, A], |t, n| {
            let (e, _, _, code) = booking(t, n).await;
            Call::to(format!("/events/{e}/check-in")).body(json!({ "code": code }))
        }),
        row!(POST "/resources", [U, F, F, C, C], |t, n| Call::to("/resources").body(resource_body(t, n))),
        row!(GET "/resources", [A; 5], |t, n| Call::to(format!("/resources?kind=venue&date={}", day()))),
        row!(GET "/resources/{id}/availability", [A; 5], |t, n| {
            let r = resource(t, n).await;
            Call::to(format!("/resources/{r}/availability?from={}&days=2", day()))
        }),
        row!(GET "/resources/{id}/alternatives", [A; 5], |t, n| {
            let r = resource(t, n).await;
            Call::to(format!("/resources/{r}/alternatives?date={}&slot=Evening", day()))
        }),
        row!(POST "/facility-bookings", [U, F, F, C, C], |t, n| {
            let r = resource(t, n).await;
            Call::to("/facility-bookings").body(json!({
                "organization": t.org.id,
                "requests": [{ "resource": r, "when": { "type": "slot", "date": day(), "slot": "Evening" }, "quantity": 1 }]
            }))
        }),
        row!(POST "/facility-bookings/{id}/cancel", [U, F, F, A, A], |t, n| {
            let b = facility_booking(t, n).await;
            Call::to(format!("/facility-bookings/{b}/cancel"))
        }),
        row!(GET "/events/{id}/facilities", [U, F, F, A, A], |t, n| {
            let (e, _) = t.published(5).await;
            Call::to(format!("/events/{e}/facilities"))
        }),
        row!(GET "/domain-events", [U, F, A, A, A], |t, n| Call::to("/domain-events")),
        row!(GET "/domain-events/stream", [U, F, A, A, A], |t, n| {
            let mut c = Call::to("/domain-events/stream");
            c.stream = true;
            c
        }),
        row!(POST "/organizations", [U, F, F, F, C], |t, n| Call::to("/organizations").body(json!({ "name": "Org" }))),
        row!(GET "/organizations/{id}", [A; 5], |t, n| Call::to(format!("/organizations/{}", t.org.id))),
        row!(POST "/users", [U, F, F, F, C], |t, n| Call::to("/users").body(json!({
            "email": format!("staff{n}@test.io"), "password": "a-long-password", "display_name": "Staff",
            "role": "organizer", "organization": t.org.id }))),
        row!(GET "/users/{id}", [U, A, F, F, A], |t, n| Call::to(format!("/users/{}", t.customer_id))),
    ]
}

async fn send(t: &TestApp, method: &Method, token: Option<&str>, call: Call) -> u16 {
    if call.stream {
        let mut b = Request::builder().method(method.clone()).uri(&call.path);
        if let Some(tok) = token {
            b = b.header("authorization", format!("Bearer {tok}"));
        }
        let mut req = b.body(Body::empty()).expect("request");
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                1,
            ))));
        let res = tower::ServiceExt::oneshot(t.router.clone(), req)
            .await
            .expect("infallible");
        return res.status().as_u16();
    }
    let headers: Vec<(&str, &str)> = call
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = t
        .call(method.clone(), &call.path, token, call.body, &headers)
        .await;
    r.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_for_every_role() {
    let t = TestApp::new().await;
    let tokens = [
        None,
        Some(t.customer.clone()),
        Some(t.other_organizer.clone()),
        Some(t.organizer.clone()),
        Some(t.admin.clone()),
    ];
    let rows = table();
    let mut n = 0u32;
    let mut mismatches = Vec::new();
    let mut report = String::new();
    for row in &rows {
        let mut got = [0u16; 5];
        for (i, token) in tokens.iter().enumerate() {
            n += 1;
            let call = (row.setup)(&t, n).await;
            got[i] = send(&t, &row.method, token.as_deref(), call).await;
            if got[i] != row.expect[i] {
                mismatches.push(format!(
                    "{} {} as {}: expected {}, got {}",
                    row.method, row.route, WHO[i], row.expect[i], got[i]
                ));
            }
        }
        report.push_str(&format!("{:<7} {:<36} {:?}\n", row.method, row.route, got));
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}\n\nactual:\n{report}",
        mismatches.len(),
        mismatches.join("\n")
    );

    // Every documented operation is in the table.
    let doc = t.get("/openapi.json", None).await;
    let mut documented = Vec::new();
    for (path, item) in doc.body["paths"].as_object().expect("paths") {
        for m in ["get", "post", "put", "patch", "delete"] {
            if item.get(m).is_some() {
                documented.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    for op in documented {
        assert!(
            rows.iter().any(|r| {
                let route = r.route.split(' ').next().unwrap_or(r.route);
                format!("{} {route}", r.method) == op
            }),
            "{op} is missing from the matrix"
        );
    }
}
