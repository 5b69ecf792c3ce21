//! The service's dependencies that `/readyz` reports as `ok` or `degraded` beside the sink and
//! the cache: when one does not answer, the answers that need it degrade (served stale, or a
//! 503 on its own routes) while events keep being acknowledged.

use std::sync::Arc;

use analytics::sidepath::AnalyticsSinks;
use ingest::http::Degradable;
use platform::Platform;

/// The platform's: the command store, the graph and the search index.
pub fn of_platform(platform: &Platform) -> Vec<Arc<dyn Degradable>> {
    vec![
        Arc::new(CommandStoreReadiness(
            platform.state.commands.store().clone(),
        )),
        Arc::new(GraphReadiness(platform.graph().clone())),
        Arc::new(SearchReadiness(platform.catalog().index().clone())),
    ]
}

/// The analytics side path's rollup store.
pub fn of_analytics(sinks: &AnalyticsSinks) -> Arc<dyn Degradable> {
    Arc::new(RollupReadiness(sinks.rollups.clone()))
}

/// Commands (users, plans, subscriptions) answer 503; events, history and reads of the read
/// models go on.
struct CommandStoreReadiness(Arc<dyn platform::store::CommandStore>);

#[async_trait::async_trait]
impl Degradable for CommandStoreReadiness {
    fn name(&self) -> &'static str {
        "commands"
    }

    async fn ready(&self) -> bool {
        self.0.ready().await
    }
}

/// Recommendations and fraud rings are served as last computed (with their age).
struct GraphReadiness(Arc<dyn graph::GraphStore>);

#[async_trait::async_trait]
impl Degradable for GraphReadiness {
    fn name(&self) -> &'static str {
        "graph"
    }

    async fn ready(&self) -> bool {
        self.0.ready().await
    }
}

/// Search answers 503; titles' changes wait in the catalog's outbox.
struct SearchReadiness(Arc<dyn search::SearchIndex>);

#[async_trait::async_trait]
impl Degradable for SearchReadiness {
    fn name(&self) -> &'static str {
        "search"
    }

    async fn ready(&self) -> bool {
        self.0.ready().await
    }
}

/// QoE queries answer 503; the side path keeps its rollups in memory and retries.
struct RollupReadiness(Arc<dyn analytics::store::RollupStore>);

#[async_trait::async_trait]
impl Degradable for RollupReadiness {
    fn name(&self) -> &'static str {
        "analytics"
    }

    async fn ready(&self) -> bool {
        self.0.ready().await
    }
}
