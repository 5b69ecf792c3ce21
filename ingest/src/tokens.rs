//! Playback tokens (with `auth.playback_tokens`): the platform's backend asks for one when a
//! viewer presses play (`POST /v1/playback-sessions`), the player puts it in every event of the
//! session (`playback_token`), and an event whose token is missing, forged, expired, or issued
//! for another session, user, title or web origin is rejected alone and never stored. A shared
//! ingest key in a player's code then cannot be used to write events for anyone else.
//!
//! A token is `v1.` + base64url(claims) + `.` + base64url(HMAC-SHA256(secret, claims)); the
//! claims are binary: session id (16 bytes), user id, content id, expiry in epoch ms (8 bytes
//! each, big-endian) and the allowed origin (the rest, UTF-8, empty for none).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;
use wire::PlaybackEvent;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1.";
const FIXED_CLAIMS: usize = 16 + 8 + 8 + 8;
/// Longest origin a token binds (scheme, host and port).
pub const MAX_ORIGIN_BYTES: usize = 256;
/// Longest token text accepted before any decoding.
const MAX_TOKEN_CHARS: usize = 4 + (FIXED_CLAIMS + MAX_ORIGIN_BYTES).div_ceil(3) * 4 + 44;

/// What a token vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub session_id: Uuid,
    pub user_id: u64,
    pub content_id: u64,
    /// Epoch milliseconds after which the token is refused.
    pub expires_at: i64,
    /// The web origin whose pages may use it (`https://player.example.com`); `None`: any
    /// client, including native players that send no Origin.
    pub origin: Option<String>,
}

/// Why an event's token is refused (the event alone is rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("is missing: events of this service must carry their session's `playback_token`")]
    Missing,
    #[error("is not a token this service issued")]
    Forged,
    #[error("has expired: ask for a new playback session")]
    Expired,
    #[error("was issued for another session")]
    OtherSession,
    #[error("was issued for another user")]
    OtherUser,
    #[error("was issued for another title")]
    OtherContent,
    #[error("was issued for another web origin")]
    OtherOrigin,
}

/// What the codec checks each event's token with: the verifier and the request's Origin.
#[derive(Clone, Copy)]
pub struct TokenCheck<'a> {
    pub tokens: &'a PlaybackTokens,
    pub origin: Option<&'a str>,
}

/// Signs and checks tokens with one secret.
pub struct PlaybackTokens {
    mac: HmacSha256,
}

impl PlaybackTokens {
    pub fn new(secret: &[u8]) -> PlaybackTokens {
        PlaybackTokens {
            mac: HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length"),
        }
    }

