use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::gateway::{GatewayError, PaymentGateway};
use super::resilient::{ResiliencePolicy, ResilientGateway};
use super::FakeGateway;
use crate::clock::Clock;

/// How to build one gateway: its name in ems, the kind of gateway (a registered
/// factory), its settings, and optionally resilience.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GatewayConfig {
    /// The name bookings refer to (e.g. `"card"`).
    pub name: String,
    /// The registered kind (e.g. `"fake"`, `"stripe"`).
    pub kind: String,
    /// Kind-specific settings (keys, endpoints …).
    pub settings: BTreeMap<String, String>,
    /// Wraps the gateway in a [`ResilientGateway`] when set.
    pub resilience: Option<ResiliencePolicy>,
}

/// Builds a gateway of one kind from its configuration.
pub type GatewayFactory =
    Arc<dyn Fn(&GatewayConfig) -> Result<Arc<dyn PaymentGateway>, GatewayError> + Send + Sync>;

/// Gateway factories by kind. `fake` is always registered (setting `webhook_secret`).
///
/// ```
/// use std::sync::Arc;
/// use ems_core::clock::SystemClock;
/// use ems_core::payment::{GatewayConfig, GatewayRegistry};
/// let registry = GatewayRegistry::new();
/// let config = GatewayConfig { name: "card".into(), kind: "fake".into(), ..Default::default() };
/// let gateway = registry.build(&config, Arc::new(SystemClock)).unwrap();
/// assert!(gateway.capabilities().partial_refunds);
/// assert!(registry.build(&GatewayConfig { kind: "nope".into(), ..config }, Arc::new(SystemClock)).is_err());
/// ```
#[derive(Clone)]
pub struct GatewayRegistry {
    factories: HashMap<String, GatewayFactory>,
}

impl std::fmt::Debug for GatewayRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayRegistry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Default for GatewayRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayRegistry {
    /// A registry knowing the `fake` kind.
    pub fn new() -> Self {
        let mut r = Self {
            factories: HashMap::new(),
        };
        r.register(
            "fake",
            Arc::new(|c: &GatewayConfig| {
                let secret = c
                    .settings
                    .get("webhook_secret")
                    .map(String::as_str)
                    .unwrap_or("whsec_fake");
                Ok(Arc::new(FakeGateway::new(secret)) as Arc<dyn PaymentGateway>)
            }),
        );
        r
    }

    /// Registers (or replaces) the factory of `kind`.
    pub fn register(&mut self, kind: &str, factory: GatewayFactory) {
        self.factories.insert(kind.to_owned(), factory);
    }

    /// Registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<_> = self.factories.keys().cloned().collect();
        k.sort();
        k
    }

    /// Builds the gateway `config` describes.
    pub fn build(
        &self,
        config: &GatewayConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<dyn PaymentGateway>, GatewayError> {
        let factory =
            self.factories
                .get(&config.kind)
                .ok_or_else(|| GatewayError::UnknownGateway {
                    name: config.kind.clone(),
                })?;
        let gateway = factory(config)?;
        Ok(match config.resilience {
            Some(policy) => Arc::new(ResilientGateway::new(gateway, clock, policy)),
            None => gateway,
        })
    }
}

#[async_trait::async_trait]
impl<G: PaymentGateway + ?Sized> PaymentGateway for Arc<G> {
    fn capabilities(&self) -> super::Capabilities {
        (**self).capabilities()
    }
    async fn create_payment(
        &self,
        r: &super::PaymentRequest,
    ) -> Result<super::GatewayPayment, GatewayError> {
        (**self).create_payment(r).await
    }
    async fn payment_status(&self, reference: &str) -> Result<super::GatewayPayment, GatewayError> {
        (**self).payment_status(reference).await
    }
    async fn refund(&self, r: &super::RefundRequest) -> Result<super::GatewayRefund, GatewayError> {
        (**self).refund(r).await
    }
    async fn capture(
        &self,
        reference: &str,
        key: &str,
    ) -> Result<super::GatewayPayment, GatewayError> {
        (**self).capture(reference, key).await
    }
    async fn void(&self, reference: &str) -> Result<(), GatewayError> {
        (**self).void(reference).await
    }
    fn parse_webhook(
        &self,
        r: &super::WebhookRequest,
    ) -> Result<super::WebhookEvent, GatewayError> {
        (**self).parse_webhook(r)
    }
}
