//! An in-process server over the memory backend with a manual clock, a fake
//! gateway and a notifier that keeps reset tokens; requests go through
//! `tower::ServiceExt::oneshot`, so every middleware runs.

#![allow(dead_code)] // each test binary uses part of it

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use chrono::{Duration, TimeZone, Utc};
use ems_core::clock::ManualClock;
use ems_core::directory::{NewUser, Role, UserProfile};
use ems_core::payment::FakeGateway;
use ems_core::{Actor, Ems};
use ems_http::{AppBuilder, AuthConfig, Notifier, RateLimit};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub(crate) const PASSWORD: &str = "correct-horse-battery";
pub(crate) const WEBHOOK_SECRET: &str = "whsec_http_tests";

/// Keeps the reset tokens it is asked to deliver.
#[derive(Default)]
pub(crate) struct Outbox(pub Mutex<Vec<(String, String)>>);

#[async_trait]
impl Notifier for Outbox {
    async fn password_reset(&self, user: &UserProfile, token: &str) {
        self.0
            .lock()
            .expect("outbox lock")
            .push((user.email.clone(), token.to_owned()));
    }
}

/// A response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the common error envelope and returns its code.
    pub(crate) fn error_code(&self) -> &str {
        assert!(
            self.body.get("message").is_some_and(Value::is_string),
            "error envelope has a message: {}",
            self.text
        );
        let rid = self.body["request_id"].as_str().expect("request_id");
        assert!(!rid.is_empty(), "request id filled in");
        assert_eq!(
            self.header("x-request-id"),
            Some(rid),
            "same id in the header"
        );
        self.body["code"].as_str().expect("code")
    }
}

pub(crate) struct TestApp {
    pub(crate) router: Router,
    pub(crate) ems: Ems,
    pub(crate) clock: ManualClock,
    pub(crate) gateway: FakeGateway,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) org: ems_core::directory::Organization,
    pub(crate) admin: String,
    pub(crate) organizer: String,
    pub(crate) other_organizer: String,
    pub(crate) customer: String,
    pub(crate) customer_id: ems_core::id::UserId,
}

pub(crate) fn epoch() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 10, 0, 0)
        .single()
        .expect("valid instant")
}

pub(crate) struct Options {
    pub(crate) per_ip: RateLimit,
    pub(crate) per_user: RateLimit,
}

impl Default for Options {
    fn default() -> Self {
        let big = std::num::NonZeroU32::new(100_000).expect("non-zero");
        Self {
            per_ip: RateLimit {
                per_second: big,
                burst: big,
            },
            per_user: RateLimit {
                per_second: big,
                burst: big,
            },
        }
    }
}

impl TestApp {
    pub(crate) async fn new() -> Self {
        Self::with(Options::default()).await
    }

    pub(crate) async fn with(options: Options) -> Self {
        let clock = ManualClock::new(epoch());
        let gateway = FakeGateway::new(WEBHOOK_SECRET);
        let store = Arc::new(ems_storage_memory::MemoryStore::new());
        let ems = Ems::builder(store)
            .clock(Arc::new(clock.clone()))
            .gateway("fake", Arc::new(gateway.clone()))
            .ticket_key(&[9u8; 32])
            .build()
            .expect("valid configuration");
        let outbox = Arc::new(Outbox::default());
        let app = AppBuilder::new(ems.clone(), "memory", AuthConfig::new(vec![5u8; 32]))
            .notifier(outbox.clone())
            .rate_limits(options.per_ip, options.per_user)
            .notify_poll(std::time::Duration::from_millis(20))
            .build()
            .expect("valid app");
        let router = app.router();
        let org = ems
            .create_organization(&Actor::System, "Test Hall")
            .await
            .expect("organization");
        let other = ems
            .create_organization(&Actor::System, "Other Hall")
            .await
            .expect("organization");
        let auth = &app.state().auth;
        let make = |email: &str, role: Role, organization| {
            let ems = ems.clone();
            let email = email.to_owned();
            async move {
                let u = ems
                    .register_user(
                        &Actor::System,
                        NewUser {
                            email,
                            display_name: "Test".into(),
                            role,
                            organization,
                        },
                    )
                    .await
                    .expect("user");
                u
            }
        };
        let mut accounts = Vec::new();
        for (email, role, org_id) in [
            ("admin@test.io", Role::Admin, None),
            ("organizer@test.io", Role::Organizer, Some(org.id)),
            ("other@test.io", Role::Organizer, Some(other.id)),
            ("customer@test.io", Role::Customer, None),
        ] {
            let u = make(email, role, org_id).await;
            auth.set_password(u.id, PASSWORD).await.expect("password");
            accounts.push(u);
        }
        let mut t = Self {
            router,
            ems,
            clock,
            gateway,
            outbox,
            org,
            admin: String::new(),
            organizer: String::new(),
            other_organizer: String::new(),
            customer: String::new(),
            customer_id: accounts[3].id,
        };
        t.admin = t.login("admin@test.io").await;
        t.organizer = t.login("organizer@test.io").await;
        t.other_organizer = t.login("other@test.io").await;
        t.customer = t.login("customer@test.io").await;
        t
    }

