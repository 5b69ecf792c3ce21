//! Highlights for the embedded index: the words of a text that match the query (the same rule
//! the query matched with: [`query::matches`]) wrapped in `<em>`, the rest HTML-escaped.
//! OpenSearch highlights with its own highlighter, configured to the same tags and escaping.

use tantivy::tokenizer::TextAnalyzer;

use crate::query::{self, QueryWord};

/// Characters of synopsis a highlight shows around its first match.
pub(crate) const FRAGMENT_CHARS: usize = 150;
/// Characters shown before the first match when the fragment does not start the text.
const LEAD_CHARS: usize = 40;

/// `text` with its matching words marked, as `analyzer` reads it (a synopsis drops its stop
/// words); `fragment`: only about [`FRAGMENT_CHARS`] around the first match. None when no word
/// matches.
pub(crate) fn highlight(
    text: &str,
    mut analyzer: TextAnalyzer,
    words: &[QueryWord],
    fragment: bool,
) -> Option<String> {
    if words.is_empty() {
        return None;
    }
    let mut stream = analyzer.token_stream(text);
    let mut spans = Vec::new();
    while let Some(token) = stream.next() {
        if words.iter().any(|word| query::matches(word, &token.text)) {
            spans.push((token.offset_from, token.offset_to));
        }
    }
    let first = spans.first()?.0;
    let (start, end) = if fragment {
        fragment_bounds(text, first)
    } else {
        (0, text.len())
    };
    let mut out = String::with_capacity(end - start + 16 * spans.len());
    let mut at = start;
    for (from, to) in spans {
        if from < start || to > end {
            continue;
        }
        escape_into(&mut out, &text[at..from]);
        out.push_str("<em>");
        escape_into(&mut out, &text[from..to]);
        out.push_str("</em>");
        at = to;
    }
    escape_into(&mut out, &text[at..end]);
    Some(out)
}

/// A window of about [`FRAGMENT_CHARS`] around `first`, on character boundaries.
fn fragment_bounds(text: &str, first: usize) -> (usize, usize) {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(at, _)| at)
        .chain([text.len()])
        .collect();
    let first_char = boundaries.partition_point(|&at| at < first);
    let start_char = first_char.saturating_sub(LEAD_CHARS);
    let end_char = (start_char + FRAGMENT_CHARS).min(boundaries.len() - 1);
    (boundaries[start_char], boundaries[end_char])
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            _ => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::ParsedQuery;

    #[test]
    fn marks_exact_fuzzy_and_prefix_words_and_escapes_the_rest() {
        let query = ParsedQuery::parse("godfahter par").unwrap();
        let marked = highlight(
            "The Godfather <Part> II",
            query::analyzer(),
            &query.words,
            false,
        )
        .unwrap();
        assert_eq!(marked, "The <em>Godfather</em> &lt;<em>Part</em>&gt; II");
        assert_eq!(
            highlight("Heat", query::analyzer(), &query.words, false),
            None
        );
        let stop = ParsedQuery::parse("the end").unwrap();
        let synopsis = highlight("The end.", query::synopsis_analyzer(), &stop.words, true);
        assert_eq!(synopsis.as_deref(), Some("The <em>end</em>."));
    }

    #[test]
    fn a_fragment_stays_near_the_first_match_on_char_boundaries() {
        let text = format!("{} needle {}", "é".repeat(300), "ü".repeat(300));
        let query = ParsedQuery::parse("needle ").unwrap();
        let marked = highlight(&text, query::analyzer(), &query.words, true).unwrap();
        assert!(marked.contains("<em>needle</em>"));
        assert!(marked.chars().count() <= FRAGMENT_CHARS + 9);
    }
}
