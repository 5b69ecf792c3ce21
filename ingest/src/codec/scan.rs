//! A strict RFC 8259 scanner: the slow path behind simd-json. simd-json refuses some valid JSON
//! (integers outside 64 bits, `1e400`, very deep nesting) and silently turns a lone surrogate
//! escape into `\u0000`; a body holding such a value must still get per-event decisions. The
//! scanner says whether a document is JSON at all (with a reason a client can act on, never a
//! parser's internals), where each element of the top-level array lies, and which values in an
//! element cannot be represented.
//!
//! Iterative (a byte per open container), so no nesting can overflow a stack.

use std::ops::Range;

/// Why a document is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotJson {
    pub offset: usize,
    pub reason: &'static str,
}

impl std::fmt::Display for NotJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// A value that is valid JSON but that the service cannot represent faithfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrepresentable {
    /// An integer outside both i64 and u64, or a number whose value overflows f64.
    NumberOutOfRange,
    /// A `\uD800`-`\uDFFF` escape not part of a surrogate pair: not text.
    LoneSurrogate,
}

impl Unrepresentable {
    pub fn describe(self) -> &'static str {
        match self {
            Unrepresentable::NumberOutOfRange => {
                "holds a number outside the range of a 64-bit integer or a double"
            }
            Unrepresentable::LoneSurrogate => {
                "holds a lone UTF-16 surrogate escape, which is not text"
            }
        }
    }
}

/// The first unrepresentable value of an element, and the element's field that holds it (its
/// own member, even when the value is nested deeper inside it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: Unrepresentable,
    /// The member's key, as written (escapes kept); `None` when the element itself is the value.
    pub field: Option<Range<usize>>,
}

/// One top-level element of an array document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub range: Range<usize>,
    pub anomaly: Option<Anomaly>,
}

/// Why the document is valid JSON yet not a body of events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scanned {
    Array(Vec<Element>),
    NotAnArray,
}

/// Scans a whole document; a valid array yields its elements.
pub fn scan_array(doc: &[u8]) -> Result<Scanned, NotJson> {
    check_utf8(doc)?;
    let mut scanner = Scanner::new(doc);
    scanner.skip_whitespace();
    if scanner.peek() != Some(b'[') {
        scanner.value()?;
        scanner.end()?;
        return Ok(Scanned::NotAnArray);
    }
    scanner.pos += 1;
    let mut elements = Vec::new();
    scanner.skip_whitespace();
    if scanner.peek() == Some(b']') {
        scanner.pos += 1;
    } else {
        loop {
            scanner.skip_whitespace();
            let start = scanner.pos;
            let anomaly = scanner.value()?;
            elements.push(Element {
                range: start..scanner.pos,
                anomaly,
            });
            scanner.skip_whitespace();
            match scanner.next() {
                Some(b',') => continue,
                Some(b']') => break,
                _ => return Err(scanner.fail_back("expected `,` or `]` after an element")),
            }
        }
    }
    scanner.end()?;
    Ok(Scanned::Array(elements))
}

/// Scans a document holding one value (an NDJSON line).
pub fn scan_value(doc: &[u8]) -> Result<Option<Anomaly>, NotJson> {
    check_utf8(doc)?;
    let mut scanner = Scanner::new(doc);
    scanner.skip_whitespace();
    let anomaly = scanner.value()?;
    scanner.end()?;
    Ok(anomaly)
}

fn check_utf8(doc: &[u8]) -> Result<(), NotJson> {
    std::str::from_utf8(doc)
        .map(|_| ())
        .map_err(|error| NotJson {
            offset: error.valid_up_to(),
            reason: "invalid UTF-8",
        })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Array,
    Object,
}

struct Scanner<'a> {
    doc: &'a [u8],
    pos: usize,
    open: Vec<Open>,
    /// The key of the current member of the value's own object (depth 1).
    field: Option<Range<usize>>,
    anomaly: Option<Anomaly>,
}

