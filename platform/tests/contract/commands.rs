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
    a_second_active_subscription_to_one_plan_is_refused_before_any_charge,
    concurrent_subscribes_to_one_plan_under_two_keys_leave_one_subscription_and_one_charge,
    a_charge_that_loses_the_race_to_another_subscription_is_refunded,
    the_idempotency_fingerprint_is_a_hash_that_holds_no_payment_token,
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

async fn a_second_active_subscription_to_one_plan_is_refused_before_any_charge(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let Subscribed::Created(first) = commands
        .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
        .await
        .unwrap()
    else {
        panic!("created");
    };
    let second_key = key();
    let outcome = commands
        .subscribe(&second_key, &subscribe(&user, &plan, "tok_visa"))
        .await;
    assert!(
        matches!(outcome, Err(CommandError::AlreadySubscribed { user_id, plan_id })
            if user_id == user.id.get() && plan_id == plan.id.get()),
        "[{}] {outcome:?}",
        backend.name
    );
    assert_eq!(
        backend.gateway.charges_made(),
        1,
        "[{}] no second charge",
        backend.name
    );
    // The refusal is final for its key, like any other refusal.
    let replayed = commands
        .subscribe(&second_key, &subscribe(&user, &plan, "tok_visa"))
        .await;
    assert!(
        matches!(replayed, Err(CommandError::AlreadySubscribed { .. })),
        "{replayed:?}"
    );
    // Another plan, or the same one once cancelled, is fine.
    let other = crate::helpers::fixtures::plan(&commands, 500, "EUR", "monthly", true).await;
    commands
        .subscribe(&key(), &subscribe(&user, &other, "tok_visa"))
        .await
        .unwrap();
    commands
        .cancel(platform::domain::SubscriptionId::try_from(first.id).unwrap())
        .await
        .unwrap();
    let again = commands
        .subscribe(&key(), &subscribe(&user, &plan, "tok_visa"))
        .await;
    assert!(matches!(again, Ok(Subscribed::Created(_))), "{again:?}");
    assert_eq!(backend.gateway.charges_made(), 3);
}

/// Both requests pass the check before either commits (the gateway is slow); the store's
/// one-active-per-plan index refuses the second transaction, and its charge is refunded.
async fn concurrent_subscribes_to_one_plan_under_two_keys_leave_one_subscription_and_one_charge(
    backend: Backend,
) {
    let gateway = Arc::new(SimulatedGateway::with_latency(Duration::from_millis(200)));
    let commands = backend.commands_with(gateway.clone());
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let request = subscribe(&user, &plan, "tok_visa");
    let attempts = (0..2).map(|_| {
        let (commands, request) = (commands.clone(), request.clone());
        tokio::spawn(async move { commands.subscribe(&key(), &request).await })
    });
    let (mut created, mut refused) = (0, 0);
    for outcome in futures::future::join_all(attempts).await {
        match outcome.unwrap() {
            Ok(Subscribed::Created(_)) => created += 1,
            Err(CommandError::AlreadySubscribed { .. }) => refused += 1,
            other => panic!("[{}] unexpected outcome {other:?}", backend.name),
        }
    }
    assert_eq!(
        (created, refused),
        (1, 1),
        "[{}] exactly one succeeds",
        backend.name
    );
    assert_eq!(
        gateway.charges_made() - gateway.refunds_made(),
        1,
        "[{}] the loser's charge, if any, was refunded",
        backend.name
    );
    let subscriptions = commands.subscriptions_of(user.id).await.unwrap();
    assert_eq!(subscriptions.len(), 1, "[{}]", backend.name);
    assert_eq!(commands.payments_of(user.id).await.unwrap().len(), 1);
}

