use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::gateway::*;
use crate::clock::Clock;

/// Timeouts, retries and circuit breaking for a [`ResilientGateway`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResiliencePolicy {
    /// Longest wait for one call.
    pub timeout: Duration,
    /// Extra attempts for idempotent calls that failed retryably.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each time.
    pub backoff: Duration,
    /// Consecutive retryable failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before letting one trial through.
    pub cooldown: Duration,
}

impl Default for ResiliencePolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_retries: 2,
            backoff: Duration::from_millis(100),
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<DateTime<Utc>>,
}

/// Wraps any gateway with a timeout per call, retries of idempotent calls
/// (payment creation and refunds only when the gateway takes idempotency keys;
/// status reads and voids always), and a circuit breaker timed by the [`Clock`]:
/// after `failure_threshold` consecutive retryable failures, calls fail fast with
/// [`GatewayError::CircuitOpen`] until `cooldown` has passed, then one trial call
/// decides whether it closes again. Declines and rejections are answers, not
/// failures: they neither retry nor trip the breaker.
pub struct ResilientGateway<G> {
    inner: G,
    clock: Arc<dyn Clock>,
    policy: ResiliencePolicy,
    breaker: Mutex<Breaker>,
}

impl<G: PaymentGateway> ResilientGateway<G> {
    /// Wraps `inner`.
    pub fn new(inner: G, clock: Arc<dyn Clock>, policy: ResiliencePolicy) -> Self {
        Self {
            inner,
            clock,
            policy,
            breaker: Mutex::new(Breaker::default()),
        }
    }

    /// The wrapped gateway.
    pub fn inner(&self) -> &G {
        &self.inner
    }

    /// Whether calls are currently refused.
    pub fn is_open(&self) -> bool {
        let b = self.breaker.lock();
        b.open_until.is_some_and(|until| self.clock.now() < until)
    }

    fn admit(&self) -> Result<(), GatewayError> {
        let b = self.breaker.lock();
        match b.open_until {
            Some(until) if self.clock.now() < until => {
                let left = (until - self.clock.now()).to_std().unwrap_or_default();
                Err(GatewayError::CircuitOpen { retry_after: left })
            }
            _ => Ok(()),
        }
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock();
        if ok {
            b.consecutive_failures = 0;
            b.open_until = None;
            return;
        }
        b.consecutive_failures += 1;
        let half_open_trial_failed = b.open_until.is_some();
        if b.consecutive_failures >= self.policy.failure_threshold || half_open_trial_failed {
            let cooldown = chrono::Duration::from_std(self.policy.cooldown)
                .unwrap_or(chrono::Duration::seconds(30));
            b.open_until = Some(self.clock.now() + cooldown);
        }
    }

    async fn call<T, F, Fut>(&self, idempotent: bool, mut f: F) -> Result<T, GatewayError>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, GatewayError>> + Send,
        T: Send,
    {
        let attempts = if idempotent {
            self.policy.max_retries + 1
        } else {
            1
        };
        let mut wait = self.policy.backoff;
        let mut last = GatewayError::Timeout;
        for attempt in 0..attempts {
            self.admit()?;
            let outcome = match tokio::time::timeout(self.policy.timeout, f()).await {
                Ok(r) => r,
                Err(_) => Err(GatewayError::Timeout),
            };
            match outcome {
                Ok(v) => {
                    self.record(true);
                    return Ok(v);
                }
                Err(e) if e.is_retryable() => {
                    self.record(false);
                    last = e;
                    if attempt + 1 < attempts {
                        tokio::time::sleep(wait).await;
                        wait = wait.saturating_mul(2);
                    }
                }
                Err(e) => {
                    // An answer from a healthy gateway.
                    self.record(true);
                    return Err(e);
                }
            }
        }
        Err(last)
    }
}

#[async_trait]
impl<G: PaymentGateway> PaymentGateway for ResilientGateway<G> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn create_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<GatewayPayment, GatewayError> {
        let idempotent = self.inner.capabilities().idempotency_keys;
        self.call(idempotent, || self.inner.create_payment(request))
            .await
    }

    async fn payment_status(&self, reference: &str) -> Result<GatewayPayment, GatewayError> {
        self.call(true, || self.inner.payment_status(reference))
            .await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, GatewayError> {
        let idempotent = self.inner.capabilities().idempotency_keys;
        self.call(idempotent, || self.inner.refund(request)).await
    }

    async fn capture(&self, reference: &str, key: &str) -> Result<GatewayPayment, GatewayError> {
        let idempotent = self.inner.capabilities().idempotency_keys;
        self.call(idempotent, || self.inner.capture(reference, key))
            .await
    }

    async fn void(&self, reference: &str) -> Result<(), GatewayError> {
        self.call(true, || self.inner.void(reference)).await
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookEvent, GatewayError> {
        self.inner.parse_webhook(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::money::Money;
    use crate::payment::{FakeBehavior, FakeGateway};

    fn request(key: &str) -> PaymentRequest {
        PaymentRequest {
            idempotency_key: key.into(),
            amount: Money::parse("10", "EUR").unwrap(),
            booking_id: Default::default(),
            customer: Default::default(),
            description: "t".into(),
        }
    }

    fn policy() -> ResiliencePolicy {
        ResiliencePolicy {
            timeout: Duration::from_millis(50),
            max_retries: 2,
            backoff: Duration::from_millis(1),
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_create_is_retried_after_a_timeout() {
        let fake = FakeGateway::new("s");
        fake.push(FakeBehavior::Timeout);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let g = ResilientGateway::new(fake.clone(), clock, policy());
        let p = g.create_payment(&request("a")).await.unwrap();
        assert_eq!(p.status, GatewayPaymentStatus::Succeeded);
        assert_eq!(fake.calls().0, 2, "one failed call and one retry");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_gateway_times_out() {
        let fake = FakeGateway::new("s");
        fake.set_default(FakeBehavior::Delay(Duration::from_secs(5)));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let g = ResilientGateway::new(
            fake.clone(),
            clock,
            ResiliencePolicy {
                max_retries: 0,
                ..policy()
            },
        );
        assert!(matches!(
            g.create_payment(&request("b")).await,
            Err(GatewayError::Timeout)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn declines_are_not_retried() {
        let fake = FakeGateway::new("s");
        fake.push(FakeBehavior::Decline("no".into()));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let g = ResilientGateway::new(fake.clone(), clock, policy());
        assert!(matches!(
            g.create_payment(&request("c")).await,
            Err(GatewayError::Declined { .. })
        ));
        assert_eq!(fake.calls().0, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_repeated_failures_and_closes_after_cooldown() {
        let fake = FakeGateway::new("s");
        fake.set_default(FakeBehavior::Unavailable);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let g = ResilientGateway::new(fake.clone(), clock.clone(), policy());
        assert!(g.create_payment(&request("d")).await.is_err());
        assert!(g.is_open(), "three failed attempts open the circuit");
        let calls = fake.calls().0;
        assert!(matches!(
            g.create_payment(&request("e")).await,
            Err(GatewayError::CircuitOpen { .. })
        ));
        assert_eq!(fake.calls().0, calls, "an open circuit makes no call");
        clock.advance(chrono::Duration::seconds(31));
        fake.set_default(FakeBehavior::Succeed);
        assert!(
            g.create_payment(&request("f")).await.is_ok(),
            "trial call after cooldown"
        );
        assert!(!g.is_open());
    }
}
