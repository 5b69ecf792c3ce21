//! Being written (replaced before commit).
#[derive(Debug, Clone)]
pub struct OpenSearchOptions {
    pub url: String,
    pub alias: String,
    pub request_timeout: std::time::Duration,
}
pub struct OpenSearchIndex;
impl OpenSearchIndex {
    pub async fn connect(_: OpenSearchOptions) -> Result<OpenSearchIndex, crate::SearchError> {
        Err(crate::SearchError::Unavailable("placeholder".into()))
    }
    pub async fn drop_all(&self) -> Result<(), crate::SearchError> {
        Ok(())
    }
}
use crate::*;
fn no() -> SearchError {
    SearchError::Unavailable("placeholder".into())
}
#[async_trait::async_trait]
impl SearchIndex for OpenSearchIndex {
    async fn apply(&self, _: &[TitleChange]) -> Result<Applied, SearchError> { Err(no()) }
    async fn set_popularity(&self, _: &[(u64, f32)]) -> Result<(), SearchError> { Err(no()) }
    async fn search(&self, _: &SearchRequest) -> Result<SearchResponse, SearchError> { Err(no()) }
    async fn version_of(&self, _: u64) -> Result<Option<(u64, bool)>, SearchError> { Err(no()) }
    async fn refresh(&self) -> Result<(), SearchError> { Err(no()) }
    async fn generation(&self) -> Result<String, SearchError> { Err(no()) }
    async fn create_generation(&self) -> Result<String, SearchError> { Err(no()) }
    async fn apply_to(&self, _: &str, _: &[TitleChange]) -> Result<Applied, SearchError> { Err(no()) }
    async fn switch_to(&self, _: &str) -> Result<(), SearchError> { Err(no()) }
    async fn stats(&self) -> Result<IndexStats, SearchError> { Err(no()) }
    async fn ready(&self) -> bool { false }
}
