use std::sync::Arc;
use std::time::Duration;

use platform::commands::{CommandError, Subscribed};
use platform::payments::SimulatedGateway;

use crate::both_backends;
use crate::helpers::fixtures::{key, plan, subscribe, user};
use crate::helpers::Backend;

both_backends!(
    concurrent_retries_of_one_key_charge_exactly_once,
    the_same_key_with_another_body_is_refused,
    a_declined_card_creates_nothing_and_its_retry_is_declined_again,
    a_timed_out_charge_is_reconciled_into_one_subscription_with_its_payment,
    an_unknown_user_or_unavailable_plan_is_refused_before_any_charge,
    cancelling_keeps_the_payment_and_is_idempotent,
    a_retry_after_a_crash_between_charge_and_commit_reuses_the_charge,
);

async fn concurrent_retries_of_one_key_charge_exactly_once(backend: Backend) {
    // A slow gateway keeps the first request running while the others arrive.
    let gateway = Arc::new(SimulatedGateway::with_latency(Duration::from_millis(300)));
    let commands = backend.commands_with(gateway.clone());
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let (key, request) = (key(), subscribe(&user, &plan, "tok_visa"));
    let attempts = (0..8).map(|_| {
        let (commands, key, request) = (commands.clone(), key.clone(), request.clone());
        tokio::spawn(async move { commands.subscribe(&key, &request).await })
    });
    let outcomes = futures::future::join_all(attempts).await;
    let mut created = 0;
    for outcome in outcomes {
        match outcome.unwrap() {
            Ok(Subscribed::Created(_)) => created += 1,
            Ok(Subscribed::Replayed(_)) | Err(CommandError::KeyInProgress) => {}
            Err(other) => panic!("[{}] unexpected outcome {other}", backend.name),
        }
    }
    assert_eq!(created, 1, "[{}] one request creates", backend.name);
    assert_eq!(gateway.charges_made(), 1, "[{}] one charge", backend.name);
    // A later retry gets the same answer, without charging.
    let Subscribed::Replayed(replayed) = commands.subscribe(&key, &request).await.unwrap() else {
        panic!("a finished key replays");
    };
    let subscriptions = commands.subscriptions_of(user.id).await.unwrap();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(replayed, subscriptions[0].view());
    assert_eq!(commands.payments_of(user.id).await.unwrap().len(), 1);
    assert_eq!(gateway.charges_made(), 1);
}

async fn the_same_key_with_another_body_is_refused(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 500, "USD", "monthly", true).await,
    );
    let other_plan = crate::helpers::fixtures::plan(&commands, 700, "USD", "monthly", true).await;
    let key = key();
    commands
        .subscribe(&key, &subscribe(&user, &plan, "tok_visa"))
        .await
        .unwrap();
    let outcome = commands
        .subscribe(&key, &subscribe(&user, &other_plan, "tok_visa"))
        .await;
    assert!(
        matches!(outcome, Err(CommandError::KeyMismatch)),
        "{outcome:?}"
    );
    assert_eq!(backend.gateway.charges_made(), 1);
}

async fn a_declined_card_creates_nothing_and_its_retry_is_declined_again(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let (key, request) = (key(), subscribe(&user, &plan, "tok_chargeDeclined"));
    for _ in 0..2 {
        let outcome = commands.subscribe(&key, &request).await;
        assert!(
            matches!(outcome, Err(CommandError::Declined(_))),
            "{outcome:?}"
        );
    }
    assert!(commands.subscriptions_of(user.id).await.unwrap().is_empty());
    assert!(commands.payments_of(user.id).await.unwrap().is_empty());
    assert_eq!(backend.gateway.charges_made(), 0);
}

