//! Segment files: append blocks durably; scan them back on start, cutting a torn tail.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sink::block::{self, BlockHeader, Bloom, HEADER_LEN};

pub fn segment_path(shard_dir: &Path, seq: u64) -> PathBuf {
    shard_dir.join(format!("{seq:016}.seg"))
}

/// The sequence number of a segment file name, if it is one.
pub fn segment_seq(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix(".seg")?.parse().ok()
}

/// Makes a directory entry (a new file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The open tail of a shard: blocks are appended here.
pub struct SegmentWriter {
    pub seq: u64,
    pub file: Arc<File>,
    pub len: u64,
    pub opened_at_ms: i64,
}

impl SegmentWriter {
    /// Creates a new, empty segment and makes its directory entry durable.
    pub fn create(shard_dir: &Path, seq: u64, now_ms: i64) -> io::Result<SegmentWriter> {
        let path = segment_path(shard_dir, seq);
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .append(true)
            .open(&path)?;
        sync_dir(shard_dir)?;
        Ok(SegmentWriter {
            seq,
            file: Arc::new(file),
            len: 0,
            opened_at_ms: now_ms,
        })
    }

    /// Reopens an existing segment to append after `len` valid bytes.
    pub fn reopen(shard_dir: &Path, seq: u64, len: u64, now_ms: i64) -> io::Result<SegmentWriter> {
        let path = segment_path(shard_dir, seq);
        let file = OpenOptions::new().read(true).append(true).open(&path)?;
        Ok(SegmentWriter {
            seq,
            file: Arc::new(file),
            len,
            opened_at_ms: now_ms,
        })
    }

    /// Appends one block; with `fsync`, it is durable when this returns. Returns its offset.
    pub fn append(&mut self, bytes: &[u8], fsync: bool) -> io::Result<u64> {
        let offset = self.len;
        let mut file: &File = &self.file;
        if let Err(error) = file.write_all(bytes) {
            // Do not leave half a block for the next append to follow: cut back to the last one.
            let _ = self.file.set_len(offset);
            return Err(error);
        }
        if fsync {
            self.file.sync_data()?;
        }
        self.len += bytes.len() as u64;
        Ok(offset)
    }
}

/// A block found by a scan: where it is, and what the index keeps of it.
pub struct ScannedBlock {
    pub offset: u64,
    pub header: BlockHeader,
    pub bloom: Bloom,
}

/// What a scan found in a segment.
pub struct Scan {
    pub blocks: Vec<ScannedBlock>,
    /// Bytes up to the end of the last good block.
    pub valid_len: u64,
    /// Bytes after it (a torn or corrupt tail).
    pub trailing: u64,
}

/// Reads a segment's blocks. With `verify`, every block's checksum is checked (the tail segment
/// after a crash); otherwise only headers and Bloom filters are read.
pub fn scan(file: &File, verify: bool) -> io::Result<Scan> {
    let file_len = file.metadata()?.len();
    let mut blocks = Vec::new();
    let mut offset = 0u64;
    while offset + HEADER_LEN as u64 <= file_len {
        let mut header_bytes = [0u8; HEADER_LEN];
        file.read_exact_at(&mut header_bytes, offset)?;
        let Ok(header) = BlockHeader::parse(&header_bytes) else {
            break;
        };
        let block_len = header.block_len();
        if offset + block_len > file_len {
            break;
        }
        let bloom_bytes = if verify {
            let mut whole = vec![0u8; block_len as usize];
            file.read_exact_at(&mut whole, offset)?;
            if block::open(&whole, &header).is_err() {
                break;
            }
            whole[HEADER_LEN..HEADER_LEN + header.bloom_len as usize].to_vec()
        } else {
            let mut bloom_bytes = vec![0u8; header.bloom_len as usize];
            file.read_exact_at(&mut bloom_bytes, offset + HEADER_LEN as u64)?;
            bloom_bytes
        };
        let Some(bloom) = Bloom::from_bytes(&bloom_bytes) else {
            break;
        };
        blocks.push(ScannedBlock {
            offset,
            header,
            bloom,
        });
        offset += block_len;
    }
    Ok(Scan {
        blocks,
        valid_len: offset,
        trailing: file_len - offset,
    })
}

/// Reads one block and returns its checked, decompressed rows.
pub fn read_block(file: &File, offset: u64, header: &BlockHeader) -> io::Result<Vec<u8>> {
    let mut whole = vec![0u8; header.block_len() as usize];
    file.read_exact_at(&mut whole, offset)?;
    block::open(&whole, header)
}