async fn the_idempotency_fingerprint_is_a_hash_that_holds_no_payment_token(backend: Backend) {
    let commands = backend.commands();
    let (user, plan) = (
        user(&commands).await,
        plan(&commands, 999, "EUR", "monthly", true).await,
    );
    let token = "tok_secret_opaque_7f3a";
    let (key, request) = (key(), subscribe(&user, &plan, token));
    commands.subscribe(&key, &request).await.unwrap();
    let stored = backend
        .raw_strings(&format!(
            "SELECT fingerprint FROM idempotency_keys WHERE key = '{}'",
            key.as_str()
        ))
        .await;
    assert_eq!(stored.len(), 1);
    let fingerprint = &stored[0];
    assert_eq!(fingerprint.len(), 64, "{fingerprint}");
    assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!fingerprint.contains(token));
    assert_eq!(fingerprint, &request.fingerprint());
    // And it still tells one body from another.
    let replayed = commands.subscribe(&key, &request).await;
    assert!(
        matches!(replayed, Ok(Subscribed::Replayed(_))),
        "{replayed:?}"
    );
    let other = commands
        .subscribe(&key, &subscribe(&user, &plan, "tok_other"))
        .await;
    assert!(matches!(other, Err(CommandError::KeyMismatch)), "{other:?}");
}

/// A gateway that lets another subscription of the same user to the same plan commit while
/// the charge is in flight: the race lost after the charge, every time.
struct RacingGateway {
    inner: SimulatedGateway,
    store: Arc<dyn platform::store::CommandStore>,
    rival: std::sync::Mutex<Option<platform::store::NewSubscription>>,
}

#[async_trait::async_trait]
impl platform::payments::PaymentGateway for RacingGateway {
    async fn charge(
        &self,
        request: &platform::payments::ChargeRequest,
    ) -> Result<platform::payments::Charge, platform::payments::PaymentError> {
        let rival = self.rival.lock().unwrap().take();
        if let Some(rival) = rival {
            self.store
                .create_subscription(&rival, 999, "EUR", platform::domain::now_ms())
                .await
                .unwrap();
        }
        self.inner.charge(request).await
    }

    async fn find(
        &self,
        key: &platform::domain::IdempotencyKey,
    ) -> Result<Option<platform::payments::Charge>, platform::payments::PaymentError> {
        self.inner.find(key).await
    }

    async fn refund(
        &self,
        charge: &platform::payments::Charge,
    ) -> Result<(), platform::payments::PaymentError> {
        self.inner.refund(charge).await
    }
}

async fn a_charge_that_loses_the_race_to_another_subscription_is_refunded(backend: Backend) {
    let setup = backend.commands();
    let (user, plan) = (
        user(&setup).await,
        plan(&setup, 999, "EUR", "monthly", true).await,
    );
    let gateway = Arc::new(RacingGateway {
        inner: SimulatedGateway::new(),
        store: backend.store.clone(),
        rival: std::sync::Mutex::new(Some(platform::store::NewSubscription {
            user_id: user.id,
            plan_id: plan.id,
            charge: platform::payments::Charge {
                charge_id: "ch_rival".to_owned(),
                amount_cents: 999,
                currency: platform::domain::Currency::try_from("EUR").unwrap(),
            },
            idempotency_key: key(),
            payment_fingerprint: "fp_rival".to_owned(),
            device: None,
        })),
    });
    let commands = platform::commands::Commands::new(
        backend.store.clone(),
        gateway.clone(),
        platform::commands::CommandOptions::default(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let key = key();
    let outcome = commands
        .subscribe(&key, &subscribe(&user, &plan, "tok_visa"))
        .await;
    assert!(
        matches!(outcome, Err(CommandError::AlreadySubscribed { .. })),
        "[{}] {outcome:?}",
        backend.name
    );
    assert_eq!(
        (gateway.inner.charges_made(), gateway.inner.refunds_made()),
        (1, 1),
        "[{}] charged, then refunded",
        backend.name
    );
    let subscriptions = commands.subscriptions_of(user.id).await.unwrap();
    assert_eq!(subscriptions.len(), 1, "only the rival's");
    let payments = commands.payments_of(user.id).await.unwrap();
    assert_eq!(
        payments
            .iter()
            .map(|p| p.charge_id.as_str())
            .collect::<Vec<_>>(),
        vec!["ch_rival"],
        "the refunded charge left no payment row"
    );
    // The refusal is the key's final answer: a retry neither charges nor refunds again.
    let again = commands
        .subscribe(&key, &subscribe(&user, &plan, "tok_visa"))
        .await;
    assert!(matches!(again, Err(CommandError::AlreadySubscribed { .. })));
    assert_eq!(
        (gateway.inner.charges_made(), gateway.inner.refunds_made()),
        (1, 1)
    );
}
