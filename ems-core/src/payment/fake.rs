use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use super::gateway::*;
use crate::money::Money;

/// What the [`FakeGateway`] does with the next `create_payment`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FakeBehavior {
    /// Charge and succeed at once.
    Succeed,
    /// Authorize only; a capture completes it.
    Authorize,
    /// Accept and stay pending; [`FakeGateway::settle`] decides later (webhook).
    Pending,
    /// Decline with this reason.
    Decline(String),
    /// Answer with a timeout without charging.
    Timeout,
    /// Charge, then answer with a timeout (the outcome the caller cannot see).
    TimeoutAfterCharge,
    /// Answer `Unavailable` without charging.
    Unavailable,
    /// Wait this long (on tokio's clock), then charge and succeed.
    Delay(std::time::Duration),
}

#[derive(Debug, Clone)]
struct FakePayment {
    /// The idempotency key it was created under.
    key: Box<str>,
    amount: Money,
    status: GatewayPaymentStatus,
    refunded: Money,
}

#[derive(Debug, Default)]
struct State {
    script: VecDeque<FakeBehavior>,
    default: Option<FakeBehavior>,
    refund_failures: u32,
    /// By the number its reference spells (`fake_pay_{32 hex digits}`): a
    /// reference is parsed once per call instead of hashed as a string on
    /// every rehash. The number is a keyed 128-bit digest of the payment's
    /// idempotency key (see [`State::number`]), so one index serves lookups
    /// by reference and by key.
    payments: Payments,
    /// Two independently seeded hashers (random per gateway), one for each
    /// half of a payment's number.
    numbering: [ahash::RandomState; 2],
    refunds: Map<String, GatewayRefund>,
    create_calls: u32,
    refund_calls: u32,
    next_event: u64,
}

/// The fake's maps: aHash, since its keys are the fake's own references and the
/// callers' idempotency keys, nothing an attacker picks, and SipHash made the
/// fake a sixth of a whole in-memory checkout.
type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// The fake's payments: records appended in chunks of [`Payments::CHUNK`]
/// (a record never moves once written), found by number through an index
/// of 20-byte entries. A gateway used for load tests and benchmarks holds
/// hundreds of thousands of payments; a map of whole records would move
/// every one of them on each of its doublings, this index moves a fifth
/// of the bytes and the records stay put.
#[derive(Debug, Default)]
struct Payments {
    /// Each payment's slot in `chunks`, by number.
    index: Map<Uuid, u32>,
    chunks: Vec<Vec<FakePayment>>,
}

impl Payments {
    /// Records per chunk.
    const CHUNK: usize = 4096;

    fn slot(chunks: &[Vec<FakePayment>], slot: u32) -> &FakePayment {
        let slot = slot as usize;
        &chunks[slot / Self::CHUNK][slot % Self::CHUNK]
    }

    fn slot_mut(chunks: &mut [Vec<FakePayment>], slot: u32) -> &mut FakePayment {
        let slot = slot as usize;
        &mut chunks[slot / Self::CHUNK][slot % Self::CHUNK]
    }

    fn get(&self, id: &Uuid) -> Option<&FakePayment> {
        let slot = *self.index.get(id)?;
        Some(Self::slot(&self.chunks, slot))
    }

    fn get_mut(&mut self, id: &Uuid) -> Option<&mut FakePayment> {
        let slot = *self.index.get(id)?;
        Some(Self::slot_mut(&mut self.chunks, slot))
    }

    /// Appends `payment` and answers its slot.
    fn push(chunks: &mut Vec<Vec<FakePayment>>, payment: FakePayment) -> u32 {
        if chunks.last().is_none_or(|c| c.len() == Self::CHUNK) {
            chunks.push(Vec::with_capacity(Self::CHUNK));
        }
        let full = (chunks.len() - 1) * Self::CHUNK;
        let last = chunks
            .last_mut()
            .expect("a chunk with room was just ensured");
        last.push(payment);
        u32::try_from(full + last.len() - 1).expect("fewer than 2^32 fake payments")
    }

    /// Records `payment` as number `id`'s, over any record it had.
    fn insert(&mut self, id: Uuid, payment: FakePayment) {
        match self.index.entry(id) {
            Entry::Occupied(slot) => *Self::slot_mut(&mut self.chunks, *slot.get()) = payment,
            Entry::Vacant(slot) => {
                slot.insert(Self::push(&mut self.chunks, payment));
            }
        }
    }
}

const PAYMENT_PREFIX: &str = "fake_pay_";

