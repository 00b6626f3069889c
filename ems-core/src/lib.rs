//! # ems-core
//!
//! The pure domain of ems: events and their lifecycle, ticket inventory with holds
//! that never oversells, the checkout saga, payments behind a gateway trait,
//! tickets with signed codes and check-in, and the domain-event log. Storage is
//! behind ports ([`Store`]); backends such as `ems-storage-memory` implement them
//! and prove it with the shared conformance suite (feature `testkit`).
//!
//! Every operation goes through [`Ems`], takes the calling [`Actor`] and checks it.
//!
//! ```
//! # #[cfg(feature = "testkit")] {
//! use std::sync::Arc;
//! use ems_core::{Ems, Actor};
//! # let _ = |store: Arc<dyn ems_core::Store>| {
//! let ems = Ems::builder(store).build().expect("valid configuration");
//! # };
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
mod batch;
pub mod booking;
pub mod clock;
pub mod directory;
pub mod error;
pub mod event;
pub mod facility;
mod forward;
pub mod id;
pub mod inventory;
pub mod money;
pub mod outbox;
pub mod page;
pub mod payment;
pub mod pricing;
pub mod ticket;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

pub use auth::Actor;
pub use error::{Error, Result};

use clock::{Clock, SystemClock};
use payment::{FakeGateway, PaymentGateway};
use ticket::TicketSigner;

/// Everything a backend implements: one handle for all ports. Implemented
/// automatically for any type implementing each port.
pub trait Store:
    directory::DirectoryStore
    + event::EventStore
    + inventory::InventoryStore
    + booking::BookingStore
    + booking::CheckoutStore
    + payment::PaymentStore
    + ticket::TicketStore
    + outbox::OutboxStore
    + pricing::CouponStore
    + facility::FacilityStore
{
}

impl<T> Store for T where
    T: directory::DirectoryStore
        + event::EventStore
        + inventory::InventoryStore
        + booking::BookingStore
        + booking::CheckoutStore
        + payment::PaymentStore
        + ticket::TicketStore
        + outbox::OutboxStore
        + pricing::CouponStore
        + facility::FacilityStore
{
}

/// Tunables of [`Ems`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmsConfig {
    /// How long a hold lasts unless the caller asks otherwise (default 10 minutes).
    pub hold_ttl: Duration,
    /// Whether concurrent holds of one event, and the checkout steps after
    /// them (opening the booking, settling the payment), are batched (default:
    /// as the store prefers).
    pub hold_batching: inventory::HoldBatching,
    /// The most requests one batch sends to the store (default 256).
    pub max_hold_batch: usize,
}

impl Default for EmsConfig {
    fn default() -> Self {
        Self {
            hold_ttl: Duration::minutes(10),
            hold_batching: inventory::HoldBatching::Auto,
            max_hold_batch: 256,
        }
    }
}

/// Gateways by name: aHash, as the service looks one up by name twice in
/// every checkout (the request's, then the booking's), and SipHash's
/// resistance to chosen keys buys nothing for names the service's own
/// builder registered.
type Gateways = HashMap<String, Arc<dyn PaymentGateway>, ahash::RandomState>;

struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    gateways: Gateways,
    default_gateway: String,
    signer: TicketSigner,
    config: EmsConfig,
    /// Present when holds are batched.
    combiner: Option<inventory::HoldCombiner>,
    /// Present when holds are batched: the checkout steps after the hold.
    opens: Option<batch::Combiner<booking::OpenOp>>,
    settles: Option<batch::Combiner<booking::SettleOp>>,
    releases: Option<batch::Combiner<inventory::ReleaseOp>>,
    /// Present when holds are batched and the store opens bookings with
    /// holds ([`booking::CheckoutStore::opens_with_holds`]).
    hold_opens: Option<batch::Combiner<booking::HoldOpenOp>>,
}

/// The ems service: every domain operation, over any [`Store`]. A cheap `Clone`
/// handle; clones share everything.
#[derive(Clone)]
pub struct Ems {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut gateways: Vec<_> = self.inner.gateways.keys().collect();
        gateways.sort();
        f.debug_struct("Ems")
            .field("gateways", &gateways)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Ems`]. Defaults: system clock, one [`FakeGateway`] named `fake`
/// (replace it for production), a random ticket key (set one so codes survive
/// restarts), holds of 10 minutes.
pub struct EmsBuilder {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    gateways: Gateways,
    default_gateway: Option<String>,
    ticket_key: Option<Vec<u8>>,
    config: EmsConfig,
}

impl EmsBuilder {
    /// The clock (tests use [`clock::ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Registers a gateway under `name`; the first registered is the default.
    pub fn gateway(mut self, name: &str, gateway: Arc<dyn PaymentGateway>) -> Self {
        if self.default_gateway.is_none() {
            self.default_gateway = Some(name.to_owned());
        }
        self.gateways.insert(name.to_owned(), gateway);
        self
    }

