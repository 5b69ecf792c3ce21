//! Billing reports: SQL joins over subscriptions and plans in the command store (the reports
//! need the normalized data and its consistency, not a read model), money computed here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{rfc3339, Millis};
use crate::store::{CommandStore, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrrByPlan {
    pub plan_id: i64,
    pub plan_name: String,
    pub currency: String,
    pub period: &'static str,
    pub price_cents: i64,
    pub active_subscriptions: i64,
    pub mrr_cents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrrByCurrency {
    pub currency: String,
    pub mrr_cents: i64,
}

/// Monthly recurring revenue of the subscriptions active at `at`: per plan, and per currency
/// (never summed across currencies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MrrReport {
    pub at: String,
    pub by_plan: Vec<MrrByPlan>,
    pub by_currency: Vec<MrrByCurrency>,
}

pub async fn mrr(store: &dyn CommandStore, at: Millis) -> Result<MrrReport, StoreError> {
    let by_plan: Vec<MrrByPlan> = store
        .plan_counts(at)
        .await?
        .into_iter()
        .map(|count| MrrByPlan {
            mrr_cents: count
                .period
                .monthly_cents(count.price_cents, count.active_subscriptions),
            plan_id: count.plan_id.get(),
            plan_name: count.plan_name,
            currency: count.currency,
            period: count.period.as_str(),
            price_cents: count.price_cents,
            active_subscriptions: count.active_subscriptions,
        })
        .collect();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for row in &by_plan {
        *totals.entry(row.currency.clone()).or_default() += row.mrr_cents;
    }
    Ok(MrrReport {
        at: rfc3339(at),
        by_plan,
        by_currency: totals
            .into_iter()
            .map(|(currency, mrr_cents)| MrrByCurrency {
                currency,
                mrr_cents,
            })
            .collect(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveByPlan {
    pub plan_id: i64,
    pub plan_name: String,
    pub active_subscriptions: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveSubscribers {
    pub at: String,
    /// Distinct users with at least one active subscription.
    pub active_subscribers: i64,
    pub by_plan: Vec<ActiveByPlan>,
}

pub async fn active_subscribers(
    store: &dyn CommandStore,
    at: Millis,
) -> Result<ActiveSubscribers, StoreError> {
    let by_plan = store
        .plan_counts(at)
        .await?
        .into_iter()
        .map(|count| ActiveByPlan {
            plan_id: count.plan_id.get(),
            plan_name: count.plan_name,
            active_subscriptions: count.active_subscriptions,
        })
        .collect();
    Ok(ActiveSubscribers {
        at: rfc3339(at),
        active_subscribers: store.active_users(at).await?,
        by_plan,
    })
}

/// Subscriber churn over `[from, to]`: of the users subscribed at `from`, those with no active
/// subscription at `to`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Churn {
    pub from: String,
    pub to: String,
    pub active_at_start: i64,
    pub churned: i64,
    pub active_at_end: i64,
    /// churned / active_at_start; 0 when nobody was subscribed at `from`.
    pub churn_rate: f64,
}

pub async fn churn(
    store: &dyn CommandStore,
    from: Millis,
    to: Millis,
) -> Result<Churn, StoreError> {
    let counts = store.churn(from, to).await?;
    let churn_rate = if counts.active_at_start == 0 {
        0.0
    } else {
        counts.churned as f64 / counts.active_at_start as f64
    };
    Ok(Churn {
        from: rfc3339(from),
        to: rfc3339(to),
        active_at_start: counts.active_at_start,
        churned: counts.churned,
        active_at_end: counts.active_at_end,
        churn_rate,
    })
}
