//! What a query means, for both indexes: its words, how many edits each may be away, which one
//! is a prefix. The text analysis is tantivy's (split on what is not a letter or a digit, lower
//! case, accents folded); OpenSearch's index is given the same analysis in its mapping.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, StopWordFilter, TextAnalyzer,
};

use crate::SearchError;

/// Longest `q` accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 256;
/// Words of `q` searched (the rest are ignored: nobody types more into a search box).
pub const MAX_WORDS: usize = 10;
/// Words longer than this are not indexed (nor searched).
pub const MAX_WORD_BYTES: usize = 40;
/// Prefixes indexed per word: as the user types, the first 20 characters decide.
pub const MAX_PREFIX_CHARS: usize = 20;

/// Splits, lower-cases and folds text the way both indexes do.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES + 1))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// Words a synopsis is not searched for: in nearly every synopsis, they would make a query of
/// "the" read every document, and say nothing of relevance (Lucene's English stop set). Titles,
/// names and queries keep them ("The Who", "It").
pub const SYNOPSIS_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// The synopsis analyzer: [`analyzer`], then the stop words out.
pub fn synopsis_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES + 1))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(StopWordFilter::remove(
            SYNOPSIS_STOP_WORDS.iter().map(|word| word.to_string()),
        ))
        .build()
}

/// The words of `text`, analysed.
pub fn words(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut words = Vec::new();
    while let Some(token) = stream.next() {
        words.push(token.text.clone());
    }
    words
}

/// Every prefix of every word of `text` (one to [`MAX_PREFIX_CHARS`] characters), separated by
/// spaces: what the prefix fields index.
pub fn prefixes(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    for word in words(analyzer, text) {
        let mut end_chars = word.char_indices().map(|(at, c)| at + c.len_utf8());
        for end in end_chars.by_ref().take(MAX_PREFIX_CHARS) {
            prefixes.push(word[..end].to_owned());
        }
    }
    prefixes
}

/// How many edits a word of `chars` characters may be away: none under 5, one under 9, else two.
pub fn allowed_edits(chars: usize) -> u8 {
    match chars {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryWord {
    pub text: String,
    pub edits: u8,
    /// The word the user is still typing: it also matches as a prefix.
    pub prefix: bool,
    /// A lone first letter: it matches titles that start with it, and nothing else (every
    /// other word prefix would match a good part of any catalog).
    pub initial: bool,
}

/// The words of a query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedQuery {
    pub words: Vec<QueryWord>,
}

impl ParsedQuery {
    pub fn parse(q: &str) -> Result<ParsedQuery, SearchError> {
        if q.len() > MAX_QUERY_BYTES {
            return Err(SearchError::BadRequest(format!(
                "q: at most {MAX_QUERY_BYTES} bytes"
            )));
        }
        let still_typing = !q.ends_with(char::is_whitespace);
        let mut words = words(&mut analyzer(), q);
        words.truncate(MAX_WORDS);
        let last = words.len().saturating_sub(1);
        let lone = words.len() == 1;
        let words = words
            .into_iter()
            .enumerate()
            .map(|(position, text)| {
                let chars = text.chars().count();
                let prefix = still_typing && position == last;
                QueryWord {
                    edits: allowed_edits(chars),
                    prefix,
                    initial: prefix && lone && chars == 1,
                    text,
                }
            })
            .collect();
        Ok(ParsedQuery { words })
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The same words with no edit allowed: what is searched first.
    pub fn as_typed(&self) -> ParsedQuery {
        ParsedQuery {
            words: self
                .words
                .iter()
                .map(|word| QueryWord {
                    edits: 0,
                    ..word.clone()
                })
                .collect(),
        }
    }

    /// Whether some word may be matched with edits (a second search could find more).
    pub fn allows_typos(&self) -> bool {
        self.words.iter().any(|word| word.edits > 0)
    }

    /// The words joined by single spaces, to compare with [`crate::Title::title_keys`].
    pub fn title_key(&self) -> Option<String> {
        (!self.words.is_empty()).then(|| {
            self.words
                .iter()
                .map(|word| word.text.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
    }
}

/// Optimal string alignment distance (Levenshtein with adjacent transpositions), stopping
/// early once it must exceed `limit`. Both indexes count edits this way.
pub fn within_edits(a: &str, b: &str, limit: u8) -> bool {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let limit = usize::from(limit);
    if a.len().abs_diff(b.len()) > limit {
        return false;
    }
    let width = b.len() + 1;
    let mut before = vec![0usize; width];
    let mut previous: Vec<usize> = (0..width).collect();
    let mut current = vec![0usize; width];
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = current[0];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut value = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                value = value.min(before[j - 2] + 1);
            }
            current[j] = value;
            row_min = row_min.min(value);
        }
        if row_min > limit {
            return false;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()] <= limit
}

/// Whether `word` (of an indexed text) matches `query_word`: exactly, within its edits, or, for
/// the word being typed, as a prefix.
pub fn matches(query_word: &QueryWord, word: &str) -> bool {
    if query_word.initial {
        return word.starts_with(&query_word.text);
    }
    word == query_word.text
        || (query_word.prefix && word.starts_with(&query_word.text))
        || (query_word.edits > 0 && within_edits(&query_word.text, word, query_word.edits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_follow_the_word_length() {
        assert_eq!(allowed_edits(4), 0);
        assert_eq!(allowed_edits(5), 1);
        assert_eq!(allowed_edits(8), 1);
        assert_eq!(allowed_edits(9), 2);
    }

    #[test]
    fn the_last_word_is_a_prefix_until_a_space_follows() {
        let typing = ParsedQuery::parse("Amélie  Poul").unwrap();
        assert_eq!(typing.words.len(), 2);
        assert_eq!(typing.words[0].text, "amelie");
        assert!(!typing.words[0].prefix);
        assert!(typing.words[1].prefix);
        let done = ParsedQuery::parse("amelie ").unwrap();
        assert!(!done.words[0].prefix);
        assert!(ParsedQuery::parse("a").unwrap().words[0].initial);
        assert!(!ParsedQuery::parse("a ").unwrap().words[0].initial);
        assert!(!ParsedQuery::parse("heat a").unwrap().words[1].initial);
        assert!(!ParsedQuery::parse("ab").unwrap().words[0].initial);
        assert!(ParsedQuery::parse("  ,;  ").unwrap().is_empty());
        assert!(ParsedQuery::parse(&"x".repeat(300)).is_err());
    }

    #[test]
    fn distance_counts_a_transposition_as_one_edit() {
        assert!(within_edits("godfather", "godfahter", 1));
        assert!(within_edits("godfather", "godfathr", 1));
        assert!(!within_edits("godfather", "gdfathr", 1));
        assert!(!within_edits("matrix", "mtrx", 1));
        assert!(within_edits("matrix", "mtrx", 2));
        assert!(within_edits("", "", 0));
        assert!(!within_edits("heat", "heap", 0));
    }

    #[test]
    fn prefixes_stop_at_twenty_characters() {
        let all = prefixes(&mut analyzer(), "Go Très");
        assert_eq!(all, ["g", "go", "t", "tr", "tre", "tres"]);
        let long = prefixes(&mut analyzer(), &"a".repeat(30));
        assert_eq!(long.len(), MAX_PREFIX_CHARS);
    }
}
