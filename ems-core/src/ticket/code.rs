use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::id::{EventId, TicketId};

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const RAW_LEN: usize = 1 + 16 + 16 + MAC_LEN;

/// Why a code does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Not base64url, or the wrong length or version.
    #[error("malformed ticket code")]
    Malformed,
    /// The MAC does not match: forged or signed with another key.
    #[error("ticket code signature does not verify")]
    BadSignature,
}

/// Signs and verifies ticket codes: `base64url(version ‖ ticket id ‖ event id ‖
/// HMAC-SHA256(key, …)[..16])`. A code names its ticket and event, so a door
/// scanner rejects forgeries and other events' tickets without a lookup; guessing
/// a valid code means forging a 128-bit MAC.
///
/// ```
/// use ems_core::ticket::TicketSigner;
/// use ems_core::id::{EventId, TicketId};
/// let signer = TicketSigner::new(&[7u8; 32]).unwrap();
/// let (t, e) = (TicketId::new(), EventId::new());
/// let code = signer.sign(t, e);
/// assert_eq!(signer.verify(&code).unwrap(), (t, e));
/// let forged = TicketSigner::new(&[8u8; 32]).unwrap().sign(t, e);
/// assert!(signer.verify(&forged).is_err());
/// ```
#[derive(Clone)]
pub struct TicketSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for TicketSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSigner(..)")
    }
}

impl TicketSigner {
    /// A signer with a secret key of at least 32 bytes.
    pub fn new(key: &[u8]) -> crate::Result<Self> {
        if key.len() < 32 {
            return Err(crate::Error::invalid(
                "ticket_key",
                "must be at least 32 bytes",
            ));
        }
        Ok(Self {
            mac: Hmac::new_from_slice(key).expect("HMAC takes keys of any length"),
        })
    }

    /// A signer with a fresh random key (codes do not survive a restart).
    pub fn random() -> Self {
        let key: [u8; 32] = rand::random();
        Self::new(&key).expect("32 bytes is long enough")
    }

    fn tag(&self, payload: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The code of a ticket.
    pub fn sign(&self, ticket: TicketId, event: EventId) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..17].copy_from_slice(ticket.0.as_bytes());
        raw[17..33].copy_from_slice(event.0.as_bytes());
        let tag = self.tag(&raw[..33]);
        raw[33..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The ticket and event a code names, if it is genuine.
    pub fn verify(&self, code: &str) -> Result<(TicketId, EventId), CodeError> {
        let code = code.trim();
        if code.len() > 2 * RAW_LEN {
            return Err(CodeError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(code)
            .map_err(|_| CodeError::Malformed)?;
        if raw.len() != RAW_LEN || raw[0] != VERSION {
            return Err(CodeError::Malformed);
        }
        let mut mac = self.mac.clone();
        mac.update(&raw[..33]);
        mac.verify_truncated_left(&raw[33..])
            .map_err(|_| CodeError::BadSignature)?;
        let ticket = Uuid::from_slice(&raw[1..17]).map_err(|_| CodeError::Malformed)?;
        let event = Uuid::from_slice(&raw[17..33]).map_err(|_| CodeError::Malformed)?;
        Ok((TicketId(ticket), EventId(event)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_single_byte_change_is_rejected(pos in 0usize..RAW_LEN, flip in 1u8..=255) {
            let s = TicketSigner::new(&[1u8; 32]).unwrap();
            let code = s.sign(TicketId::new(), EventId::new());
            let mut raw = URL_SAFE_NO_PAD.decode(&code).unwrap();
            raw[pos] ^= flip;
            prop_assert!(s.verify(&URL_SAFE_NO_PAD.encode(raw)).is_err());
        }

        #[test]
        fn garbage_never_panics(s in ".{0,120}") {
            let signer = TicketSigner::new(&[1u8; 32]).unwrap();
            let _ = signer.verify(&s);
        }
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TicketSigner::new(&[0u8; 16]).is_err());
    }
}
