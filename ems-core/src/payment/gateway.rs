use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::BoxError;
use crate::id::{BookingId, UserId};
use crate::money::Money;

/// Why a gateway call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The payer's payment method was declined; retrying will not help.
    #[error("payment declined: {reason}")]
    Declined {
        /// The gateway's reason.
        reason: String,
    },
    /// The call did not answer in time; the outcome is unknown.
    #[error("payment gateway timed out")]
    Timeout,
    /// The gateway is down or overloaded.
    #[error("payment gateway unavailable: {reason}")]
    Unavailable {
        /// What was observed.
        reason: String,
    },
    /// Calls are suspended after repeated failures.
    #[error("payment gateway circuit open, retry after {retry_after:?}")]
    CircuitOpen {
        /// When the breaker lets a trial call through.
        retry_after: std::time::Duration,
    },
    /// The gateway rejected the request itself (bad amount, unknown reference …).
    #[error("payment gateway rejected the request: {reason}")]
    Rejected {
        /// The gateway's reason.
        reason: String,
    },
    /// A webhook's signature does not verify.
    #[error("webhook signature invalid")]
    InvalidSignature,
    /// A webhook's body cannot be understood.
    #[error("webhook payload invalid: {reason}")]
    InvalidWebhook {
        /// What is wrong.
        reason: String,
    },
    /// No gateway of that name is configured.
    #[error("unknown payment gateway {name:?}")]
    UnknownGateway {
        /// The requested name.
        name: String,
    },
    /// The gateway lacks this capability.
    #[error("payment gateway does not support {0}")]
    NotSupported(&'static str),
    /// Anything else, with its cause.
    #[error("payment gateway error")]
    Other(#[source] BoxError),
}

impl GatewayError {
    /// Whether the same call may succeed later (timeouts, outages, open circuit).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            GatewayError::Timeout
                | GatewayError::Unavailable { .. }
                | GatewayError::CircuitOpen { .. }
        )
    }
}

/// What a gateway can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Refunds of part of a payment.
    pub partial_refunds: bool,
    /// Idempotency keys on create/capture/refund, so those calls may be retried.
    pub idempotency_keys: bool,
    /// Authorize first, capture later.
    pub manual_capture: bool,
    /// Voiding a payment that has not completed.
    pub void: bool,
    /// Pushes outcomes by webhook.
    pub webhooks: bool,
}

/// A request to take money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRequest {
    /// The same key always means the same payment at the gateway.
    pub idempotency_key: String,
    /// Amount.
    pub amount: Money,
    /// The booking it pays for.
    pub booking_id: BookingId,
    /// The payer.
    pub customer: UserId,
    /// Statement text.
    pub description: String,
}

/// What the gateway says about a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum GatewayPaymentStatus {
    /// Money taken.
    Succeeded,
    /// Authorized; needs [`PaymentGateway::capture`].
    Authorized,
    /// Not decided yet: a webhook (or a poll) will tell.
    Pending,
    /// Declined.
    Declined {
        /// The reason given.
        reason: String,
    },
}

/// A payment as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayPayment {
    /// The gateway's reference.
    pub reference: String,
    /// Its state.
    pub status: GatewayPaymentStatus,
}

/// A request to give money back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    /// The same key always means the same refund.
    pub idempotency_key: String,
    /// The payment's gateway reference.
    pub payment_reference: String,
    /// Amount (the whole payment or part of it).
    pub amount: Money,
    /// Why.
    pub reason: String,
}

/// A refund as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRefund {
    /// The gateway's refund reference.
    pub reference: String,
    /// Whether the money is already on its way back (`false`: pending at the gateway).
    pub completed: bool,
}

/// A webhook call as received over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRequest {
    /// The signature header's value.
    pub signature: Option<String>,
    /// The raw body, exactly as received.
    pub body: Vec<u8>,
}

/// What a verified webhook reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The gateway's id of this notification (deliveries may repeat it).
    pub id: String,
    /// The payment reference it is about.
    pub payment_reference: String,
    /// What happened.
    pub kind: WebhookKind,
}

/// Outcomes a webhook can report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum WebhookKind {
    /// The payment succeeded.
    PaymentSucceeded,
    /// The payment failed.
    PaymentFailed {
        /// Why.
        reason: String,
    },
    /// A refund completed.
    RefundSucceeded {
        /// The refund's gateway reference.
        refund_reference: String,
    },
}

/// A payment provider. Implement it to plug in Stripe, Adyen, a bank … and register
/// it with [`EmsBuilder::gateway`](crate::EmsBuilder::gateway).
///
/// # Contract
/// - `create_payment` with a key already used returns the same payment (never
///   charges twice) when [`Capabilities::idempotency_keys`] is set;
/// - `refund` never returns more than was paid: over-refunds are `Rejected`;
/// - `parse_webhook` verifies the signature before reading anything.
///
/// ```
/// use async_trait::async_trait;
/// use ems_core::payment::*;
///
/// struct AlwaysPays;
///
/// #[async_trait]
/// impl PaymentGateway for AlwaysPays {
///     fn capabilities(&self) -> Capabilities {
///         Capabilities { partial_refunds: true, idempotency_keys: true, manual_capture: false, void: false, webhooks: false }
///     }
///     async fn create_payment(&self, req: &PaymentRequest) -> Result<GatewayPayment, GatewayError> {
///         Ok(GatewayPayment { reference: format!("pay_{}", req.idempotency_key), status: GatewayPaymentStatus::Succeeded })
///     }
///     async fn payment_status(&self, reference: &str) -> Result<GatewayPayment, GatewayError> {
///         Ok(GatewayPayment { reference: reference.into(), status: GatewayPaymentStatus::Succeeded })
///     }
///     async fn refund(&self, req: &RefundRequest) -> Result<GatewayRefund, GatewayError> {
///         Ok(GatewayRefund { reference: format!("re_{}", req.idempotency_key), completed: true })
///     }
/// }
/// ```
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// What this gateway supports.
    fn capabilities(&self) -> Capabilities;
    /// Starts (and, unless the gateway authorizes only, completes) a payment.
    async fn create_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<GatewayPayment, GatewayError>;
    /// Asks the gateway for a payment's current state (polling instead of webhooks).
    async fn payment_status(&self, reference: &str) -> Result<GatewayPayment, GatewayError>;
    /// Returns money on a succeeded payment.
    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, GatewayError>;
    /// Captures an authorized payment.
    async fn capture(
        &self,
        _reference: &str,
        _idempotency_key: &str,
    ) -> Result<GatewayPayment, GatewayError> {
        Err(GatewayError::NotSupported("manual capture"))
    }
    /// Cancels a payment that has not completed.
    async fn void(&self, _reference: &str) -> Result<(), GatewayError> {
        Err(GatewayError::NotSupported("void"))
    }
    /// Verifies a webhook's signature and reads it.
    fn parse_webhook(&self, _request: &WebhookRequest) -> Result<WebhookEvent, GatewayError> {
        Err(GatewayError::NotSupported("webhooks"))
    }
}