async fn a_timed_out_charge_is_reconciled_into_one_subscription_with_its_payment(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 1299, "EUR", "monthly", true).await,
    );
    let (key, request) = (key(), subscribe(&user, &plan, "tok_timeout"));
    let Subscribed::Created(view) = commands.subscribe(&key, &request).await.unwrap() else {
        panic!("the first request creates");
    };
    let payments = commands.payments_of(user.id).await.unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0].id, view.payment_id);
    assert_eq!(payments[0].amount_cents, 1299);
    assert_eq!(backend.gateway.charges_made(), 1);
    // The client, which also timed out, retries: same answer, no second charge.
    assert!(matches!(
        commands.subscribe(&key, &request).await,
        Ok(Subscribed::Replayed(_))
    ));
    assert_eq!(backend.gateway.charges_made(), 1);
}

async fn an_unknown_user_or_unavailable_plan_is_refused_before_any_charge(backend: Backend) {
    let commands = backend.commands();
    let user = user(&commands).await;
    let closed = plan(&commands, 999, "EUR", "monthly", false).await;
    let outcome = commands
        .subscribe(&key(), &subscribe(&user, &closed, "tok_visa"))
        .await;
    assert!(
        matches!(outcome, Err(CommandError::PlanUnavailable(_))),
        "{outcome:?}"
    );
    let mut ghost = user.clone();
    ghost.id = platform::domain::UserId::try_from(i64::MAX).unwrap();
    let open = plan(&commands, 999, "EUR", "monthly", true).await;
    let outcome = commands
        .subscribe(&key(), &subscribe(&ghost, &open, "tok_visa"))
        .await;
    assert!(
        matches!(outcome, Err(CommandError::UserNotFound(_))),
        "{outcome:?}"
    );
    assert_eq!(backend.gateway.charges_made(), 0);
}

async fn cancelling_keeps_the_payment_and_is_idempotent(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let Subscribed::Created(view) = commands
        .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
        .await
        .unwrap()
    else {
        panic!("created");
    };
    let id = platform::domain::SubscriptionId::try_from(view.id).unwrap();
    let first = commands.cancel(id).await.unwrap();
    let second = commands.cancel(id).await.unwrap();
    assert_eq!(first.status, "cancelled");
    assert_eq!(first, second);
    assert_eq!(commands.payments_of(user.id).await.unwrap().len(), 1);
    let missing = platform::domain::SubscriptionId::try_from(i64::MAX).unwrap();
    assert!(matches!(
        commands.cancel(missing).await,
        Err(CommandError::SubscriptionNotFound(_))
    ));
}

/// The first request charged, then its process died before the transaction: the key is left
/// `running`. Past the lease, a retry takes the key over, finds the charge at the gateway by the
/// key, and creates the subscription with it: one charge, one subscription, one payment.
async fn a_retry_after_a_crash_between_charge_and_commit_reuses_the_charge(backend: Backend) {
    use platform::payments::{ChargeRequest, PaymentGateway};
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let (key, request) = (key(), subscribe(&user, &plan, "tok_visa"));
    let long_ago = platform::domain::now_ms() - 3_600_000;
    let claim = backend
        .store
        .claim_key(
            &key,
            &request.fingerprint(),
            long_ago,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(claim, platform::store::Claim::Started { takeover: false });
    backend
        .gateway
        .charge(&ChargeRequest {
            idempotency_key: key.clone(),
            token: request.token.clone(),
            amount_cents: 999,
            currency: platform::domain::Currency::try_from("EUR").unwrap(),
        })
        .await
        .unwrap();
    assert_eq!(backend.gateway.charges_made(), 1);
    let outcome = commands.subscribe(&key, &request).await;
    assert!(matches!(outcome, Ok(Subscribed::Created(_))), "{outcome:?}");
    assert_eq!(
        backend.gateway.charges_made(),
        1,
        "[{}] no second charge",
        backend.name
    );
    assert_eq!(commands.subscriptions_of(user.id).await.unwrap().len(), 1);
    assert_eq!(commands.payments_of(user.id).await.unwrap().len(), 1);
}
