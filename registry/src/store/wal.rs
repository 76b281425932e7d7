//! The Raft log as segmented append-only files, plus the vote and purge point in `meta.json`.
//!
//! Record: `[len u32][crc32 u32][index u64][payload len bytes]`, little-endian; the CRC
//! covers index and payload. Segments are `<first index, 20 digits>.seg`, rotated at
//! [`SEGMENT_MAX`]. Appends are one positional write per batch; durability comes from
//! `fdatasync` by the group-commit [`super::flush::Flusher`]. Recovery reads every segment and
//! cuts the log at the first torn or corrupt record (a crash mid-write), so what is left is
//! always a contiguous prefix of what was acknowledged and more.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::types::{LogId, Vote};

const HEADER: usize = 16;
/// Segments are rotated past this size so purged ones can be deleted whole.
pub(crate) const SEGMENT_MAX: u64 = 8 * 1024 * 1024;
const META: &str = "meta.json";

/// Vote and purge point, rewritten atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub vote: Option<Vote>,
    pub purged: Option<LogId>,
}

struct Segment {
    first: u64,
    path: PathBuf,
    file: Arc<File>,
    len: u64,
}

#[derive(Clone, Copy)]
struct Loc {
    offset: u64,
    len: u32,
}

/// The open log. Not thread-safe on its own; [`super::LogStore`] wraps it in a mutex.
pub(crate) struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// `locs[i]` is where index `first_index + i` lives.
    locs: VecDeque<Loc>,
    first_index: u64,
    pub(crate) meta: Meta,
}

fn seg_name(first: u64) -> String {
    format!("{first:020}.seg")
}

fn open_rw(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .open(path)
}