impl<'a> Scanner<'a> {
    fn new(doc: &'a [u8]) -> Scanner<'a> {
        Scanner {
            doc,
            pos: 0,
            open: Vec::new(),
            field: None,
            anomaly: None,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.doc.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn fail(&self, reason: &'static str) -> NotJson {
        NotJson {
            offset: self.pos,
            reason,
        }
    }

    /// A failure at the byte just consumed.
    fn fail_back(&self, reason: &'static str) -> NotJson {
        NotJson {
            offset: self.pos.saturating_sub(1),
            reason,
        }
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn end(&mut self) -> Result<(), NotJson> {
        self.skip_whitespace();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.fail("unexpected data after the JSON value")),
        }
    }

    fn note(&mut self, kind: Unrepresentable) {
        if self.anomaly.is_none() {
            let field = if self.open.first() == Some(&Open::Object) {
                self.field.clone()
            } else {
                None
            };
            self.anomaly = Some(Anomaly { kind, field });
        }
    }

    /// Scans one complete value from `pos` (after whitespace), containers included.
    fn value(&mut self) -> Result<Option<Anomaly>, NotJson> {
        self.open.clear();
        self.field = None;
        self.anomaly = None;
        loop {
            // A value starts here.
            self.skip_whitespace();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.open.push(Open::Object);
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        self.open.pop();
                    } else {
                        self.member_key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.open.push(Open::Array);
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        self.open.pop();
                    } else {
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.fail("expected a JSON value")),
                None => return Err(self.fail("the document ends where a value was expected")),
            }
            // A value ended: close containers or move to the next member.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(self.anomaly.take());
                };
                self.skip_whitespace();
                match (open, self.next()) {
                    (_, Some(b',')) => {
                        if open == Open::Object {
                            self.skip_whitespace();
                            self.member_key()?;
                        }
                        break;
                    }
                    (Open::Array, Some(b']')) | (Open::Object, Some(b'}')) => {
                        self.open.pop();
                    }
                    (Open::Array, Some(_)) => {
                        return Err(self.fail_back("expected `,` or `]` in an array"))
                    }
                    (Open::Object, Some(_)) => {
                        return Err(self.fail_back("expected `,` or `}` in an object"))
                    }
                    (_, None) => return Err(self.fail("the document ends inside a container")),
                }
            }
        }
    }

    /// `"key" :`, leaving `pos` before the member's value.
    fn member_key(&mut self) -> Result<(), NotJson> {
        if self.peek() != Some(b'"') {
            return Err(self.fail("expected a string key in an object"));
        }
        let key = self.string()?;
        if self.open.len() == 1 {
            self.field = Some(key);
        }
        self.skip_whitespace();
        if self.next() != Some(b':') {
            return Err(self.fail_back("expected `:` after an object key"));
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), NotJson> {
        if self.doc[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.fail("expected a JSON value"))
        }
    }

    /// A string from its opening quote; returns the range of its content, as written.
    fn string(&mut self) -> Result<Range<usize>, NotJson> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.next() {
                None => return Err(self.fail("the document ends inside a string")),
                Some(b'"') => return Ok(start..self.pos - 1),
                Some(b'\\') => self.escape()?,
                Some(0x00..=0x1f) => {
                    return Err(self.fail_back("a control character must be escaped in a string"))
                }
                Some(_) => {}
            }
        }
    }

    /// After a backslash.
    fn escape(&mut self) -> Result<(), NotJson> {
        match self.next() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(()),
            Some(b'u') => {
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        let rest = &self.doc[self.pos..];
                        let paired = rest.len() >= 6
                            && rest.starts_with(b"\\u")
                            && hex4(&rest[2..6])
                                .is_some_and(|low| (0xDC00..=0xDFFF).contains(&low));
                        if paired {
                            self.pos += 6;
                        } else {
                            self.note(Unrepresentable::LoneSurrogate);
                        }
                    }
                    0xDC00..=0xDFFF => self.note(Unrepresentable::LoneSurrogate),
                    _ => {}
                }
                Ok(())
            }
            _ => Err(self.fail_back("invalid escape in a string")),
        }
    }

    fn hex4(&mut self) -> Result<u16, NotJson> {
        let digits = self
            .doc
            .get(self.pos..self.pos + 4)
            .and_then(hex4)
            .ok_or_else(|| self.fail("a \\u escape needs four hex digits"))?;
        self.pos += 4;
        Ok(digits)
    }

    fn number(&mut self) -> Result<(), NotJson> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.fail_back("expected a digit in a number")),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            integer = false;
            if !matches!(self.next(), Some(b'0'..=b'9')) {
                return Err(self.fail_back("expected a digit after the decimal point"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            integer = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(self.next(), Some(b'0'..=b'9')) {
                return Err(self.fail_back("expected a digit in an exponent"));
            }
            self.digits();
        }
        // ASCII by construction.
        let text = std::str::from_utf8(&self.doc[start..self.pos]).unwrap_or("");
        let representable = if integer {
            text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok()
        } else {
            text.parse::<f64>().is_ok_and(f64::is_finite)
        };
        if !representable {
            self.note(Unrepresentable::NumberOutOfRange);
        }
        Ok(())
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }
}

