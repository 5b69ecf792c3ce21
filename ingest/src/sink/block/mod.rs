//! The one block codec of both sinks: events as a header, a Bloom filter of user ids, and zstd
//! of delta-encoded rows sorted by the primary key. The embedded store's log segments are made
//! of blocks, and so are Cassandra's `event_log` rows and every chunk of the packed layout.
//! Layout and rationale: `../embedded/store.md`.

mod bloom;

use std::io;

use uuid::Uuid;
use wire::{CountryCode, EventKind, PlaybackEvent, SmolStr};

pub use bloom::Bloom;

/// A block whose payload is zstd of its rows.
pub const MAGIC: u32 = u32::from_le_bytes(*b"PPB1");
/// A block whose payload is its rows as they are (`Payload::AsIs`).
pub const MAGIC_AS_IS: u32 = u32::from_le_bytes(*b"PPB0");
pub const HEADER_LEN: usize = 48;
const ZSTD_LEVEL: i32 = 1;
/// The fewest bytes an encoded row takes (flags, ids, kind).
const MIN_ROW_BYTES: usize = 8;
/// A block never decompresses past this (a corrupt `raw_len` must not allocate gigabytes).
const MAX_RAW_LEN: usize = 256 << 20;

/// What a block's header says, plus its Bloom filter: all the index keeps of it.
#[derive(Debug, Clone)]
pub struct BlockHeader {
    /// Whether the payload is zstd of the rows (`MAGIC`) or the rows themselves (`MAGIC_AS_IS`).
    pub compressed: bool,
    pub crc: u32,
    pub raw_len: u32,
    pub payload_len: u32,
    pub bloom_len: u32,
    pub rows: u32,
    pub min_ts: i64,
    pub max_ts: i64,
    pub max_received_at: i64,
}

impl BlockHeader {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> io::Result<BlockHeader> {
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let compressed = match u32_at(0) {
            MAGIC => true,
            MAGIC_AS_IS => false,
            _ => return Err(corrupt("bad block magic")),
        };
        let header = BlockHeader {
            compressed,
            crc: u32_at(4),
            raw_len: u32_at(8),
            payload_len: u32_at(12),
            bloom_len: u32_at(16),
            rows: u32_at(20),
            min_ts: i64_at(24),
            max_ts: i64_at(32),
            max_received_at: i64_at(40),
        };
        if header.raw_len as usize > MAX_RAW_LEN
            || (!compressed && header.raw_len != header.payload_len)
            || !header.bloom_len.is_multiple_of(8)
            || header.bloom_len == 0
        {
            return Err(corrupt("implausible block header"));
        }
        Ok(header)
    }

    /// Bytes of the whole block on disk.
    pub fn block_len(&self) -> u64 {
        HEADER_LEN as u64 + self.bloom_len as u64 + self.payload_len as u64
    }
}

pub fn corrupt(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A block ready to append.
pub struct EncodedBlock {
    pub bytes: Vec<u8>,
    pub header: BlockHeader,
    pub bloom: Bloom,
}

mod flag {
    pub const SAME_USER: u32 = 1;
    pub const SAME_SESSION: u32 = 1 << 1;
    pub const SENT_AT: u32 = 1 << 2;
    pub const DURATION: u32 = 1 << 3;
    pub const BITRATE: u32 = 1 << 4;
    pub const BUFFER: u32 = 1 << 5;
    pub const ERROR_CODE: u32 = 1 << 6;
    pub const DEVICE: u32 = 1 << 7;
    pub const CDN: u32 = 1 << 8;
    pub const APP_VERSION: u32 = 1 << 9;
    pub const COUNTRY: u32 = 1 << 10;
    // The QoE fields, added later: rows written before them simply never set these bits.
    pub const PLAYED: u32 = 1 << 11;
    pub const STARTUP: u32 = 1 << 12;
    pub const BEFORE_START: u32 = 1 << 13;
    pub const BEFORE_START_TRUE: u32 = 1 << 14;
    pub const FATAL: u32 = 1 << 15;
    pub const FATAL_TRUE: u32 = 1 << 16;
}

/// How a block's rows are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// zstd level 1: blocks that are kept (history blocks, chunks, Cassandra's log rows).
    Zstd,
    /// The rows as they are: blocks that live seconds (the embedded store's log in the packed
    /// layout, deleted once its events are in chunks), where zstd cost ~11% of the server's
    /// CPU to save disk writes nobody is short of.
    AsIs,
}