    /// Which gateway bookings use when they name none.
    pub fn default_gateway(mut self, name: &str) -> Self {
        self.default_gateway = Some(name.to_owned());
        self
    }

    /// The secret that signs ticket codes (≥ 32 bytes).
    pub fn ticket_key(mut self, key: &[u8]) -> Self {
        self.ticket_key = Some(key.to_vec());
        self
    }

    /// Default hold duration.
    pub fn hold_ttl(mut self, ttl: Duration) -> Self {
        self.config.hold_ttl = ttl;
        self
    }

    /// Whether concurrent holds of one event are reserved in batches, and
    /// their checkouts opened and settled in batches ([`booking::CheckoutStore`]);
    /// see [`inventory::HoldBatching`]. `Auto` by default.
    pub fn hold_batching(mut self, batching: inventory::HoldBatching) -> Self {
        self.config.hold_batching = batching;
        self
    }

    /// The most requests one batch sends to the store (default 256).
    pub fn max_hold_batch(mut self, n: usize) -> Self {
        self.config.max_hold_batch = n;
        self
    }

    /// Checks the configuration and builds.
    pub fn build(mut self) -> Result<Ems> {
        if self.gateways.is_empty() {
            self.gateways
                .insert("fake".into(), Arc::new(FakeGateway::new("whsec_fake")));
            self.default_gateway.get_or_insert_with(|| "fake".into());
        }
        let default_gateway = self.default_gateway.expect("set with the first gateway");
        if !self.gateways.contains_key(&default_gateway) {
            return Err(Error::invalid(
                "default_gateway",
                format!("no gateway named {default_gateway:?}"),
            ));
        }
        if self.config.hold_ttl <= Duration::zero() {
            return Err(Error::invalid("hold_ttl", "must be positive"));
        }
        let signer = match self.ticket_key {
            Some(k) => TicketSigner::new(&k)?,
            None => TicketSigner::random(),
        };
        if self.config.max_hold_batch == 0 {
            return Err(Error::invalid("max_hold_batch", "must be at least 1"));
        }
        let batching = match self.config.hold_batching {
            inventory::HoldBatching::On => true,
            inventory::HoldBatching::Off => false,
            _ => self.store.prefers_hold_batching(),
        };
        let max = self.config.max_hold_batch;
        let combiner = batching.then(|| inventory::HoldCombiner::new(Arc::clone(&self.store), max));
        let opens =
            batching.then(|| batch::Combiner::new(booking::OpenOp(Arc::clone(&self.store)), max));
        let settles =
            batching.then(|| batch::Combiner::new(booking::SettleOp(Arc::clone(&self.store)), max));
        let releases = batching
            .then(|| batch::Combiner::new(inventory::ReleaseOp(Arc::clone(&self.store)), max));
        let hold_opens = (batching && self.store.opens_with_holds())
            .then(|| batch::Combiner::new(booking::HoldOpenOp(Arc::clone(&self.store)), max));
        Ok(Ems {
            inner: Arc::new(Inner {
                combiner,
                opens,
                settles,
                releases,
                hold_opens,
                store: self.store,
                clock: self.clock,
                gateways: self.gateways,
                default_gateway,
                signer,
                config: self.config,
            }),
        })
    }
}

impl Ems {
    /// Starts building an `Ems` over `store`.
    pub fn builder(store: Arc<dyn Store>) -> EmsBuilder {
        EmsBuilder {
            store,
            clock: Arc::new(SystemClock),
            gateways: Gateways::default(),
            default_gateway: None,
            ticket_key: None,
            config: EmsConfig::default(),
        }
    }

    /// The store behind this service.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The store as its ports: calls go straight to the backend. (A call on
    /// the `Arc` itself would go through the `Arc`'s forwarding impl, one
    /// more boxed future per call.)
    pub(crate) fn port(&self) -> &dyn Store {
        &*self.inner.store
    }

    /// Whether holds (and the checkout steps after them) go through batches.
    pub fn batches_holds(&self) -> bool {
        self.inner.combiner.is_some()
    }

