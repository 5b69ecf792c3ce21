//! The cursor of the next page: the last hit's sort values (score, id), the query it belongs to
//! and, on OpenSearch, the point in time the pages are read from. Opaque to clients: URL-safe
//! base64 of JSON.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::{Filters, SearchError};

/// Longest cursor accepted, in bytes (an OpenSearch point-in-time id is a few hundred).
pub const MAX_CURSOR_BYTES: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last hit's score, as the index sorted on it.
    #[serde(rename = "s")]
    pub score: f64,
    /// The last hit's id.
    #[serde(rename = "i")]
    pub id: u64,
    /// Which query this cursor pages through.
    #[serde(rename = "q")]
    pub query: u64,
    /// OpenSearch's point in time.
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub pit: Option<String>,
}

impl Cursor {
    pub fn encode(&self) -> String {
        // A struct of numbers and a string always serialises.
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<Cursor, SearchError> {
        let bad = || SearchError::BadRequest("after: not a cursor this service gave".to_owned());
        if text.len() > MAX_CURSOR_BYTES {
            return Err(bad());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if !cursor.score.is_finite() {
            return Err(bad());
        }
        Ok(cursor)
    }

    /// Refuses a cursor that pages through another query.
    pub fn check(&self, q: &str, filters: &Filters) -> Result<(), SearchError> {
        if self.query == fingerprint(q, filters) {
            Ok(())
        } else {
            Err(SearchError::BadRequest(
                "after: this cursor belongs to another query".to_owned(),
            ))
        }
    }
}

impl Serialize for crate::SearchResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = serializer.serialize_struct("SearchResponse", 4)?;
        out.serialize_field("total", &self.total)?;
        out.serialize_field("hits", &self.hits)?;
        if let Some(facets) = &self.facets {
            out.serialize_field("facets", facets)?;
        }
        out.serialize_field("next", &self.next.as_ref().map(Cursor::encode))?;
        out.end()
    }
}

/// FNV-1a over the query and its filters: stable across processes and releases.
pub fn fingerprint(q: &str, filters: &Filters) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for byte in bytes.iter().chain([&0xffu8]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(q.as_bytes());
    eat(filters.genre.as_deref().unwrap_or("").as_bytes());
    eat(&filters.year_from.unwrap_or(0).to_be_bytes());
    eat(&filters.year_to.unwrap_or(u16::MAX).to_be_bytes());
    eat(filters.language.as_deref().unwrap_or("").as_bytes());
    eat(filters
        .country
        .map(|c| c.as_u16())
        .unwrap_or(0)
        .to_be_bytes()
        .as_slice());
    for rating in &filters.maturity {
        eat(rating.as_bytes());
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let cursor = Cursor {
            score: 3.25,
            id: u64::MAX,
            query: fingerprint("heat", &Filters::default()),
            pit: Some("abc==".to_owned()),
        };
        assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        assert!(cursor.check("heat", &Filters::default()).is_ok());
        assert!(cursor.check("heap", &Filters::default()).is_err());
        for garbage in ["", "!!", "e30", &"A".repeat(5000)] {
            assert!(Cursor::decode(garbage).is_err(), "{garbage}");
        }
    }
}