/// Sorts a batch by primary key, drops exact duplicates, and encodes it as a zstd block.
pub fn encode(events: &[PlaybackEvent]) -> EncodedBlock {
    encode_as(events, Payload::Zstd)
}

/// [`encode`], with the payload stored as `kind` says.
pub fn encode_as(events: &[PlaybackEvent], kind: Payload) -> EncodedBlock {
    let mut order: Vec<&PlaybackEvent> = events.iter().collect();
    order.sort_unstable_by(|a, b| {
        (a.user_id, b.ts, b.event_id, b.received_at).cmp(&(
            b.user_id,
            a.ts,
            a.event_id,
            a.received_at,
        ))
    });
    order.dedup_by(|later, kept| {
        later.user_id == kept.user_id && later.ts == kept.ts && later.event_id == kept.event_id
    });

    let distinct_users = 1 + order
        .windows(2)
        .filter(|pair| pair[0].user_id != pair[1].user_id)
        .count();
    let mut bloom = Bloom::with_capacity(distinct_users);
    let mut raw = Vec::with_capacity(order.len() * 72);
    let mut previous: Option<&PlaybackEvent> = None;
    let (mut min_ts, mut max_ts, mut max_received_at) = (i64::MAX, i64::MIN, i64::MIN);
    for event in &order {
        if previous.is_none_or(|prev| prev.user_id != event.user_id) {
            bloom.insert(event.user_id);
        }
        encode_row(&mut raw, event, previous);
        min_ts = min_ts.min(event.ts);
        max_ts = max_ts.max(event.ts);
        max_received_at = max_received_at.max(event.received_at);
        previous = Some(event);
    }
    let raw_len = raw.len() as u32;
    let compressed = kind == Payload::Zstd;
    let payload = if compressed { compress(&raw) } else { raw };

    let mut header = BlockHeader {
        compressed,
        crc: 0,
        raw_len,
        payload_len: payload.len() as u32,
        bloom_len: bloom.byte_len() as u32,
        rows: order.len() as u32,
        min_ts,
        max_ts,
        max_received_at,
    };
    let mut bytes = Vec::with_capacity(header.block_len() as usize);
    let magic = if compressed { MAGIC } else { MAGIC_AS_IS };
    bytes.extend_from_slice(&magic.to_le_bytes());
    bytes.extend_from_slice(&[0; 4]);
    for value in [
        header.raw_len,
        header.payload_len,
        header.bloom_len,
        header.rows,
    ] {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    for value in [min_ts, max_ts, max_received_at] {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bloom.write_to(&mut bytes);
    bytes.extend_from_slice(&payload);
    header.crc = crc32fast::hash(&bytes[8..]);
    bytes[4..8].copy_from_slice(&header.crc.to_le_bytes());
    EncodedBlock {
        bytes,
        header,
        bloom,
    }
}

/// zstd of `raw`, with this thread's compressor: a context made once, not per block (a chunk is
/// a small block, and making a context costs more than compressing it).
fn compress(raw: &[u8]) -> Vec<u8> {
    thread_local! {
        static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
        }
        match cell.as_mut() {
            Some(compressor) => compressor.compress(raw).ok(),
            None => None,
        }
        .unwrap_or_else(|| {
            zstd::bulk::compress(raw, ZSTD_LEVEL).expect("zstd compresses any input in memory")
        })
    })
}