/// The reference of the payment numbered `id`.
fn payment_reference(id: Uuid) -> String {
    let mut digits = [0u8; uuid::fmt::Simple::LENGTH];
    let digits = id.simple().encode_lower(&mut digits);
    let mut reference = String::with_capacity(PAYMENT_PREFIX.len() + digits.len());
    reference.push_str(PAYMENT_PREFIX);
    reference.push_str(digits);
    reference
}

/// The payment number a reference of this gateway spells, if it is one.
fn payment_id(reference: &str) -> Option<Uuid> {
    let simple = reference.strip_prefix(PAYMENT_PREFIX)?;
    // Only the form this gateway hands out: 32 lowercase hex digits.
    (simple.len() == 32 && !simple.bytes().any(|b| b.is_ascii_uppercase()))
        .then(|| Uuid::try_parse(simple).ok())
        .flatten()
}

impl State {
    /// The number of the payment created under idempotency key `key`: a
    /// keyed digest, so a retried key finds its payment with one lookup.
    /// The payment found is checked against the key, so even a collision
    /// (odds about 2^-128 per pair) is refused rather than answered with
    /// another key's payment.
    fn number(&self, key: &str) -> Uuid {
        let [a, b] = &self.numbering;
        Uuid::from_u64_pair(a.hash_one(key), b.hash_one(key))
    }

    fn payment_mut(&mut self, reference: &str) -> Option<&mut FakePayment> {
        self.payments.get_mut(&payment_id(reference)?)
    }

    fn payment(&self, reference: &str) -> Option<&FakePayment> {
        self.payments.get(&payment_id(reference)?)
    }
}

/// A scriptable in-process gateway for tests and demos: decide per call whether it
/// succeeds, declines, times out or stays pending, then deliver signed webhooks
/// (twice, late, out of order) as a real provider would. Clones share state.
///
/// ```
/// # tokio_test_block_on(async {
/// use ems_core::payment::*;
/// use ems_core::money::Money;
/// let fake = FakeGateway::new("whsec_test");
/// fake.push(FakeBehavior::Decline("insufficient funds".into()));
/// let req = PaymentRequest {
///     idempotency_key: "k1".into(), amount: Money::parse("10", "EUR").unwrap(),
///     booking_id: Default::default(), customer: Default::default(), description: "demo".into(),
/// };
/// assert!(matches!(fake.create_payment(&req).await, Err(GatewayError::Declined { .. })));
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     futures::executor::block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct FakeGateway {
    state: Arc<Mutex<State>>,
    secret: Arc<Vec<u8>>,
}

impl std::fmt::Debug for FakeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGateway").finish_non_exhaustive()
    }
}

