//! The acknowledged-events log: one line per event the server accepted in a 200 answer, so that
//! `loadgen verify` can later check each is stored exactly once.
//!
//! ```text
//! # loadgen acked log v1: event_id<TAB>user_id<TAB>ts
//! 0b7e...-...<TAB>81274623<TAB>1750000123456
//! ```
//!
//! Workers hand whole batches to a writer thread over a channel, so file I/O never runs on the
//! async workers.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use uuid::Uuid;

const HEADER: &str = "# loadgen acked log v1: event_id\tuser_id\tts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckedEvent {
    pub event_id: Uuid,
    pub user_id: u64,
    pub ts: i64,
}

/// Why the log cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckedLogError {
    /// Creating, writing or reading the file failed.
    #[error("acked log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A line is not `event_id<TAB>user_id<TAB>ts`.
    #[error("acked log {path}, line {line}: expected event_id<TAB>user_id<TAB>ts, got {text:?}")]
    Malformed {
        path: PathBuf,
        line: usize,
        text: String,
    },
    /// The writer thread died.
    #[error("the acked log writer stopped unexpectedly")]
    WriterGone,
}

/// The writing end: clone [`AckedLogWriter::sender`] into each worker.
pub struct AckedLogWriter {
    sender: Option<mpsc::Sender<Vec<AckedEvent>>>,
    thread: JoinHandle<Result<u64, AckedLogError>>,
}

impl AckedLogWriter {
    pub fn create(path: &Path) -> Result<AckedLogWriter, AckedLogError> {
        let io_error = |source| AckedLogError::Io {
            path: path.to_owned(),
            source,
        };
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_error)?);
        writeln!(out, "{HEADER}").map_err(io_error)?;
        let (sender, batches) = mpsc::channel::<Vec<AckedEvent>>();
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("acked-log".into())
            .spawn(move || {
                let io_error = |source| AckedLogError::Io {
                    path: path.clone(),
                    source,
                };
                let mut lines = 0u64;
                let mut uuid_text = Uuid::encode_buffer();
                for batch in batches {
                    for event in batch {
                        let id = event.event_id.hyphenated().encode_lower(&mut uuid_text);
                        writeln!(out, "{id}\t{}\t{}", event.user_id, event.ts).map_err(io_error)?;
                        lines += 1;
                    }
                }
                out.flush().map_err(io_error)?;
                out.get_ref().sync_all().map_err(io_error)?;
                Ok(lines)
            })
            .map_err(|source| AckedLogError::Io {
                path: PathBuf::from("acked-log thread"),
                source,
            })?;
        Ok(AckedLogWriter {
            sender: Some(sender),
            thread,
        })
    }

    pub fn sender(&self) -> mpsc::Sender<Vec<AckedEvent>> {
        self.sender
            .clone()
            .expect("the sender lives until finish() takes it")
    }

    /// Waits until every batch sent so far is on disk; returns how many events were logged.
    /// Every clone of the sender must be dropped first.
    pub fn finish(mut self) -> Result<u64, AckedLogError> {
        drop(self.sender.take());
        self.thread.join().map_err(|_| AckedLogError::WriterGone)?
    }
}

/// Reads a whole log. A last line without its newline that does not parse is a torn write (the
/// generator was killed mid-line) and is skipped: its event was never fully logged.
pub fn read_acked_log(path: &Path) -> Result<Vec<AckedEvent>, AckedLogError> {
    let io_error = |source| AckedLogError::Io {
        path: path.to_owned(),
        source,
    };
    let mut reader = BufReader::new(File::open(path).map_err(io_error)?);
    let mut events = Vec::new();
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io_error)? == 0 {
            return Ok(events);
        }
        number += 1;
        let complete = line.ends_with('\n');
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match parse_line(text) {
            Some(event) => events.push(event),
            None if !complete => return Ok(events),
            None => {
                return Err(AckedLogError::Malformed {
                    path: path.to_owned(),
                    line: number,
                    text: text.chars().take(120).collect(),
                })
            }
        }
    }
}

fn parse_line(line: &str) -> Option<AckedEvent> {
    let mut fields = line.split('\t');
    let event = AckedEvent {
        event_id: Uuid::try_parse(fields.next()?).ok()?,
        user_id: fields.next()?.parse().ok()?,
        ts: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.tsv");
        let writer = AckedLogWriter::create(&path).unwrap();
        let sender = writer.sender();
        let events: Vec<AckedEvent> = (0..5)
            .map(|i| AckedEvent {
                event_id: Uuid::from_u128(i + 1),
                user_id: i as u64 * 10,
                ts: 1_700_000_000_000 + i as i64,
            })
            .collect();
        sender.send(events[..2].to_vec()).unwrap();
        sender.send(events[2..].to_vec()).unwrap();
        drop(sender);
        assert_eq!(writer.finish().unwrap(), 5);
        assert_eq!(read_acked_log(&path).unwrap(), events);
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.tsv");
        let whole = "00000000-0000-4000-8000-000000000001\t1\t2\n";
        std::fs::write(&path, format!("{HEADER}\n{whole}00000000-0000-40")).unwrap();
        assert_eq!(read_acked_log(&path).unwrap().len(), 1);
    }

    #[test]
    fn a_malformed_line_is_reported_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked.tsv");
        std::fs::write(&path, format!("{HEADER}\nnot-a-uuid\t1\t2\n")).unwrap();
        let error = read_acked_log(&path).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