/// Checks a whole encoded block (header first) and returns its events, in their sorted order.
pub fn decode(bytes: &[u8]) -> io::Result<Vec<PlaybackEvent>> {
    let header: &[u8; HEADER_LEN] = bytes
        .get(..HEADER_LEN)
        .and_then(|head| head.try_into().ok())
        .ok_or_else(|| corrupt("block shorter than its header"))?;
    let header = BlockHeader::parse(header)?;
    let raw = open(bytes, &header)?;
    // `rows` is only a hint: a forged header must not reserve more than the rows could hold.
    let mut events = Vec::with_capacity((header.rows as usize).min(raw.len() / MIN_ROW_BYTES));
    for row in RowReader::new(&raw) {
        events.push(row?);
    }
    Ok(events)
}

/// Checks a whole block read from disk and returns its decompressed rows.
pub fn open(block: &[u8], header: &BlockHeader) -> io::Result<Vec<u8>> {
    if block.len() as u64 != header.block_len() || crc32fast::hash(&block[8..]) != header.crc {
        return Err(corrupt("block checksum mismatch"));
    }
    let payload = &block[HEADER_LEN + header.bloom_len as usize..];
    if !header.compressed {
        return Ok(payload.to_vec());
    }
    let raw = zstd::bulk::decompress(payload, header.raw_len as usize)
        .map_err(|error| corrupt(&format!("block does not decompress: {error}")))?;
    if raw.len() != header.raw_len as usize {
        return Err(corrupt("block decompressed to the wrong length"));
    }
    Ok(raw)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    (value >> 1) as i64 ^ -((value & 1) as i64)
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    // Texts are at most 64 bytes (wire limits), so one length byte is enough.
    debug_assert!(text.len() <= u8::MAX as usize);
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

fn encode_row(out: &mut Vec<u8>, event: &PlaybackEvent, previous: Option<&PlaybackEvent>) {
    let same_user = previous.is_some_and(|prev| prev.user_id == event.user_id);
    let same_session = previous.is_some_and(|prev| prev.session_id == event.session_id);
    let mut flags = 0u32;
    let mut set = |condition: bool, bit: u32| {
        if condition {
            flags |= bit;
        }
    };
    set(same_user, flag::SAME_USER);
    set(same_session, flag::SAME_SESSION);
    set(event.sent_at.is_some(), flag::SENT_AT);
    set(event.duration_ms.is_some(), flag::DURATION);
    set(event.bitrate_kbps.is_some(), flag::BITRATE);
    set(event.buffer_ms.is_some(), flag::BUFFER);
    set(event.error_code.is_some(), flag::ERROR_CODE);
    set(event.device.is_some(), flag::DEVICE);
    set(event.cdn.is_some(), flag::CDN);
    set(event.app_version.is_some(), flag::APP_VERSION);
    set(event.country.is_some(), flag::COUNTRY);
    set(event.played_ms.is_some(), flag::PLAYED);
    set(event.startup_ms.is_some(), flag::STARTUP);
    set(event.before_start.is_some(), flag::BEFORE_START);
    set(event.before_start == Some(true), flag::BEFORE_START_TRUE);
    set(event.fatal.is_some(), flag::FATAL);
    set(event.fatal == Some(true), flag::FATAL_TRUE);
    put_varint(out, flags as u64);
    match previous.filter(|_| same_user) {
        // Rows of one user are sorted ts DESC, so the step back in time is never negative.
        Some(prev) => put_varint(out, zigzag(prev.ts - event.ts)),
        None => {
            put_varint(out, event.user_id);
            put_varint(out, zigzag(event.ts));
        }
    }
    out.extend_from_slice(event.event_id.as_bytes());
    if !same_session {
        out.extend_from_slice(event.session_id.as_bytes());
    }
    put_varint(out, event.content_id);
    out.push(event.kind.code());
    put_varint(out, event.position_ms);
    put_varint(out, zigzag(event.received_at.wrapping_sub(event.ts)));
    if let Some(sent_at) = event.sent_at {
        put_varint(out, zigzag(sent_at.wrapping_sub(event.ts)));
    }
    if let Some(duration) = event.duration_ms {
        put_varint(out, duration);
    }
    if let Some(bitrate) = event.bitrate_kbps {
        put_varint(out, bitrate as u64);
    }
    if let Some(buffer) = event.buffer_ms {
        put_varint(out, buffer as u64);
    }
    if let Some(played) = event.played_ms {
        put_varint(out, played as u64);
    }
    if let Some(startup) = event.startup_ms {
        put_varint(out, startup as u64);
    }
    for text in [
        &event.error_code,
        &event.device,
        &event.cdn,
        &event.app_version,
    ]
    .into_iter()
    .flatten()
    {
        put_text(out, text);
    }
    if let Some(country) = event.country {
        out.extend_from_slice(&country.as_bytes());
    }
}

/// Reads rows back, in their sorted order.
pub struct RowReader<'a> {
    raw: &'a [u8],
    at: usize,
    previous: Option<PlaybackEvent>,
}

