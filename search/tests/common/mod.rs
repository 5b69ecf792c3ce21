//! What the contract and relevance suites share: the two indexes, built fresh per test, and
//! titles to put in them.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use search::{
    Availability, CountryCode, Filters, OpenSearchIndex, OpenSearchOptions, SearchIndex,
    SearchRequest, Title, TitleChange,
};

/// An index under test, and how to clean it up.
pub struct Backend {
    pub name: &'static str,
    pub index: Arc<dyn SearchIndex>,
    opensearch: Option<OpenSearchIndex>,
}

impl Backend {
    pub async fn tantivy() -> Backend {
        Backend {
            name: "tantivy",
            index: Arc::new(search::TantivyIndex::in_memory().expect("in-memory index")),
            opensearch: None,
        }
    }

    /// None when engine tests are skipped.
    pub async fn opensearch() -> Option<Backend> {
        let url = testkit::engines::opensearch()?;
        testkit::engines::drop_stale_opensearch_indices(&url, TEST_PREFIX).await;
        let options = OpenSearchOptions {
            url,
            alias: testkit::unique_name(TEST_PREFIX),
            request_timeout: Duration::from_secs(10),
        };
        let index = OpenSearchIndex::connect(options.clone())
            .await
            .expect("OpenSearch answers");
        let cleanup = OpenSearchIndex::connect(options)
            .await
            .expect("OpenSearch answers");
        Some(Backend {
            name: "opensearch",
            index: Arc::new(index),
            opensearch: Some(cleanup),
        })
    }

    pub async fn finish(self) {
        if let Some(index) = self.opensearch {
            index.drop_all().await.expect("test index dropped");
        }
    }

    pub async fn put(&self, titles: &[Title]) {
        let changes: Vec<TitleChange> = titles
            .iter()
            .map(|title| TitleChange::Upsert {
                title: title.clone(),
                version: 1,
            })
            .collect();
        self.index.apply(&changes).await.expect("titles indexed");
        self.index.refresh().await.expect("refresh");
    }

    pub async fn ids(&self, q: &str) -> Vec<u64> {
        self.ids_where(q, Filters::default()).await
    }

    pub async fn ids_where(&self, q: &str, filters: Filters) -> Vec<u64> {
        let response = self
            .index
            .search(&request(q, filters))
            .await
            .unwrap_or_else(|error| panic!("{}: search {q:?}: {error}", self.name));
        response.hits.iter().map(|hit| hit.id).collect()
    }
}

const TEST_PREFIX: &str = "ppsearch";

/// Runs each named `async fn(&Backend)` of the calling file on the embedded index, then on
/// OpenSearch (unless engine tests are skipped).
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod tantivy_index {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = $crate::common::Backend::tantivy().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod opensearch_index {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(backend) = $crate::common::Backend::opensearch().await else { return };
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

pub const TODAY: search::Day = 20_000;

pub fn request(q: &str, filters: Filters) -> SearchRequest {
    SearchRequest {
        q: q.to_owned(),
        filters,
        limit: 10,
        after: None,
        facets: false,
        today: TODAY,
    }
}

pub fn country(code: &str) -> CountryCode {
    CountryCode::parse(code).expect("a country code")
}

/// A title with what the tests do not care about filled in.
pub fn title(id: u64, name: &str) -> Title {
    Title {
        id,
        title: name.to_owned(),
        original_title: None,
        synopsis: String::new(),
        genres: vec!["drama".to_owned()],
        year: 2000,
        runtime_minutes: 100,
        maturity: "PG-13".to_owned(),
        cast: Vec::new(),
        crew: Vec::new(),
        audio_languages: vec!["en".to_owned()],
        subtitle_languages: Vec::new(),
        availability: vec![Availability {
            country: country("US"),
            from: 0,
            until: None,
        }],
    }
}
