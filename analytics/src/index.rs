//! Rollups indexed into OpenSearch on the cluster profile, so that an analyst can aggregate them
//! ad hoc (Dashboards, `_search` with aggregations). One document per stored row, its id the
//! row's key and writer, so a rewrite replaces it: sums over documents are exact.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::rollup::{Dimension, RollupRow};
use crate::store::AnalyticsError;

#[async_trait]
pub trait RollupIndex: Send + Sync + 'static {
    async fn index(&self, rows: &[RollupRow]) -> Result<(), AnalyticsError>;
}

pub struct OpenSearchRollups {
    client: reqwest::Client,
    base: String,
    index: String,
}

/// Documents per `_bulk` request.
const DOCUMENTS_PER_BULK: usize = 2_000;

fn unavailable(error: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Unavailable(format!("opensearch: {error}"))
}

impl OpenSearchRollups {
    /// `url` is OpenSearch's base URL; `index` the rollup index (created with its mapping when
    /// missing).
    pub async fn connect(
        url: &str,
        index: &str,
        timeout: std::time::Duration,
    ) -> Result<OpenSearchRollups, AnalyticsError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(unavailable)?;
        let rollups = OpenSearchRollups {
            client,
            base: url.trim_end_matches('/').to_owned(),
            index: index.to_owned(),
        };
        rollups.ensure_index().await?;
        Ok(rollups)
    }

    async fn ensure_index(&self) -> Result<(), AnalyticsError> {
        let url = format!("{}/{}", self.base, self.index);
        let head = self.client.head(&url).send().await.map_err(unavailable)?;
        if head.status().is_success() {
            return Ok(());
        }
        let keyword = json!({"type": "keyword"});
        let long = json!({"type": "long"});
        let mut properties = serde_json::Map::new();
        for field in ["grouping", "country", "device", "cdn", "writer"] {
            properties.insert(field.to_owned(), keyword.clone());
        }
        properties.insert(
            "minute".to_owned(),
            json!({"type": "date", "format": "epoch_millis"}),
        );
        for field in [
            "title",
            "events",
            "views",
            "starts",
            "playing_ms",
            "rebuffer_ms",
            "rebuffers",
            "exits_before_start",
            "startup_failures",
            "playback_failures",
            "bitrate_played_ms",
        ] {
            properties.insert(field.to_owned(), long.clone());
        }
        for field in [
            "bitrate_kbps_ms",
            "startup_p50_ms",
            "startup_p95_ms",
            "unique_viewers",
        ] {
            properties.insert(field.to_owned(), json!({"type": "double"}));
        }
        let response = self
            .client
            .put(&url)
            .json(&json!({"mappings": {"properties": properties}}))
            .send()
            .await
            .map_err(unavailable)?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        // Another node may have created it in between.
        if status.is_success() || body.contains("resource_already_exists_exception") {
            Ok(())
        } else {
            Err(unavailable(format!(
                "creating {}: {status} {body}",
                self.index
            )))
        }
    }

    pub fn document(row: &RollupRow) -> (String, Value) {
        let key = &row.key;
        let measures = &row.measures;
        let dims = &key.dims;
        let id = format!(
            "{}|{}|{}|{}|{}|{}|{}",
            key.grouping.as_str(),
            key.minute,
            dims.title.map_or(String::new(), |title| title.to_string()),
            dims.country
                .map_or(String::new(), |country| country.to_string()),
            dims.device.as_deref().unwrap_or(""),
            dims.cdn.as_deref().unwrap_or(""),
            row.writer
        );
        let dimension =
            |dimension: Dimension, present: bool| present.then(|| dims.value(dimension));
        let document = json!({
            "grouping": key.grouping.as_str(),
            "minute": key.minute,
            "title": dims.title,
            "country": dimension(Dimension::Country, dims.country.is_some()),
            "device": dimension(Dimension::Device, dims.device.is_some()),
            "cdn": dimension(Dimension::Cdn, dims.cdn.is_some()),
            "writer": row.writer,
            "events": measures.events,
            "views": measures.views,
            "starts": measures.starts,
            "unique_viewers": measures.viewers.estimate(),
            "playing_ms": measures.playing_ms,
            "rebuffer_ms": measures.rebuffer_ms,
            "rebuffers": measures.rebuffers,
            "exits_before_start": measures.exits_before_start,
            "startup_failures": measures.startup_failures,
            "playback_failures": measures.playback_failures,
            "bitrate_kbps_ms": measures.bitrate_kbps_ms as f64,
            "bitrate_played_ms": measures.bitrate_played_ms,
            "startup_p50_ms": measures.startup.quantile(0.5),
            "startup_p95_ms": measures.startup.quantile(0.95),
        });
        (id, document)
    }
}

#[async_trait]
impl RollupIndex for OpenSearchRollups {
    async fn index(&self, rows: &[RollupRow]) -> Result<(), AnalyticsError> {
        for chunk in rows.chunks(DOCUMENTS_PER_BULK) {
            let mut body = String::new();
            for row in chunk {
                let (id, document) = OpenSearchRollups::document(row);
                body.push_str(&json!({"index": {"_index": self.index, "_id": id}}).to_string());
                body.push('\n');
                body.push_str(&document.to_string());
                body.push('\n');
            }
            let response = self
                .client
                .post(format!("{}/_bulk", self.base))
                .header("Content-Type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .map_err(unavailable)?;
            let status = response.status();
            let answer: Value = response.json().await.map_err(unavailable)?;
            if !status.is_success() || answer["errors"].as_bool() != Some(false) {
                let first = answer["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|item| item["index"]["error"].is_object()))
                    .map(|item| item["index"]["error"].to_string())
                    .unwrap_or_else(|| status.to_string());
                return Err(unavailable(format!("bulk indexing rollups: {first}")));
            }
        }
        Ok(())
    }
}