impl<'a> RowReader<'a> {
    pub fn new(raw: &'a [u8]) -> RowReader<'a> {
        RowReader {
            raw,
            at: 0,
            previous: None,
        }
    }

    fn byte(&mut self) -> io::Result<u8> {
        let byte = *self
            .raw
            .get(self.at)
            .ok_or_else(|| corrupt("row cut short"))?;
        self.at += 1;
        Ok(byte)
    }

    fn bytes<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let slice = self
            .raw
            .get(self.at..self.at + N)
            .ok_or_else(|| corrupt("row cut short"))?;
        self.at += N;
        Ok(slice.try_into().expect("slice of N"))
    }

    fn varint(&mut self) -> io::Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= ((byte & 0x7f) as u64) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(corrupt("varint too long"))
    }

    fn text(&mut self) -> io::Result<SmolStr> {
        let len = self.byte()? as usize;
        let slice = self
            .raw
            .get(self.at..self.at + len)
            .ok_or_else(|| corrupt("row cut short"))?;
        self.at += len;
        let text = std::str::from_utf8(slice).map_err(|_| corrupt("text is not UTF-8"))?;
        Ok(SmolStr::new(text))
    }

    fn row(&mut self) -> io::Result<PlaybackEvent> {
        let flags = u32::try_from(self.varint()?).map_err(|_| corrupt("bad row flags"))?;
        let has = |bit: u32| flags & bit != 0;
        let previous = self.previous.take();
        let (user_id, ts) = match (&previous, has(flag::SAME_USER)) {
            (Some(prev), true) => (prev.user_id, prev.ts - unzigzag(self.varint()?)),
            (None, true) => return Err(corrupt("first row refers to a previous user")),
            (_, false) => (self.varint()?, unzigzag(self.varint()?)),
        };
        let event_id = Uuid::from_bytes(self.bytes()?);
        let session_id = match (&previous, has(flag::SAME_SESSION)) {
            (Some(prev), true) => prev.session_id,
            (None, true) => return Err(corrupt("first row refers to a previous session")),
            (_, false) => Uuid::from_bytes(self.bytes()?),
        };
        let content_id = self.varint()?;
        let kind =
            EventKind::from_code(self.byte()?).ok_or_else(|| corrupt("unknown event kind"))?;
        let position_ms = self.varint()?;
        let received_at = ts.wrapping_add(unzigzag(self.varint()?));
        let sent_at = if has(flag::SENT_AT) {
            Some(ts.wrapping_add(unzigzag(self.varint()?)))
        } else {
            None
        };
        let duration_ms = if has(flag::DURATION) {
            Some(self.varint()?)
        } else {
            None
        };
        let bitrate_kbps = if has(flag::BITRATE) {
            Some(self.varint()? as u32)
        } else {
            None
        };
        let buffer_ms = if has(flag::BUFFER) {
            Some(self.varint()? as u32)
        } else {
            None
        };
        let played_ms = if has(flag::PLAYED) {
            Some(self.varint()? as u32)
        } else {
            None
        };
        let startup_ms = if has(flag::STARTUP) {
            Some(self.varint()? as u32)
        } else {
            None
        };
        let before_start = has(flag::BEFORE_START).then(|| has(flag::BEFORE_START_TRUE));
        let fatal = has(flag::FATAL).then(|| has(flag::FATAL_TRUE));
        let error_code = if has(flag::ERROR_CODE) {
            Some(self.text()?)
        } else {
            None
        };
        let device = if has(flag::DEVICE) {
            Some(self.text()?)
        } else {
            None
        };
        let cdn = if has(flag::CDN) {
            Some(self.text()?)
        } else {
            None
        };
        let app_version = if has(flag::APP_VERSION) {
            Some(self.text()?)
        } else {
            None
        };
        let country = if has(flag::COUNTRY) {
            let code = self.bytes::<2>()?;
            let text = std::str::from_utf8(&code).map_err(|_| corrupt("bad country"))?;
            Some(CountryCode::parse(text).ok_or_else(|| corrupt("bad country"))?)
        } else {
            None
        };
        let event = PlaybackEvent {
            event_id,
            session_id,
            user_id,
            content_id,
            kind,
            ts,
            sent_at,
            received_at,
            position_ms,
            duration_ms,
            bitrate_kbps,
            buffer_ms,
            played_ms,
            startup_ms,
            before_start,
            fatal,
            error_code,
            device,
            cdn,
            app_version,
            country,
        };
        self.previous = Some(event.clone());
        Ok(event)
    }
}

