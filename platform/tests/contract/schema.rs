//! What the command store's schema enforces by itself, and how a database written by an older
//! version is brought up to date when it is opened.

use platform::commands::Subscribed;
use platform::domain::{now_ms, Currency};
use platform::payments::Charge;
use platform::store::{NewSubscription, StoreError};
use platform::PlatformError;

use crate::both_backends;
use crate::helpers::fixtures::{key, plan, subscribe, user};
use crate::helpers::Backend;

both_backends!(
    the_store_itself_refuses_a_second_active_subscription_to_one_plan,
    an_older_database_gets_the_one_active_subscription_index_once_its_duplicates_are_gone,
    plaintext_fingerprints_of_an_older_version_are_hashed_in_place_and_still_replay,
);

fn paid(user: &platform::store::User, plan: &platform::store::Plan) -> NewSubscription {
    NewSubscription {
        user_id: user.id,
        plan_id: plan.id,
        charge: Charge {
            charge_id: format!("ch_test_{}", uuid::Uuid::new_v4().simple()),
            amount_cents: plan.price_cents,
            currency: Currency::try_from(plan.currency.as_str()).unwrap(),
        },
        idempotency_key: key(),
        payment_fingerprint: "fp_test".to_owned(),
        device: None,
    }
}

async fn the_store_itself_refuses_a_second_active_subscription_to_one_plan(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let store = &backend.store;
    store
        .create_subscription(&paid(&user, &plan), 999, "EUR", now_ms())
        .await
        .unwrap();
    let second = store
        .create_subscription(&paid(&user, &plan), 999, "EUR", now_ms())
        .await;
    assert!(
        matches!(second, Err(StoreError::AlreadySubscribed { user_id, plan_id })
            if user_id == user.id.get() && plan_id == plan.id.get()),
        "[{}] {second:?}",
        backend.name
    );
    assert_eq!(
        store.payments_of(user.id).await.unwrap().len(),
        1,
        "[{}] the refused transaction wrote no payment",
        backend.name
    );
    assert!(store
        .has_active_subscription(user.id, plan.id)
        .await
        .unwrap());
}

async fn an_older_database_gets_the_one_active_subscription_index_once_its_duplicates_are_gone(
    backend: Backend,
) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    // A database from before the index, which let a user hold two active subscriptions.
    backend
        .raw_execute("DROP INDEX subscriptions_one_active_per_plan")
        .await;
    let store = &backend.store;
    let first = store
        .create_subscription(&paid(&user, &plan), 999, "EUR", now_ms())
        .await
        .unwrap();
    store
        .create_subscription(&paid(&user, &plan), 999, "EUR", now_ms())
        .await
        .unwrap();
    match backend.reopen_store().await {
        Err(PlatformError::Store(StoreError::Corrupt(message))) => {
            assert!(
                message.contains(&format!("user {}", user.id)) && message.contains("2 active"),
                "{message}"
            );
        }
        Err(other) => panic!("[{}] unexpected error {other}", backend.name),
        Ok(_) => panic!("[{}] opened a database with duplicates", backend.name),
    }
    store.cancel_subscription(first.id, now_ms()).await.unwrap();
    let reopened = match backend.reopen_store().await {
        Ok(store) => store,
        Err(error) => panic!("[{}] {error}", backend.name),
    };
    let third = reopened
        .create_subscription(&paid(&user, &plan), 999, "EUR", now_ms())
        .await;
    assert!(
        matches!(third, Err(StoreError::AlreadySubscribed { .. })),
        "[{}] the index is back: {third:?}",
        backend.name
    );
}

async fn plaintext_fingerprints_of_an_older_version_are_hashed_in_place_and_still_replay(
    backend: Backend,
) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let (key, request) = (key(), subscribe(&user, &plan, "tok_visa"));
    commands.subscribe(&key, &request).await.unwrap();
    // What an older version kept: the canonical body in clear, payment token included.
    let plaintext = format!("user_id={};plan_id={};token=tok_visa", user.id, plan.id);
    backend
        .raw_execute(&format!(
            "UPDATE idempotency_keys SET fingerprint = '{plaintext}' WHERE key = '{}'",
            key.as_str()
        ))
        .await;
    if let Err(error) = backend.reopen_store().await {
        panic!("[{}] {error}", backend.name);
    }
    let stored = backend
        .raw_strings(&format!(
            "SELECT fingerprint FROM idempotency_keys WHERE key = '{}'",
            key.as_str()
        ))
        .await;
    assert_eq!(stored, vec![request.fingerprint()], "[{}]", backend.name);
    let replayed = commands.subscribe(&key, &request).await;
    assert!(
        matches!(replayed, Ok(Subscribed::Replayed(_))),
        "{replayed:?}"
    );
}