impl FakeGateway {
    /// A gateway that signs webhooks with `webhook_secret` and succeeds by default.
    pub fn new(webhook_secret: &str) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            secret: Arc::new(webhook_secret.as_bytes().to_vec()),
        }
    }

    /// Queues the behaviour of the next `create_payment` call (first in, first used).
    pub fn push(&self, behavior: FakeBehavior) -> &Self {
        self.state.lock().script.push_back(behavior);
        self
    }

    /// Behaviour once the queue is empty (default: [`FakeBehavior::Succeed`]).
    pub fn set_default(&self, behavior: FakeBehavior) {
        self.state.lock().default = Some(behavior);
    }

    /// Makes the next `n` refund calls fail with `Unavailable`.
    pub fn fail_next_refunds(&self, n: u32) {
        self.state.lock().refund_failures = n;
    }

    /// Decides a pending payment and returns the signed webhook announcing it.
    pub fn settle(&self, reference: &str, succeed: bool) -> WebhookRequest {
        let kind = {
            let mut s = self.state.lock();
            let status = if succeed {
                GatewayPaymentStatus::Succeeded
            } else {
                GatewayPaymentStatus::Declined {
                    reason: "declined after review".into(),
                }
            };
            if let Some(p) = s.payment_mut(reference) {
                p.status = status;
            }
            if succeed {
                WebhookKind::PaymentSucceeded
            } else {
                WebhookKind::PaymentFailed {
                    reason: "declined after review".into(),
                }
            }
        };
        self.webhook(reference, kind)
    }

    /// A signed webhook of any kind about `reference` (for out-of-order tests).
    pub fn webhook(&self, reference: &str, kind: WebhookKind) -> WebhookRequest {
        let id = {
            let mut s = self.state.lock();
            s.next_event += 1;
            format!("evt_{}", s.next_event)
        };
        let event = WebhookEvent {
            id,
            payment_reference: reference.to_owned(),
            kind,
        };
        let body = serde_json::to_vec(&event).expect("webhook events are plain data");
        let signature = Some(self.sign(&body));
        WebhookRequest { signature, body }
    }

    fn sign(&self, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(body);
        format!("v1={}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// Total amount currently charged and not refunded on `reference`.
    pub fn net_charged(&self, reference: &str) -> Option<Money> {
        let s = self.state.lock();
        let p = s.payment(reference)?;
        let charged = matches!(p.status, GatewayPaymentStatus::Succeeded);
        let gross = if charged {
            p.amount
        } else {
            Money::zero(p.amount.currency())
        };
        gross.checked_sub(p.refunded).ok()
    }

    /// How many `create_payment` and `refund` calls reached the gateway.
    pub fn calls(&self) -> (u32, u32) {
        let s = self.state.lock();
        (s.create_calls, s.refund_calls)
    }

    /// Every payment reference the gateway knows.
    pub fn references(&self) -> Vec<String> {
        self.state
            .lock()
            .payments
            .index
            .keys()
            .map(|id| payment_reference(*id))
            .collect()
    }
}

/// The answer to a key's retry: the payment it created, if it is that
/// key's with the same amount.
fn replayed(
    p: &FakePayment,
    id: Uuid,
    request: &PaymentRequest,
) -> Result<GatewayPayment, GatewayError> {
    if *p.key != *request.idempotency_key {
        return Err(GatewayError::Rejected {
            reason: "idempotency key collides with another payment's".into(),
        });
    }
    if p.amount != request.amount {
        return Err(GatewayError::Rejected {
            reason: "idempotency key reused with another amount".into(),
        });
    }
    Ok(GatewayPayment {
        reference: payment_reference(id),
        status: p.status.clone(),
    })
}

/// The status `behavior` gives a new payment, or the error it answers
/// without charging.
fn charge_status(behavior: &FakeBehavior) -> Result<GatewayPaymentStatus, GatewayError> {
    match behavior {
        FakeBehavior::Succeed | FakeBehavior::Delay(_) | FakeBehavior::TimeoutAfterCharge => {
            Ok(GatewayPaymentStatus::Succeeded)
        }
        FakeBehavior::Authorize => Ok(GatewayPaymentStatus::Authorized),
        FakeBehavior::Pending => Ok(GatewayPaymentStatus::Pending),
        FakeBehavior::Decline(reason) => Err(GatewayError::Declined {
            reason: reason.clone(),
        }),
        FakeBehavior::Timeout => Err(GatewayError::Timeout),
        FakeBehavior::Unavailable => Err(GatewayError::Unavailable {
            reason: "fake outage".into(),
        }),
    }
}

/// The answer for payment `id`, charged with `status` under `behavior`.
fn answer(
    id: Uuid,
    status: GatewayPaymentStatus,
    behavior: &FakeBehavior,
) -> Result<GatewayPayment, GatewayError> {
    if *behavior == FakeBehavior::TimeoutAfterCharge {
        return Err(GatewayError::Timeout);
    }
    Ok(GatewayPayment {
        reference: payment_reference(id),
        status,
    })
}

impl FakePayment {
    fn new(request: &PaymentRequest, status: GatewayPaymentStatus) -> Self {
        Self {
            key: request.idempotency_key.as_str().into(),
            amount: request.amount,
            status,
            refunded: Money::zero(request.amount.currency()),
        }
    }
}

fn unknown_payment(reference: &str) -> GatewayError {
    GatewayError::Rejected {
        reason: format!("unknown payment {reference}"),
    }
}

#[async_trait]
impl PaymentGateway for FakeGateway {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            partial_refunds: true,
            idempotency_keys: true,
            manual_capture: true,
            void: true,
            webhooks: true,
        }
    }

    async fn create_payment(
        &self,
        request: &PaymentRequest,
    ) -> Result<GatewayPayment, GatewayError> {
        let (id, behavior) = {
            let mut guard = self.state.lock();
            let s = &mut *guard;
            s.create_calls += 1;
            let id = s.number(&request.idempotency_key);
            let Payments { index, chunks } = &mut s.payments;
            let slot = match index.entry(id) {
                Entry::Occupied(p) => {
                    return replayed(Payments::slot(chunks, *p.get()), id, request)
                }
                Entry::Vacant(slot) => slot,
            };
            let behavior = s
                .script
                .pop_front()
                .or_else(|| s.default.clone())
                .unwrap_or(FakeBehavior::Succeed);
            if !matches!(behavior, FakeBehavior::Delay(_)) {
                // Decided at once: recorded under the same lock, in the
                // slot the key's look-up found.
                let status = charge_status(&behavior)?;
                slot.insert(Payments::push(
                    chunks,
                    FakePayment::new(request, status.clone()),
                ));
                return answer(id, status, &behavior);
            }
            (id, behavior)
        };
        if let FakeBehavior::Delay(d) = &behavior {
            // Boxed: a timer is most of this future's size otherwise, and
            // every call's future (the port boxes it) would carry one.
            Box::pin(tokio::time::sleep(*d)).await;
        }
        let status = charge_status(&behavior)?;
        self.state
            .lock()
            .payments
            .insert(id, FakePayment::new(request, status.clone()));
        answer(id, status, &behavior)
    }

    async fn payment_status(&self, reference: &str) -> Result<GatewayPayment, GatewayError> {
        let s = self.state.lock();
        let p = s
            .payment(reference)
            .ok_or_else(|| unknown_payment(reference))?;
        Ok(GatewayPayment {
            reference: reference.to_owned(),
            status: p.status.clone(),
        })
    }

    async fn capture(&self, reference: &str, _key: &str) -> Result<GatewayPayment, GatewayError> {
        let mut s = self.state.lock();
        let p = s
            .payment_mut(reference)
            .ok_or_else(|| unknown_payment(reference))?;
        match p.status {
            GatewayPaymentStatus::Authorized | GatewayPaymentStatus::Succeeded => {
                p.status = GatewayPaymentStatus::Succeeded;
                Ok(GatewayPayment {
                    reference: reference.to_owned(),
                    status: p.status.clone(),
                })
            }
            _ => Err(GatewayError::Rejected {
                reason: "payment is not authorized".into(),
            }),
        }
    }

    async fn void(&self, reference: &str) -> Result<(), GatewayError> {
        let mut s = self.state.lock();
        let p = s
            .payment_mut(reference)
            .ok_or_else(|| unknown_payment(reference))?;
        match p.status {
            GatewayPaymentStatus::Succeeded => Err(GatewayError::Rejected {
                reason: "payment already completed; refund it".into(),
            }),
            _ => {
                p.status = GatewayPaymentStatus::Declined {
                    reason: "voided".into(),
                };
                Ok(())
            }
        }
    }

    async fn refund(&self, request: &RefundRequest) -> Result<GatewayRefund, GatewayError> {
        let mut s = self.state.lock();
        s.refund_calls += 1;
        if let Some(existing) = s.refunds.get(&request.idempotency_key) {
            return Ok(existing.clone());
        }
        if s.refund_failures > 0 {
            s.refund_failures -= 1;
            return Err(GatewayError::Unavailable {
                reason: "fake refund outage".into(),
            });
        }
        let p =
            s.payment_mut(&request.payment_reference)
                .ok_or_else(|| GatewayError::Rejected {
                    reason: format!("unknown payment {}", request.payment_reference),
                })?;
        if p.status != GatewayPaymentStatus::Succeeded {
            return Err(GatewayError::Rejected {
                reason: "only succeeded payments can be refunded".into(),
            });
        }
        let after = p
            .refunded
            .checked_add(request.amount)
            .map_err(|e| GatewayError::Rejected {
                reason: e.to_string(),
            })?;
        if after.amount() > p.amount.amount()
            || request.amount.is_negative()
            || request.amount.is_zero()
        {
            return Err(GatewayError::Rejected {
                reason: format!("cannot refund {} of {}", request.amount, p.amount),
            });
        }
        p.refunded = after;
        let refund = GatewayRefund {
            reference: format!("fake_re_{}", uuid::Uuid::now_v7().simple()),
            completed: true,
        };
        s.refunds
            .insert(request.idempotency_key.clone(), refund.clone());
        Ok(refund)
    }

    fn parse_webhook(&self, request: &WebhookRequest) -> Result<WebhookEvent, GatewayError> {
        let given = request
            .signature
            .as_deref()
            .ok_or(GatewayError::InvalidSignature)?;
        let given = given
            .strip_prefix("v1=")
            .ok_or(GatewayError::InvalidSignature)?;
        let given = URL_SAFE_NO_PAD
            .decode(given)
            .map_err(|_| GatewayError::InvalidSignature)?;
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(&request.body);
        mac.verify_slice(&given)
            .map_err(|_| GatewayError::InvalidSignature)?;
        serde_json::from_slice(&request.body).map_err(|e| GatewayError::InvalidWebhook {
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{BookingId, UserId};

    fn request(key: &str, amount: &str) -> PaymentRequest {
        PaymentRequest {
            idempotency_key: key.into(),
            amount: Money::parse(amount, "EUR").unwrap(),
            booking_id: BookingId::new(),
            customer: UserId::new(),
            description: "test".into(),
        }
    }

    #[tokio::test]
    async fn references_round_trip_and_foreign_ones_are_unknown() {
        let fake = FakeGateway::new("s");
        let paid = fake.create_payment(&request("k1", "10")).await.unwrap();
        assert!(paid.reference.starts_with("fake_pay_"));
        assert_eq!(fake.references(), vec![paid.reference.clone()]);
        assert_eq!(
            fake.payment_status(&paid.reference).await.unwrap().status,
            GatewayPaymentStatus::Succeeded
        );
        // The same key answers with the same payment; another amount is refused.
        let again = fake.create_payment(&request("k1", "10")).await.unwrap();
        assert_eq!(again.reference, paid.reference);
        assert!(fake.create_payment(&request("k1", "11")).await.is_err());
        // Anything this gateway did not hand out is unknown, including the
        // same number spelled another way.
        let upper = format!("fake_pay_{}", &paid.reference[9..].to_uppercase());
        for foreign in ["", "fake_pay_", "fake_pay_zz", "pi_123", upper.as_str()] {
            assert!(fake.payment_status(foreign).await.is_err(), "{foreign}");
            assert!(fake.net_charged(foreign).is_none(), "{foreign}");
        }
        assert_eq!(
            fake.net_charged(&paid.reference),
            Some(Money::parse("10", "EUR").unwrap())
        );
    }

    #[tokio::test]
    async fn a_key_is_taken_by_a_charge_only() {
        let fake = FakeGateway::new("s");
        fake.push(FakeBehavior::Decline("no funds".into()));
        assert!(matches!(
            fake.create_payment(&request("k1", "10")).await,
            Err(GatewayError::Declined { .. })
        ));
        // Nothing was charged under the key: a retry is a new attempt.
        let paid = fake.create_payment(&request("k1", "10")).await.unwrap();
        assert_eq!(paid.status, GatewayPaymentStatus::Succeeded);
        let other = fake.create_payment(&request("k2", "10")).await.unwrap();
        assert_ne!(other.reference, paid.reference);
        assert_eq!(fake.references().len(), 2);
    }

    #[tokio::test]
    async fn payments_past_a_chunk_are_found_by_reference_and_by_key() {
        let fake = FakeGateway::new("s");
        let n = Payments::CHUNK * 2 + 3;
        let mut references = Vec::with_capacity(n);
        for i in 0..n {
            let paid = fake
                .create_payment(&request(&format!("k{i}"), &format!("{}", i + 1)))
                .await
                .unwrap();
            references.push(paid.reference);
        }
        for i in [0, Payments::CHUNK - 1, Payments::CHUNK, n - 1] {
            // By reference: the record of this very payment (its amount).
            let charged = fake.net_charged(&references[i]).unwrap();
            assert_eq!(charged, Money::parse(&format!("{}", i + 1), "EUR").unwrap());
            // By key: a retry answers the same payment, another amount is refused.
            let again = fake
                .create_payment(&request(&format!("k{i}"), &format!("{}", i + 1)))
                .await
                .unwrap();
            assert_eq!(again.reference, references[i]);
            assert!(fake
                .create_payment(&request(&format!("k{i}"), "0.5"))
                .await
                .is_err());
        }
        // A refund changes that payment's record and no other.
        let last = &references[n - 1];
        fake.refund(&RefundRequest {
            idempotency_key: "r1".into(),
            payment_reference: last.clone(),
            amount: Money::parse("1", "EUR").unwrap(),
            reason: "test".into(),
        })
        .await
        .unwrap();
        assert_eq!(
            fake.net_charged(last).unwrap(),
            Money::parse(&format!("{}", n - 1), "EUR").unwrap()
        );
        assert_eq!(
            fake.net_charged(&references[n - 2]).unwrap(),
            Money::parse(&format!("{}", n - 1), "EUR").unwrap()
        );
        assert_eq!(fake.references().len(), n);
    }

    #[tokio::test]
    async fn a_number_found_under_another_key_is_refused() {
        let fake = FakeGateway::new("s");
        let paid = fake.create_payment(&request("k1", "10")).await.unwrap();
        // Forge what a digest collision would look like: "k2" numbered as k1's payment.
        {
            let mut s = fake.state.lock();
            let id = s.number("k1");
            let slot = s.payments.index.remove(&id).unwrap();
            let forged = s.number("k2");
            s.payments.index.insert(forged, slot);
        }
        let refused = fake.create_payment(&request("k2", "10")).await;
        assert!(
            matches!(&refused, Err(GatewayError::Rejected { reason }) if reason.contains("collides")),
            "{refused:?}"
        );
        assert!(fake.payment_status(&paid.reference).await.is_err());
    }
}
