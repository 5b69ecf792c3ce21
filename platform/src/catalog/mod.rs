//! The catalog: titles written on the command side (`POST`, `PUT`, `DELETE /v1/titles`), read
//! from their read model (`GET /v1/titles/{id}`), and searched (`GET /v1/search`) in the search
//! index the catalog's projector keeps in step.
//!
//! Flow: HTTP command -> [`input::title_from`] -> command store transaction (the title and its
//! event in `title_events`) -> [`feed::CatalogFeed`] per consumer (the title read model, the
//! search index) -> queries. Popularity comes from the graph ([`popularity`]); a rebuild makes a
//! new index generation and switches to it ([`reindex`]).

pub mod feed;
pub mod input;
pub mod popularity;
pub mod reindex;

use std::sync::Arc;

use search::{SearchError, SearchIndex, SearchRequest, SearchResponse, Title};
use tokio::sync::watch;

use crate::domain::now_ms;
use crate::readmodel::{ReadModel, ReadModelError};
use crate::store::catalog::{CatalogEntry, CreateOutcome};
use crate::store::{CommandStore, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    #[error("title {0} not found")]
    NotFound(u64),
    #[error("title {0} already exists")]
    Exists(u64),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
    #[error(transparent)]
    Search(#[from] SearchError),
}

/// What the catalog's routes reach.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn CommandStore>,
    read_model: Arc<dyn ReadModel>,
    index: Arc<dyn SearchIndex>,
    /// Bumped after every commit: wakes the projectors.
    committed: Arc<watch::Sender<u64>>,
}

impl Catalog {
    pub fn new(
        store: Arc<dyn CommandStore>,
        read_model: Arc<dyn ReadModel>,
        index: Arc<dyn SearchIndex>,
    ) -> Catalog {
        Catalog {
            store,
            read_model,
            index,
            committed: Arc::new(watch::channel(0).0),
        }
    }

    /// What a projector waits on.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.committed.subscribe()
    }

    fn woke(&self) {
        self.committed.send_modify(|count| *count += 1);
    }

    pub fn index(&self) -> &Arc<dyn SearchIndex> {
        &self.index
    }

    pub fn store(&self) -> &Arc<dyn CommandStore> {
        &self.store
    }

    /// Creates a title under `id` (or the next free id).
    pub async fn create(
        &self,
        id: Option<u64>,
        title: &Title,
    ) -> Result<CatalogEntry, CatalogError> {
        let (outcome, entry) = self.store.create_title(id, title, now_ms()).await?;
        if outcome == CreateOutcome::Exists {
            return Err(CatalogError::Exists(entry.title.id));
        }
        self.woke();
        Ok(entry)
    }

    pub async fn replace(&self, title: &Title) -> Result<CatalogEntry, CatalogError> {
        let entry = self
            .store
            .replace_title(title, now_ms())
            .await?
            .ok_or(CatalogError::NotFound(title.id))?;
        self.woke();
        Ok(entry)
    }

    pub async fn delete(&self, id: u64) -> Result<CatalogEntry, CatalogError> {
        let entry = self
            .store
            .delete_title(id, now_ms())
            .await?
            .ok_or(CatalogError::NotFound(id))?;
        self.woke();
        Ok(entry)
    }

    /// The title from its read model (what the projector applied so far).
    pub async fn title(&self, id: u64) -> Result<CatalogEntry, CatalogError> {
        self.read_model
            .title(id)
            .await?
            .ok_or(CatalogError::NotFound(id))
    }

    pub async fn search(&self, request: &SearchRequest) -> Result<SearchResponse, CatalogError> {
        Ok(self.index.search(request).await?)
    }
}