    /// Reserves units: through the combiner when batching, else directly.
    ///
    /// Here and in the other queued steps the queue's future is boxed: held
    /// inline it would enlarge the direct path's future too, and with it every
    /// caller's, up to the checkout's, which is moved whole when it starts.
    pub(crate) async fn reserve(&self, request: inventory::HoldRequest) -> Result<inventory::Hold> {
        match &self.inner.combiner {
            Some(c) => Box::pin(c.hold(request)).await,
            None => self.port().try_hold(&request).await,
        }
    }

    /// Reserves units for a checkout's booking: as [`Ems::reserve`], with
    /// the store told the hold is to be booked at once.
    pub(crate) async fn reserve_to_book(
        &self,
        request: inventory::HoldRequest,
    ) -> Result<inventory::Hold> {
        match &self.inner.combiner {
            Some(c) => Box::pin(c.hold(request)).await,
            None => self.port().try_hold_to_book(&request).await,
        }
    }

    /// Gives hold `hold_id` of `event_id` up: through its event's queue when
    /// batching, else directly.
    pub(crate) async fn unreserve_hold(
        &self,
        hold_id: id::HoldId,
        event_id: id::EventId,
    ) -> Result<inventory::Hold> {
        let request = inventory::HoldRelease {
            hold_id,
            event_id,
            now: self.now(),
        };
        match &self.inner.releases {
            Some(c) => Box::pin(c.run(request)).await,
            None => {
                self.inner
                    .store
                    .release_hold(request.hold_id, request.now)
                    .await
            }
        }
    }

    /// Opens a checkout: through its event's queue when batching (a copy of
    /// the request joins it), else directly. Borrowed: the caller keeps the
    /// booking and payment the answer refers to.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its argument twice in its future"
    )]
    pub(crate) fn open_checkout<'a>(
        &'a self,
        request: &'a booking::OpenCheckout,
    ) -> impl std::future::Future<Output = Result<booking::Opened>> + Send + 'a {
        async move {
            match &self.inner.opens {
                Some(c) => Box::pin(c.run(request.clone())).await,
                // A batch of one: a store may open it in one step.
                None => sole_answer(
                    self.port()
                        .open_checkouts(std::slice::from_ref(request))
                        .await,
                ),
            }
        }
    }

    /// The queue placing a checkout's hold and opening its booking in one
    /// store step, if this service has one
    /// ([`booking::CheckoutStore::opens_with_holds`], with batching on).
    pub(crate) fn hold_opens(&self) -> Option<&batch::Combiner<booking::HoldOpenOp>> {
        self.inner.hold_opens.as_ref()
    }

    /// Settles a paid checkout: through its event's queue when batching (a
    /// copy of the request joins it), else directly. Borrowed, so the caller
    /// keeps the request's parts (the confirmation's tickets, the booking)
    /// without copying them.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its argument twice in its future"
    )]
    pub(crate) fn settle_paid<'a>(
        &'a self,
        request: &'a booking::SettlePaid,
    ) -> impl std::future::Future<Output = Result<booking::Settled>> + Send + 'a {
        async move {
            match &self.inner.settles {
                Some(c) => Box::pin(c.run(request.clone())).await,
                None => sole_answer(self.port().settle_paid(std::slice::from_ref(request)).await),
            }
        }
    }

    /// The configured clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Now, by the configured clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The configuration.
    pub fn config(&self) -> &EmsConfig {
        &self.inner.config
    }

    /// The ticket-code signer.
    pub fn signer(&self) -> &TicketSigner {
        &self.inner.signer
    }

    /// A registered gateway by name.
    pub fn gateway(&self, name: &str) -> Result<Arc<dyn PaymentGateway>> {
        self.inner.gateways.get(name).cloned().ok_or_else(|| {
            payment::GatewayError::UnknownGateway {
                name: name.to_owned(),
            }
            .into()
        })
    }

    fn gateway_name(&self, requested: Option<&str>) -> Result<String> {
        let name = requested.unwrap_or(&self.inner.default_gateway);
        if !self.inner.gateways.contains_key(name) {
            return Err(Error::invalid(
                "gateway",
                format!("no gateway named {name:?}"),
            ));
        }
        Ok(name.to_owned())
    }
}

/// The answer of a batch of one.
fn sole_answer<T>(mut answers: Vec<Result<T>>) -> Result<T> {
    answers.pop().unwrap_or_else(|| Err(missing_answer()))
}

/// What a batch port operation that answered nothing for a request means.
fn missing_answer() -> Error {
    Error::Backend {
        backend: "store",
        source: "a batch answered fewer requests than it was given".into(),
    }
}
