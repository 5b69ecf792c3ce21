//! The rollup index on OpenSearch: one document per row and writer, a rewrite replaces it, so
//! an analyst's sum over documents is exact.

use std::time::Duration;

use analytics::index::{OpenSearchRollups, RollupIndex};
use analytics::measures::Measures;
use analytics::rollup::{CellKey, Dimension, Dims, Grouping, RollupRow};
use serde_json::{json, Value};
use wire::{EventKind, PlaybackEvent};

fn starts(count: u64) -> Measures {
    let mut measures = Measures::default();
    for user in 0..count {
        measures.record(&PlaybackEvent {
            kind: EventKind::Start,
            startup_ms: Some(1_000),
            ..testkit::event(user, 1_764_547_200_000)
        });
    }
    measures
}

fn row(country: &str, writer: &str, measures: Measures) -> RollupRow {
    let grouping = Grouping::By(Dimension::Country);
    RollupRow {
        key: CellKey {
            grouping,
            minute: 1_764_547_200_000,
            dims: Dims {
                country: wire::CountryCode::parse(country),
                ..Dims::default()
            },
        },
        writer: writer.to_owned(),
        measures,
    }
}

#[tokio::test]
async fn rows_are_documents_replaced_on_rewrite_and_summed_exactly() {
    let Some(url) = testkit::engines::opensearch() else {
        return;
    };
    testkit::engines::drop_stale_opensearch_indices(&url, "analytics_test").await;
    let index = testkit::unique_name("analytics_test");
    let rollups = OpenSearchRollups::connect(&url, &index, Duration::from_secs(10))
        .await
        .expect("OpenSearch answers");
    rollups
        .index(&[row("FR", "a", starts(3)), row("FR", "b", starts(4))])
        .await
        .unwrap();
    // Node a rewrites its row: the document is replaced, not added to.
    rollups
        .index(&[row("FR", "a", starts(5)), row("DE", "a", starts(1))])
        .await
        .unwrap();
    let client = reqwest::Client::new();
    client
        .post(format!("{url}/{index}/_refresh"))
        .send()
        .await
        .unwrap();
    let answer: Value = client
        .post(format!("{url}/{index}/_search"))
        .json(&json!({
            "size": 0,
            "query": {"term": {"grouping": "country"}},
            "aggs": {"by_country": {
                "terms": {"field": "country"},
                "aggs": {"views": {"sum": {"field": "views"}}}
            }}
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let buckets = answer["aggregations"]["by_country"]["buckets"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"));
    let views: Vec<(String, f64)> = buckets
        .iter()
        .map(|bucket| {
            (
                bucket["key"].as_str().unwrap().to_owned(),
                bucket["views"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(views, vec![("FR".to_owned(), 9.0), ("DE".to_owned(), 1.0)]);
    client
        .delete(format!("{url}/{index}"))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_opensearch_is_unavailable_not_a_panic() {
    let error = OpenSearchRollups::connect("http://127.0.0.1:9", "x", Duration::from_secs(2))
        .await
        .err()
        .expect("nothing listens on port 9");
    assert!(error.to_string().contains("unavailable"), "{error}");
}
