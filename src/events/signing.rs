//! Event signatures (SPEC §5).
//!
//! - `standard-webhooks` (<https://www.standardwebhooks.com>): headers `webhook-id`,
//!   `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//!   "id.timestamp.body">`, keyed with the base64-decoded secret after its `whsec_` prefix. A
//!   secret without the prefix is decoded as base64 too (as the reference libraries do); one
//!   that is not base64 is refused rather than silently used as raw bytes, because the receiver
//!   would decode it and every signature would fail to verify.
//! - `github`: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, keyed with the raw
//!   secret, as GitHub signs its own webhooks.
//!
//! The headers are computed once per event: retries resend the same id, timestamp and
//! signature (the whole retry budget is far inside the receivers' usual 5-minute tolerance).

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Signing;

/// A ready signer for one sink.
#[derive(Clone)]
pub enum Signer {
    StandardWebhooks { key: Vec<u8> },
    Github { key: Vec<u8> },
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        match self {
            Signer::StandardWebhooks { .. } => f.write_str("Signer::StandardWebhooks"),
            Signer::Github { .. } => f.write_str("Signer::Github"),
        }
    }
}

impl Signer {
    /// The signer for `signing` keyed with `secret`; `None` for `signing = "none"`. The error
    /// says what is wrong with the secret without showing it.
    pub fn new(signing: Signing, secret: &str) -> Result<Option<Signer>, String> {
        let secret = secret.trim();
        match signing {
            Signing::None => Ok(None),
            Signing::Github => {
                if secret.is_empty() {
                    return Err("the signing secret is empty".into());
                }
                Ok(Some(Signer::Github {
                    key: secret.as_bytes().to_vec(),
                }))
            }
            Signing::StandardWebhooks => {
                let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
                let key = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map_err(|_| {
                        "the standard-webhooks signing secret is not base64 (expected `whsec_<base64>`)"
                            .to_string()
                    })?;
                if key.is_empty() {
                    return Err("the signing secret is empty".into());
                }
                Ok(Some(Signer::StandardWebhooks { key }))
            }
        }
    }

    /// The headers to send with `body`.
    pub fn headers(&self, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        match self {
            Signer::StandardWebhooks { key } => vec![
                ("webhook-id".into(), id.to_string()),
                ("webhook-timestamp".into(), timestamp.to_string()),
                (
                    "webhook-signature".into(),
                    standard_webhooks_signature(key, id, timestamp, body),
                ),
            ],
            Signer::Github { key } => {
                vec![("X-Hub-Signature-256".into(), github_signature(key, body))]
            }
        }
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn standard_webhooks_signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac)
    )
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn github_signature(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(hmac_sha256(key, &[body])))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's published example ("Validating webhook deliveries").
    #[test]
    fn github_signature_matches_the_published_vector() {
        assert_eq!(
            github_signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    /// The Standard Webhooks reference libraries' test vector.
    #[test]
    fn standard_webhooks_signature_matches_the_reference_vector() {
        let signer = Signer::new(
            Signing::StandardWebhooks,
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap()
        .unwrap();
        let headers = signer.headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            headers[2],
            (
                "webhook-signature".to_string(),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".to_string()
            )
        );
        assert_eq!(headers[0].1, "msg_p5jXN8AQM9LWM0D4loKWxJek");
        assert_eq!(headers[1].1, "1614265330");
    }

    #[test]
    fn standard_webhooks_secret_without_prefix_is_decoded_too() {
        let a = Signer::new(
            Signing::StandardWebhooks,
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            a.headers(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            )[2]
            .1,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let err = Signer::new(Signing::StandardWebhooks, "not base64!").unwrap_err();
        assert!(err.contains("not base64"), "{err}");
        assert!(
            !err.contains("not base64!"),
            "the secret must not be echoed"
        );
    }

    #[test]
    fn none_signs_nothing() {
        assert!(Signer::new(Signing::None, "").unwrap().is_none());
    }
}