impl Iterator for RowReader<'_> {
    type Item = io::Result<PlaybackEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.raw.len() {
            return None;
        }
        let row = self.row();
        if row.is_err() {
            self.at = self.raw.len();
        }
        Some(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(count: u64) -> Vec<PlaybackEvent> {
        (0..count)
            .map(|i| testkit::event(7 + i % 3, 1_700_000_000_000 + i as i64 * 10_000))
            .collect()
    }

    fn sorted(mut events: Vec<PlaybackEvent>) -> Vec<PlaybackEvent> {
        events.sort_by_key(|event| (event.user_id, event.ts));
        events
    }

    #[test]
    fn the_qoe_fields_read_back_absent_false_or_true() {
        let flags = [None, Some(false), Some(true)];
        let written: Vec<PlaybackEvent> = (0..9)
            .map(|i| PlaybackEvent {
                played_ms: (i % 2 == 0).then_some(i * 1_000),
                startup_ms: (i % 3 == 0).then_some(700 + i),
                before_start: flags[i as usize % 3],
                fatal: flags[i as usize / 3],
                ..testkit::event(7, 1_700_000_000_000 + i64::from(i) * 10_000)
            })
            .collect();
        for payload in [Payload::Zstd, Payload::AsIs] {
            let read = decode(&encode_as(&written, payload).bytes).unwrap();
            assert_eq!(sorted(read), sorted(written.clone()), "{payload:?}");
        }
    }

    #[test]
    fn both_payloads_read_back_the_same_events() {
        let written = events(200);
        for (payload, magic) in [(Payload::Zstd, MAGIC), (Payload::AsIs, MAGIC_AS_IS)] {
            let block = encode_as(&written, payload).bytes;
            assert_eq!(block[..4], magic.to_le_bytes(), "{payload:?}");
            let read = decode(&block).unwrap();
            assert_eq!(sorted(read), sorted(written.clone()), "{payload:?}");
        }
        let as_is = encode_as(&written, Payload::AsIs).bytes.len();
        assert!(encode(&written).bytes.len() < as_is);
    }

    #[test]
    fn a_block_with_a_bad_magic_or_disagreeing_lengths_is_corrupt() {
        let mut block = encode_as(&events(2), Payload::AsIs).bytes;
        let raw_len = u32::from_le_bytes(block[8..12].try_into().unwrap());
        block[8..12].copy_from_slice(&(raw_len + 1).to_le_bytes());
        assert!(decode(&block).is_err());
        let mut block = encode(&events(2)).bytes;
        block[0..4].copy_from_slice(b"PPB9");
        assert!(decode(&block).is_err());
    }
}