fn hex4(digits: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.len() != 4 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

/// Whether `body` holds a real `\u` escape of a surrogate that is not part of a pair, which
/// simd-json would store as `\u0000`. Cheap when the body has no backslash at all.
pub fn has_lone_surrogate(body: &[u8]) -> bool {
    let mut from = 0;
    while let Some(found) = memchr::memchr(b'\\', &body[from..]) {
        let at = from + found;
        // A run of backslashes: pairs are escaped backslashes; an odd one starts an escape.
        let run = body[at..].iter().take_while(|byte| **byte == b'\\').count();
        let escape = at + run - 1;
        from = escape + 1;
        if run % 2 == 0 || body.get(escape + 1) != Some(&b'u') {
            continue;
        }
        let Some(unit) = body.get(escape + 2..escape + 6).and_then(hex4) else {
            continue;
        };
        match unit {
            0xD800..=0xDBFF => {
                let low = body
                    .get(escape + 6..escape + 12)
                    .filter(|next| next.starts_with(b"\\u"))
                    .and_then(|next| hex4(&next[2..]));
                if !low.is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) {
                    return true;
                }
                from = escape + 12;
            }
            0xDC00..=0xDFFF => return true,
            _ => from = escape + 6,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(doc: &str) -> bool {
        scan_value(doc.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_what_rfc_8259_accepts() {
        for doc in [
            "0",
            "-0",
            "1.5e-7",
            "1E+2",
            "\"\"",
            "\"\\u00e9\\n\\/\"",
            "[]",
            "{}",
            " [ 1 , {\"a\" : [true,false,null]} ] ",
            "123456789012345678901234567890",
            "1e400",
        ] {
            assert!(valid(doc), "{doc}");
        }
    }

    #[test]
    fn refuses_what_rfc_8259_refuses() {
        for doc in [
            "",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "'x'",
            "tru",
            "nul",
            "\"\t\"",
            "\"\\x\"",
            "\"\\u12\"",
            "[1 2]",
            "{\"a\" 1}",
            "[",
            "\"abc",
            "1 2",
            "NaN",
            "Infinity",
            "\u{feff}1",
        ] {
            assert!(!valid(doc), "{doc:?}");
        }
    }

    #[test]
    fn unrepresentable_values_name_their_field() {
        let doc = br#"{"user_id":18446744073709551616,"x":1}"#;
        let anomaly = scan_value(doc).unwrap().unwrap();
        assert_eq!(anomaly.kind, Unrepresentable::NumberOutOfRange);
        assert_eq!(&doc[anomaly.field.unwrap()], b"user_id");

        let doc = br#"{"ext":{"deep":["\ud800"]}}"#;
        let anomaly = scan_value(doc).unwrap().unwrap();
        assert_eq!(anomaly.kind, Unrepresentable::LoneSurrogate);
        assert_eq!(&doc[anomaly.field.unwrap()], b"ext");

        assert_eq!(scan_value(br#""\ud83d\ude00""#).unwrap(), None);
        assert_eq!(scan_value(b"-9223372036854775808").unwrap(), None);
        assert!(scan_value(b"-9223372036854775809").unwrap().is_some());
        assert!(scan_value(b"1e400").unwrap().is_some());
        assert_eq!(scan_value(b"1e-400").unwrap(), None);
    }

    #[test]
    fn elements_are_found_with_their_ranges() {
        let doc = br#" [ {"a":1} , 2e999 ,"x" ] "#;
        let Scanned::Array(elements) = scan_array(doc).unwrap() else {
            panic!("an array");
        };
        assert_eq!(elements.len(), 3);
        assert_eq!(&doc[elements[0].range.clone()], br#"{"a":1}"#);
        assert!(elements[1].anomaly.is_some());
        assert_eq!(&doc[elements[2].range.clone()], br#""x""#);
        assert_eq!(scan_array(b"{}").unwrap(), Scanned::NotAnArray);
    }

    #[test]
    fn nesting_of_any_depth_is_scanned_without_recursion() {
        let depth = 1_000_000;
        let doc = format!("[{}{}]", "[".repeat(depth), "]".repeat(depth));
        assert!(matches!(scan_array(doc.as_bytes()), Ok(Scanned::Array(e)) if e.len() == 1));
    }

    #[test]
    fn lone_surrogates_are_found_and_pairs_and_escaped_backslashes_are_not() {
        assert!(has_lone_surrogate(br#""\ud800""#));
        assert!(has_lone_surrogate(br#""\udc00x""#));
        assert!(has_lone_surrogate(br#""\ud800\u0041""#));
        assert!(has_lone_surrogate(br#""\\\ud800""#));
        assert!(!has_lone_surrogate(br#""\ud83d\ude00""#));
        assert!(!has_lone_surrogate(br#""\\ud800""#));
        assert!(!has_lone_surrogate(br#""plain""#));
        assert!(!has_lone_surrogate(br#""\u0041\n""#));
    }
}