    pub(crate) async fn login(&self, email: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/auth/login",
                None,
                Some(json!({ "email": email, "password": PASSWORD })),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login: {}", r.text);
        r.body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    /// Sends a request as from 127.0.0.1.
    pub(crate) async fn raw(&self, req: Request<Body>) -> Reply {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = match body {
            Some(v) => b
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => b.body(Body::empty()),
        }
        .expect("request builds");
        self.raw(req).await
    }

    pub(crate) async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None, &[]).await
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body), &[]).await
    }

    /// A new event body for the test organization, starting in 30 days.
    pub(crate) fn new_event(&self, title: &str) -> Value {
        let starts = epoch() + Duration::days(30);
        json!({
            "organization": self.org.id,
            "title": title,
            "description": "An evening of tests.",
            "category": "music",
            "venue": { "name": "Main Hall", "city": "Lisbon", "address": null },
            "time_zone": "Europe/Lisbon",
            "starts_at": starts,
            "ends_at": starts + Duration::hours(3),
            "capacity": 100,
            "currency": "EUR",
            "refund_policy": { "rules": [{ "secs_before_start": 86400, "percent": "100" }] }
        })
    }

    /// A published event with one tier "GA" of `capacity` at 20 EUR: (event id, tier id).
    pub(crate) async fn published(&self, capacity: u32) -> (String, String) {
        let r = self
            .post(
                "/events",
                Some(&self.organizer),
                self.new_event("Published"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let tier = self
            .post(
                &format!("/events/{id}/tiers"),
                Some(&self.organizer),
                json!({
                    "name": "GA",
                    "price": { "amount": "20.00", "currency": "EUR" },
                    "capacity": capacity,
                    "min_per_order": 1,
                    "max_per_order": 10,
                    "sales_start": null,
                    "sales_end": null,
                    "shared_quotas": []
                }),
            )
            .await;
        assert_eq!(tier.status, StatusCode::CREATED, "{}", tier.text);
        let etag = r.header("etag").expect("etag").to_owned();
        let p = self
            .call(
                Method::POST,
                &format!("/events/{id}/publish"),
                Some(&self.organizer),
                None,
                &[("if-match", &etag)],
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
        (id, tier.body["id"].as_str().expect("tier id").to_owned())
    }

    /// Checks out `quantity` of `tier` as the customer under `key`.
    pub(crate) async fn checkout(
        &self,
        event: &str,
        tier: &str,
        quantity: u32,
        key: &str,
    ) -> Reply {
        self.call(
            Method::POST,
            "/checkout",
            Some(&self.customer),
            Some(json!({
                "event_id": event,
                "items": [{ "tier_id": tier, "quantity": quantity }]
            })),
            &[("idempotency-key", key)],
        )
        .await
    }
}