/// Write a new segment full of zeros once, so appends overwrite allocated blocks and
/// `fdatasync` never has to journal a size change. Recovery stops at the first zero header.
fn preallocate(file: &File) -> io::Result<()> {
    let chunk = vec![0u8; 1024 * 1024];
    let mut off = 0;
    while off < SEGMENT_MAX {
        file.write_all_at(&chunk, off)?;
        off += chunk.len() as u64;
    }
    file.sync_all()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Wal {
    /// Open `dir`, recovering after a crash: torn or corrupt tails are cut off.
    pub(crate) fn open(dir: &Path) -> io::Result<Wal> {
        fs::create_dir_all(dir)?;
        let meta: Meta = match fs::read(dir.join(META)) {
            Ok(raw) => serde_json::from_slice(&raw).map_err(|e| corrupt(format!("{META}: {e}")))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(e),
        };
        let mut firsts: Vec<u64> = Vec::new();
        for ent in fs::read_dir(dir)? {
            let name = ent?.file_name().to_string_lossy().into_owned();
            if let Some(first) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let purged = meta.purged.map(|l| l.index);
        let mut wal = Wal {
            dir: dir.to_owned(),
            segments: Vec::new(),
            locs: VecDeque::new(),
            first_index: purged.map_or(0, |p| p + 1),
            meta,
        };
        let mut cut = false;
        for first in firsts {
            let path = dir.join(seg_name(first));
            if cut {
                fs::remove_file(&path)?;
                continue;
            }
            let file = open_rw(&path, false)?;
            let buf = fs::read(&path)?;
            let valid = wal.scan(first, &buf, purged);
            // Segments are preallocated with zeros: a zero tail is the normal end. Anything
            // else past the valid prefix is a torn write or corruption and is cut (zeroed),
            // together with every later segment.
            if buf[valid as usize..].iter().any(|b| *b != 0) {
                tracing::warn!(segment = %path.display(), at = valid, size = buf.len(), "cutting a torn or corrupt log tail");
                file.set_len(valid)?;
                file.set_len(SEGMENT_MAX.max(valid))?;
                file.sync_all()?;
                cut = true;
            }
            wal.segments.push(Segment {
                first,
                path,
                file: Arc::new(file),
                len: valid,
            });
        }
        if cut {
            sync_dir(dir)?;
        }
        Ok(wal)
    }

    /// Index the valid records of one segment; the length of its valid prefix.
    fn scan(&mut self, first: u64, buf: &[u8], purged: Option<u64>) -> u64 {
        let mut off = 0usize;
        let mut expect_first = true;
        while off + HEADER <= buf.len() {
            let len =
                u32::from_le_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            let crc = u32::from_le_bytes([buf[off + 4], buf[off + 5], buf[off + 6], buf[off + 7]]);
            let Some(end) = (off + HEADER).checked_add(len).filter(|e| *e <= buf.len()) else {
                break;
            };
            if crc32fast::hash(&buf[off + 8..end]) != crc {
                break;
            }
            let mut ib = [0u8; 8];
            ib.copy_from_slice(&buf[off + 8..off + 16]);
            let index = u64::from_le_bytes(ib);
            if expect_first && index != first {
                break;
            }
            expect_first = false;
            let loc = Loc {
                offset: off as u64,
                len: len as u32,
            };
            if purged.is_none_or(|p| index > p) {
                if self.locs.is_empty() {
                    self.first_index = index;
                } else if index != self.first_index + self.locs.len() as u64 {
                    break;
                }
                self.locs.push_back(loc);
            }
            off = end;
        }
        off as u64
    }

    /// Index of the last entry, if any.
    pub(crate) fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first_index + self.locs.len() as u64 - 1)
    }

    fn segment_of(&self, index: u64) -> Option<usize> {
        self.segments.iter().rposition(|s| s.first <= index)
    }

    /// Payload of one entry.
    pub(crate) fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(pos) = index.checked_sub(self.first_index) else {
            return Ok(None);
        };
        let Some(loc) = self.locs.get(pos as usize).copied() else {
            return Ok(None);
        };
        let seg = self
            .segment_of(index)
            .map(|i| &self.segments[i])
            .ok_or_else(|| corrupt(format!("no segment holds index {index}")))?;
        let mut buf = vec![0u8; loc.len as usize];
        seg.file
            .read_exact_at(&mut buf, loc.offset + HEADER as u64)?;
        Ok(Some(buf))
    }

    /// The first index still held (after purges).
    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        if let Some(prev) = self.segments.last() {
            prev.file.sync_data()?;
        }
        let path = self.dir.join(seg_name(first));
        let file = open_rw(&path, true)?;
        preallocate(&file)?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            first,
            path,
            file: Arc::new(file),
            len: 0,
        });
        Ok(())
    }

    /// Append `(index, payload)` records; returns the file to fdatasync for durability.
    pub(crate) fn append(&mut self, entries: &[(u64, Vec<u8>)]) -> io::Result<Option<Arc<File>>> {
        let mut buf: Vec<u8> = Vec::new();
        for (index, payload) in entries {
            let expected = self.last_index().map_or(*index, |l| l + 1);
            if *index != expected {
                return Err(corrupt(format!(
                    "append of index {index}, expected {expected}"
                )));
            }
            let need_new = match self.segments.last() {
                None => true,
                Some(s) => s.len + buf.len() as u64 >= SEGMENT_MAX,
            };
            if need_new {
                self.write_pending(&mut buf)?;
                self.new_segment(*index)?;
            }
            if self.locs.is_empty() {
                self.first_index = *index;
            }
            let len =
                u32::try_from(payload.len()).map_err(|_| corrupt("entry over 4 GiB".into()))?;
            let seg_len = self.segments.last().map_or(0, |s| s.len);
            self.locs.push_back(Loc {
                offset: seg_len + buf.len() as u64,
                len,
            });
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&index.to_le_bytes());
            hasher.update(payload);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&hasher.finalize().to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
        }
        self.write_pending(&mut buf)?;
        Ok(self.segments.last().map(|s| s.file.clone()))
    }

    fn write_pending(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let seg = self
            .segments
            .last_mut()
            .ok_or_else(|| corrupt("no segment to write".into()))?;
        seg.file.write_all_at(buf, seg.len)?;
        seg.len += buf.len() as u64;
        buf.clear();
        Ok(())
    }

    /// Remove every entry at or after `index`, durably.
    pub(crate) fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some(last) = self.last_index() else {
            return Ok(());
        };
        if index > last {
            return Ok(());
        }
        let index = index.max(self.first_index);
        let keep = (index - self.first_index) as usize;
        let cut_at = self.locs[keep].offset;
        let seg_i = self
            .segment_of(index)
            .ok_or_else(|| corrupt(format!("no segment holds index {index}")))?;
        for seg in self.segments.drain(seg_i + 1..) {
            fs::remove_file(&seg.path)?;
        }
        let seg = &mut self.segments[seg_i];
        if seg.first == index && seg_i > 0 {
            fs::remove_file(&seg.path)?;
            self.segments.pop();
        } else {
            // Zero everything past the cut (shrink, then grow back as a hole): stale records
            // there would otherwise look valid to recovery after new appends.
            seg.file.set_len(cut_at)?;
            seg.file.set_len(SEGMENT_MAX.max(cut_at))?;
            seg.file.sync_all()?;
            seg.len = cut_at;
        }
        sync_dir(&self.dir)?;
        self.locs.truncate(keep);
        Ok(())
    }

    /// Drop every entry at or before `log_id`: record the purge point first, then delete
    /// segments that hold nothing newer.
    pub(crate) fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut meta = self.meta.clone();
        meta.purged = Some(log_id);
        self.save_meta(meta)?;
        let upto = log_id.index;
        let drop_n = (upto + 1)
            .saturating_sub(self.first_index)
            .min(self.locs.len() as u64);
        self.locs.drain(..drop_n as usize);
        self.first_index = self.first_index.max(upto + 1);
        // A segment can go when the next one starts at or before the first kept index.
        let mut removed = false;
        while self.segments.len() > 1 && self.segments[1].first <= self.first_index {
            let seg = self.segments.remove(0);
            fs::remove_file(&seg.path)?;
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Replace `meta.json` atomically and durably.
    pub(crate) fn save_meta(&mut self, meta: Meta) -> io::Result<()> {
        let raw = serde_json::to_vec(&meta).map_err(|e| corrupt(e.to_string()))?;
        let tmp = self.dir.join("meta.json.tmp");
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all_at(&raw, 0)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(META))?;
        sync_dir(&self.dir)?;
        self.meta = meta;
        Ok(())
    }
}
