//! API keys: who may call the service, and as what. The command store keeps each key's SHA-256
//! and an 8-character prefix for display, never the key itself; the plaintext is shown once,
//! when the key is created. [`ApiKeys`] is the service the server and the `playpulse keys`
//! command share.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::domain::{now_ms, sha256_hex, InvalidValue, Millis};
use crate::store::{CommandStore, StoreError};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Post playback events.
    Ingest,
    /// Read histories, profiles, recommendations and reports.
    Read,
    /// Everything, including the platform's commands.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }
}

impl FromStr for Role {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Result<Role, InvalidValue> {
        match text {
            "ingest" => Ok(Role::Ingest),
            "read" => Ok(Role::Read),
            "admin" => Ok(Role::Admin),
            other => Err(InvalidValue::new(format!(
                "`{}` is not a role: ingest, read or admin",
                crate::domain::echo(other)
            ))),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as the store keeps it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The plaintext's first [`PREFIX_LEN`] characters, to recognise a key in a list.
    pub prefix: String,
    pub created_at: Millis,
    pub revoked_at: Option<Millis>,
}

/// Every key starts with this, so that a leaked one is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "pp_";
/// Characters of URL-safe base64 (no padding) for 32 random bytes.
const SECRET_CHARS: usize = 43;
/// The whole plaintext's length.
pub const KEY_LEN: usize = KEY_PREFIX.len() + SECRET_CHARS;
/// How much of the plaintext the store keeps for display.
pub const PREFIX_LEN: usize = 8;
/// A key's name: 1 to 64 of these characters (it is typed on a command line to revoke it).
const MAX_NAME_CHARS: usize = 64;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is not 1 to 64 letters, digits, `-`, `_` or `.`.
    #[error("invalid key name: {0}")]
    InvalidName(InvalidValue),
    /// A key that is not revoked already has this name.
    #[error("an active key is already named `{0}`")]
    NameTaken(String),
    /// The operating system's random generator failed.
    #[error("cannot draw random bytes for a key: {0}")]
    Random(String),
    /// The command store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for KeyError {
    fn from(error: StoreError) -> Self {
        KeyError::Store(error)
    }
}

/// Creates, checks, lists and revokes API keys. Cheap to clone (one shared cache).
///
/// `authenticate` caches its answers, found and not found, for the cache TTL (5 s by default)
/// and at most [`ApiKeys::CACHE_CAPACITY`] of them: a key revoked by another process (the
/// `playpulse keys revoke` command) stops working here within the TTL; one revoked through this
/// instance stops at once.
#[derive(Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn CommandStore>,
    cache_ttl: Duration,
    /// By the key's hash (the plaintext is not kept): the answer and when it was read.
    cache: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    key: Option<ApiKey>,
    read_at: Instant,
}

impl ApiKeys {
    pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
    pub const CACHE_CAPACITY: usize = 10_000;

    pub fn new(store: Arc<dyn CommandStore>) -> ApiKeys {
        ApiKeys::with_cache_ttl(store, ApiKeys::DEFAULT_CACHE_TTL)
    }

    /// `cache_ttl` zero: every `authenticate` asks the store.
    pub fn with_cache_ttl(store: Arc<dyn CommandStore>, cache_ttl: Duration) -> ApiKeys {
        ApiKeys {
            inner: Arc::new(Inner {
                store,
                cache_ttl,
                cache: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A new key: its plaintext (show it once; it cannot be read back) and its record.
    pub async fn create(&self, role: Role, name: &str) -> Result<(String, ApiKey), KeyError> {
        validate_name(name).map_err(KeyError::InvalidName)?;
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|error| KeyError::Random(error.to_string()))?;
        let plaintext = format!(
            "{KEY_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
        );
        let created = self
            .inner
            .store
            .create_api_key(
                name,
                role,
                &plaintext[..PREFIX_LEN],
                &sha256_hex(plaintext.as_bytes()),
                now_ms(),
            )
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => KeyError::NameTaken(name.to_owned()),
                other => KeyError::Store(other),
            })?;
        Ok((plaintext, created))
    }

    /// The active key `plaintext` is, if any. A malformed one is refused without asking the
    /// store (and without filling the cache).
    pub async fn authenticate(&self, plaintext: &str) -> Result<Option<ApiKey>, KeyError> {
        if !well_formed(plaintext) {
            return Ok(None);
        }
        let hash = sha256_hex(plaintext.as_bytes());
        if let Some(key) = self.cached(&hash) {
            return Ok(key);
        }
        let key = self.inner.store.api_key_by_hash(&hash).await?;
        self.remember(hash, key.clone());
        Ok(key)
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<ApiKey>, KeyError> {
        Ok(self.inner.store.api_keys().await?)
    }

    /// Revokes the active key named `name` (or, failing that, the one active key whose prefix
    /// it is); `None` when there is none.
    pub async fn revoke(&self, name: &str) -> Result<Option<ApiKey>, KeyError> {
        let revoked = self.inner.store.revoke_api_key(name, now_ms()).await?;
        if let Some(key) = &revoked {
            self.cache()
                .retain(|_, cached| cached.key.as_ref().is_none_or(|cached| cached.id != key.id));
        }
        Ok(revoked)
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<String, Cached>> {
        // Entries are whole values: a panic elsewhere cannot leave one half-written.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, hash: &str) -> Option<Option<ApiKey>> {
        let cache = self.cache();
        let cached = cache.get(hash)?;
        (cached.read_at.elapsed() < self.inner.cache_ttl).then(|| cached.key.clone())
    }

    fn remember(&self, hash: String, key: Option<ApiKey>) {
        if self.inner.cache_ttl.is_zero() {
            return;
        }
        let mut cache = self.cache();
        if cache.len() >= ApiKeys::CACHE_CAPACITY {
            let ttl = self.inner.cache_ttl;
            cache.retain(|_, cached| cached.read_at.elapsed() < ttl);
        }
        if cache.len() >= ApiKeys::CACHE_CAPACITY {
            // Still full of live entries (a flood of distinct keys): drop one; its next
            // lookup goes to the store, which is all a miss costs.
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(
            hash,
            Cached {
                key,
                read_at: Instant::now(),
            },
        );
    }
}

fn validate_name(name: &str) -> Result<(), InvalidValue> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err(InvalidValue::new(
            "must be 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    Ok(())
}

/// `pp_` and 43 characters of URL-safe base64: the only shape `create` hands out.
fn well_formed(plaintext: &str) -> bool {
    plaintext.len() == KEY_LEN
        && plaintext.starts_with(KEY_PREFIX)
        && plaintext[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_read_and_print_as_their_lower_case_names() {
        for role in [Role::Ingest, Role::Read, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{role}\""));
        }
        assert!("Admin".parse::<Role>().is_err());
        assert_eq!(
            serde_json::from_str::<Role>("\"ingest\"").unwrap(),
            Role::Ingest
        );
    }

    #[test]
    fn only_the_shape_create_hands_out_is_well_formed() {
        let good = format!("pp_{}", "A".repeat(43));
        assert!(well_formed(&good));
        assert!(!well_formed(&good[..KEY_LEN - 1]));
        assert!(!well_formed(&format!("xx_{}", "A".repeat(43))));
        assert!(!well_formed(&format!("pp_{}=", "A".repeat(42))));
        assert!(!well_formed(&format!("pp_{}é", "A".repeat(41))));
        assert!(!well_formed(""));
    }

    #[test]
    fn key_names_are_short_plain_words() {
        assert!(validate_name("loadgen-eu.1_a").is_ok());
        for bad in ["", "has space", "x/y", &"n".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
