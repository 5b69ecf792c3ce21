//! API keys in the command store: only a hash is kept, a revoked key stops working, and a name
//! belongs to one active key at a time.

use std::time::Duration;

use platform::domain::{now_ms, sha256_hex};
use platform::keys::{ApiKeys, KeyError, Role, KEY_LEN};
use platform::store::StoreError;

use crate::both_backends;
use crate::helpers::Backend;

both_backends!(
    a_created_key_authenticates_with_its_role_and_a_wrong_one_does_not,
    the_store_keeps_a_hash_and_a_prefix_never_the_key,
    a_revoked_key_stops_authenticating_and_its_name_can_be_reused,
    an_active_name_is_one_key,
    a_revocation_elsewhere_is_seen_within_the_cache_ttl_and_here_at_once,
);

fn uncached(backend: &Backend) -> ApiKeys {
    ApiKeys::with_cache_ttl(backend.store.clone(), Duration::ZERO)
}

fn unique_name(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

async fn a_created_key_authenticates_with_its_role_and_a_wrong_one_does_not(backend: Backend) {
    let keys = uncached(&backend);
    let name = unique_name("loadgen");
    let (plaintext, created) = keys.create(Role::Ingest, &name).await.unwrap();
    assert!(
        plaintext.starts_with("pp_") && plaintext.len() == KEY_LEN,
        "{plaintext}"
    );
    assert_eq!(
        (created.name.as_str(), created.role),
        (name.as_str(), Role::Ingest)
    );
    assert_eq!(created.prefix, plaintext[..8]);
    assert_eq!(created.revoked_at, None);
    let found = keys.authenticate(&plaintext).await.unwrap();
    assert_eq!(found.as_ref(), Some(&created), "[{}]", backend.name);
    // One character off, a key never issued, and things not shaped like a key at all.
    let mut wrong = plaintext.clone().into_bytes();
    wrong[KEY_LEN - 1] = if wrong[KEY_LEN - 1] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let wrong = String::from_utf8(wrong).unwrap();
    let (other, _) = keys
        .create(Role::Read, &unique_name("other"))
        .await
        .unwrap();
    assert_ne!(other, plaintext, "two keys are two random draws");
    for candidate in [
        wrong.as_str(),
        "",
        "pp_",
        &plaintext[..KEY_LEN - 1],
        "Bearer x",
    ] {
        assert_eq!(
            keys.authenticate(candidate).await.unwrap(),
            None,
            "{candidate:?}"
        );
    }
    let listed = keys.list().await.unwrap();
    assert!(listed.contains(&created), "[{}] {listed:?}", backend.name);
}

async fn the_store_keeps_a_hash_and_a_prefix_never_the_key(backend: Backend) {
    let keys = uncached(&backend);
    let name = unique_name("ops");
    let (plaintext, created) = keys.create(Role::Admin, &name).await.unwrap();
    let row = backend
        .raw_strings(&format!(
            "SELECT name || '|' || role || '|' || prefix || '|' || hash FROM api_keys WHERE id = {}",
            created.id
        ))
        .await;
    assert_eq!(row.len(), 1);
    assert!(
        !row[0].contains(&plaintext),
        "[{}] the row holds the key",
        backend.name
    );
    assert!(
        !row[0].contains(&plaintext[8..]),
        "nor any of its secret part"
    );
    let hash = row[0].rsplit('|').next().unwrap();
    assert_eq!(hash, sha256_hex(plaintext.as_bytes()));
    assert_eq!(
        backend
            .store
            .api_key_by_hash(hash)
            .await
            .unwrap()
            .map(|key| key.id),
        Some(created.id),
        "the hash is what finds the key"
    );
}

async fn a_revoked_key_stops_authenticating_and_its_name_can_be_reused(backend: Backend) {
    let keys = uncached(&backend);
    let name = unique_name("player");
    let (old, created) = keys.create(Role::Read, &name).await.unwrap();
    let revoked = keys.revoke(&name).await.unwrap().expect("revoked");
    assert_eq!(revoked.id, created.id);
    assert!(revoked.revoked_at.is_some_and(|at| at <= now_ms()));
    assert_eq!(
        keys.authenticate(&old).await.unwrap(),
        None,
        "[{}]",
        backend.name
    );
    assert_eq!(
        keys.revoke(&name).await.unwrap(),
        None,
        "nothing left to revoke"
    );
    let listed = keys.list().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|key| key.id == created.id && key.revoked_at.is_some()),
        "the list keeps revoked keys"
    );
    // The name is free again: a new key under it works, the old one still does not.
    let (new, replacement) = keys.create(Role::Admin, &name).await.unwrap();
    assert_ne!(replacement.id, created.id);
    assert_eq!(
        keys.authenticate(&new).await.unwrap().map(|key| key.role),
        Some(Role::Admin)
    );
    assert_eq!(keys.authenticate(&old).await.unwrap(), None);
    // A key can also be revoked by the prefix `list` shows.
    let revoked = keys.revoke(&replacement.prefix).await.unwrap();
    assert_eq!(revoked.map(|key| key.id), Some(replacement.id));
    assert_eq!(keys.authenticate(&new).await.unwrap(), None);
}

async fn an_active_name_is_one_key(backend: Backend) {
    let keys = uncached(&backend);
    let name = unique_name("dup");
    keys.create(Role::Ingest, &name).await.unwrap();
    let again = keys.create(Role::Admin, &name).await;
    assert!(
        matches!(&again, Err(KeyError::NameTaken(taken)) if taken == &name),
        "[{}] {again:?}",
        backend.name
    );
    let in_store = backend
        .store
        .create_api_key(
            &name,
            Role::Read,
            "pp_xxxxx",
            &sha256_hex(b"another"),
            now_ms(),
        )
        .await;
    assert!(
        matches!(in_store, Err(StoreError::Conflict(_))),
        "{in_store:?}"
    );
    assert!(matches!(
        keys.create(Role::Read, "no spaces please").await,
        Err(KeyError::InvalidName(_))
    ));
}

/// Another process (`playpulse keys revoke`) revokes through its own service: this one keeps
/// answering from its cache until the TTL runs out, which is the documented bound. A revocation
/// through this service itself clears its cache at once.
async fn a_revocation_elsewhere_is_seen_within_the_cache_ttl_and_here_at_once(backend: Backend) {
    let server = ApiKeys::with_cache_ttl(backend.store.clone(), Duration::from_secs(3600));
    let cli = uncached(&backend);
    let name = unique_name("cached");
    let (plaintext, created) = server.create(Role::Ingest, &name).await.unwrap();
    assert!(server.authenticate(&plaintext).await.unwrap().is_some());
    cli.revoke(&name).await.unwrap().expect("revoked");
    assert_eq!(
        server
            .authenticate(&plaintext)
            .await
            .unwrap()
            .map(|key| key.id),
        Some(created.id),
        "answered from the cache until its TTL"
    );
    assert_eq!(cli.authenticate(&plaintext).await.unwrap(), None);
    let name = unique_name("local");
    let (plaintext, _) = server.create(Role::Ingest, &name).await.unwrap();
    assert!(server.authenticate(&plaintext).await.unwrap().is_some());
    server.revoke(&name).await.unwrap().expect("revoked");
    assert_eq!(server.authenticate(&plaintext).await.unwrap(), None);
}