    pub fn issue(&self, claims: &Claims) -> String {
        let mut payload = Vec::with_capacity(FIXED_CLAIMS + MAX_ORIGIN_BYTES);
        payload.extend_from_slice(claims.session_id.as_bytes());
        payload.extend_from_slice(&claims.user_id.to_be_bytes());
        payload.extend_from_slice(&claims.content_id.to_be_bytes());
        payload.extend_from_slice(&claims.expires_at.to_be_bytes());
        payload.extend_from_slice(claims.origin.as_deref().unwrap_or("").as_bytes());
        let mut mac = self.mac.clone();
        mac.update(&payload);
        let tag = mac.finalize().into_bytes();
        format!(
            "{VERSION}{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The claims of a token this service signed (in constant time), whatever they say.
    pub fn open(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(TokenError::Forged);
        }
        let body = token.strip_prefix(VERSION).ok_or(TokenError::Forged)?;
        let (payload, tag) = body.split_once('.').ok_or(TokenError::Forged)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Forged)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Forged)?;
        let mut mac = self.mac.clone();
        mac.update(&payload);
        mac.verify_slice(&tag).map_err(|_| TokenError::Forged)?;
        if payload.len() < FIXED_CLAIMS {
            return Err(TokenError::Forged);
        }
        let (fixed, origin) = payload.split_at(FIXED_CLAIMS);
        let word = |at: usize| u64::from_be_bytes(fixed[at..at + 8].try_into().expect("8 bytes"));
        let origin = std::str::from_utf8(origin).map_err(|_| TokenError::Forged)?;
        Ok(Claims {
            session_id: Uuid::from_slice(&fixed[..16]).map_err(|_| TokenError::Forged)?,
            user_id: word(16),
            content_id: word(24),
            expires_at: word(32) as i64,
            origin: (!origin.is_empty()).then(|| origin.to_owned()),
        })
    }

    /// Whether `token` lets `event` in, posted from `origin` (the request's Origin) at `now`.
    pub fn check(
        &self,
        token: Option<&str>,
        event: &PlaybackEvent,
        origin: Option<&str>,
        now: i64,
    ) -> Result<(), TokenError> {
        let claims = self.open(token.ok_or(TokenError::Missing)?)?;
        if now > claims.expires_at {
            return Err(TokenError::Expired);
        }
        if claims.session_id != event.session_id {
            return Err(TokenError::OtherSession);
        }
        if claims.user_id != event.user_id {
            return Err(TokenError::OtherUser);
        }
        if claims.content_id != event.content_id {
            return Err(TokenError::OtherContent);
        }
        if let Some(bound) = &claims.origin {
            if origin != Some(bound.as_str()) {
                return Err(TokenError::OtherOrigin);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            session_id: Uuid::new_v4(),
            user_id: 42,
            content_id: 7,
            expires_at: 2_000,
            origin: Some("https://player.example.com".to_owned()),
        }
    }

    fn event_of(claims: &Claims) -> PlaybackEvent {
        let mut event = testkit_event();
        event.session_id = claims.session_id;
        event.user_id = claims.user_id;
        event.content_id = claims.content_id;
        event
    }

    fn testkit_event() -> PlaybackEvent {
        let raw = format!(
            r#"{{"event_id":"{}","session_id":"{}","user_id":1,"content_id":1,"kind":"heartbeat","ts":1000,"position_ms":0}}"#,
            Uuid::new_v4(),
            Uuid::new_v4()
        );
        let element: wire::Element = serde_json::from_str(&raw).unwrap();
        let ctx = wire::ValidationContext {
            received_at: 1_500,
            max_future_ms: 1_000,
        };
        wire::validate(&element, &ctx).unwrap()
    }

    #[test]
    fn a_token_round_trips_and_lets_its_session_in() {
        let tokens = PlaybackTokens::new(b"0123456789abcdef0123456789abcdef");
        let claims = claims();
        let token = tokens.issue(&claims);
        assert_eq!(tokens.open(&token).unwrap(), claims);
        let event = event_of(&claims);
        let origin = Some("https://player.example.com");
        assert_eq!(tokens.check(Some(&token), &event, origin, 1_000), Ok(()));
    }

    #[test]
    fn every_way_a_token_can_be_wrong_is_refused_with_its_reason() {
        let tokens = PlaybackTokens::new(b"0123456789abcdef0123456789abcdef");
        let claims = claims();
        let token = tokens.issue(&claims);
        let event = event_of(&claims);
        let origin = Some("https://player.example.com");
        let check = |token: Option<&str>, event: &PlaybackEvent, origin, now| {
            tokens.check(token, event, origin, now)
        };
        assert_eq!(check(None, &event, origin, 0), Err(TokenError::Missing));
        assert_eq!(
            check(Some(&token), &event, origin, 2_001),
            Err(TokenError::Expired)
        );
        let mut other = event.clone();
        other.session_id = Uuid::new_v4();
        assert_eq!(
            check(Some(&token), &other, origin, 0),
            Err(TokenError::OtherSession)
        );
        let mut other = event.clone();
        other.user_id = 43;
        assert_eq!(
            check(Some(&token), &other, origin, 0),
            Err(TokenError::OtherUser)
        );
        let mut other = event.clone();
        other.content_id = 8;
        assert_eq!(
            check(Some(&token), &other, origin, 0),
            Err(TokenError::OtherContent)
        );
        assert_eq!(
            check(Some(&token), &event, Some("https://evil.example"), 0),
            Err(TokenError::OtherOrigin)
        );
        assert_eq!(
            check(Some(&token), &event, None, 0),
            Err(TokenError::OtherOrigin)
        );

        // Forged: another secret, a flipped claim, garbage, or absurd length.
        let other_secret = PlaybackTokens::new(b"another secret of enough length!!");
        assert_eq!(
            other_secret.check(Some(&token), &event, origin, 0),
            Err(TokenError::Forged)
        );
        let (head, tag) = token.rsplit_once('.').unwrap();
        let mut claims_b64 = head.to_owned();
        let last = claims_b64.pop().unwrap();
        claims_b64.push(if last == 'A' { 'B' } else { 'A' });
        let tampered = format!("{claims_b64}.{tag}");
        assert_eq!(
            check(Some(&tampered), &event, origin, 0),
            Err(TokenError::Forged)
        );
        for garbage in [
            "",
            "v1.",
            "v1..",
            "v2.abc.def",
            "v1.!!!.???",
            &"v1.a".repeat(10_000),
        ] {
            assert_eq!(
                check(Some(garbage), &event, origin, 0),
                Err(TokenError::Forged),
                "{garbage:.20}"
            );
        }
    }
}
