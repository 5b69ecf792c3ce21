use std::time::Duration;

use platform::commands::Subscribed;
use platform::domain::{now_ms, SubscriptionId};

use crate::both_backends;
use crate::helpers::fixtures::{key, plan, subscribe, user};
use crate::helpers::Backend;

both_backends!(reports_match_hand_computed_figures);

/// Four subscribers: two on a 9.99 EUR monthly plan, one on a 120 EUR yearly plan, one on a
/// 15 USD monthly plan; then one of the monthly EUR subscribers cancels.
///   MRR after: EUR 999 + 12000/12 = 1999 cents; USD 1500 cents.
///   Active: 4 before the cancellation, 3 after. Churn over the cancellation: 1 of 4 = 0.25.
async fn reports_match_hand_computed_figures(backend: Backend) {
    let commands = backend.commands();
    let store = backend.store.as_ref();
    let monthly_eur = plan(&commands, 999, "EUR", "monthly", true).await;
    let yearly_eur = plan(&commands, 12_000, "EUR", "yearly", true).await;
    let monthly_usd = plan(&commands, 1_500, "USD", "monthly", true).await;
    let mut subscriptions = Vec::new();
    for plan in [&monthly_eur, &monthly_eur, &yearly_eur, &monthly_usd] {
        let user = user(&commands).await;
        let Subscribed::Created(view) = commands
            .subscribe(&key(), &subscribe(&user, plan, "tok_visa"))
            .await
            .unwrap()
        else {
            panic!("created");
        };
        subscriptions.push(view);
    }
    // Timestamps are milliseconds: step past the last creation's millisecond.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before_cancel = now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    commands
        .cancel(SubscriptionId::try_from(subscriptions[1].id).unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let after_cancel = now_ms();

    let mrr = platform::reports::mrr(store, after_cancel).await.unwrap();
    let totals: Vec<(String, i64)> = mrr
        .by_currency
        .iter()
        .map(|t| (t.currency.clone(), t.mrr_cents))
        .collect();
    assert_eq!(
        totals,
        vec![("EUR".to_owned(), 1_999), ("USD".to_owned(), 1_500)],
        "[{}]",
        backend.name
    );
    let eur_monthly = mrr
        .by_plan
        .iter()
        .find(|row| row.plan_id == monthly_eur.id.get())
        .unwrap();
    assert_eq!(
        (eur_monthly.active_subscriptions, eur_monthly.mrr_cents),
        (1, 999)
    );

    let before = platform::reports::active_subscribers(store, before_cancel)
        .await
        .unwrap();
    let after = platform::reports::active_subscribers(store, after_cancel)
        .await
        .unwrap();
    assert_eq!(
        (before.active_subscribers, after.active_subscribers),
        (4, 3)
    );

    let churn = platform::reports::churn(store, before_cancel, after_cancel)
        .await
        .unwrap();
    assert_eq!(
        (churn.active_at_start, churn.churned, churn.active_at_end),
        (4, 1, 3)
    );
    assert!((churn.churn_rate - 0.25).abs() < 1e-9);
}
