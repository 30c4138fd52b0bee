//! Snapshot images as files: `snapshots/<group>/<index>.snap`, one per group
//! (older ones are removed once a newer one is durable).
//!
//! File layout (little endian): magic `"RSNP"` (u32), the snapshot metadata
//! ([`crate::codec::encode_snapshot_meta`], preceded by its length as u32),
//! the image length (u64) and bytes, then a crc32c (u32) of everything before
//! it. A file is written atomically: write `<index>.snap.tmp`, fsync, rename,
//! fsync the directory. A file that fails its checks is refused, never
//! silently skipped.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use rhea_raft::{GroupId, Index, Snapshot, SnapshotMeta};

use crate::codec::{self, Reader};
use crate::disk::Disk;

use super::DriverError;

const SNAP_MAGIC: u32 = u32::from_le_bytes(*b"RSNP");
const SNAP_SUFFIX: &str = ".snap";
const TMP_SUFFIX: &str = ".snap.tmp";

/// The snapshot directory of one driver.
pub(crate) struct SnapStore<D> {
    disk: D,
    root: PathBuf,
}

fn snap_err(path: &Path, reason: impl std::fmt::Display) -> DriverError {
    DriverError::Snapshot {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl<D: Disk> SnapStore<D> {
    pub(crate) fn new(disk: D, root: PathBuf) -> Self {
        SnapStore { disk, root }
    }

    fn group_dir(&self, group: GroupId) -> PathBuf {
        self.root.join(group.to_string())
    }

    /// Indexes of the complete snapshot files of `group`, ascending.
    fn list(&self, group: GroupId) -> Result<Vec<Index>, DriverError> {
        let dir = self.group_dir(group);
        self.disk
            .create_dir_all(&dir)
            .map_err(|e| snap_err(&dir, e))?;
        let names = self.disk.list_files(&dir).map_err(|e| snap_err(&dir, e))?;
        let mut out: Vec<Index> = names
            .iter()
            .filter(|n| !n.ends_with(TMP_SUFFIX))
            .filter_map(|n| n.strip_suffix(SNAP_SUFFIX)?.parse().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Write `meta` + `data` atomically and durably, then remove older files.
    pub(crate) fn save(
        &self,
        group: GroupId,
        meta: &SnapshotMeta,
        data: &Bytes,
    ) -> Result<(), DriverError> {
        let dir = self.group_dir(group);
        self.disk
            .create_dir_all(&dir)
            .map_err(|e| snap_err(&dir, e))?;
        let index = meta.last_index;
        let path = dir.join(format!("{index}{SNAP_SUFFIX}"));
        let tmp = dir.join(format!("{index}{TMP_SUFFIX}"));
        let mut meta_buf = Vec::new();
        codec::encode_snapshot_meta(meta, &mut meta_buf);
        let meta_len =
            u32::try_from(meta_buf.len()).map_err(|_| snap_err(&path, "meta too large"))?;
        let mut buf = Vec::with_capacity(meta_buf.len() + data.len() + 20);
        buf.extend_from_slice(&SNAP_MAGIC.to_le_bytes());
        buf.extend_from_slice(&meta_len.to_le_bytes());
        buf.extend_from_slice(&meta_buf);
        buf.extend_from_slice(&(data.len() as u64).to_le_bytes());
        buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        // `open` appends: start from an empty temp file.
        let _ = self.disk.remove(&tmp);
        let mut f = self.disk.open(&tmp).map_err(|e| snap_err(&tmp, e))?;
        f.append(&buf).map_err(|e| snap_err(&tmp, e))?;
        f.sync().map_err(|e| snap_err(&tmp, e))?;
        drop(f);
        self.disk
            .rename(&tmp, &path)
            .map_err(|e| snap_err(&path, e))?;
        self.disk.sync_dir(&dir).map_err(|e| snap_err(&dir, e))?;
        for old in self.list(group)? {
            if old < index {
                let p = dir.join(format!("{old}{SNAP_SUFFIX}"));
                self.disk.remove(&p).map_err(|e| snap_err(&p, e))?;
            }
        }
        Ok(())
    }

    /// The newest snapshot of `group`, if any.
    pub(crate) fn load_latest(&self, group: GroupId) -> Result<Option<Snapshot>, DriverError> {
        let Some(index) = self.list(group)?.last().copied() else {
            return Ok(None);
        };
        let path = self.group_dir(group).join(format!("{index}{SNAP_SUFFIX}"));
        let raw = self.disk.read_all(&path).map_err(|e| snap_err(&path, e))?;
        let snap = decode(Bytes::from(raw)).map_err(|r| snap_err(&path, r))?;
        if snap.meta.last_index != index {
            return Err(snap_err(
                &path,
                format!("holds index {}, not {index}", snap.meta.last_index),
            ));
        }
        Ok(Some(snap))
    }
}

fn decode(raw: Bytes) -> Result<Snapshot, String> {
    if raw.len() < 4 {
        return Err("shorter than its checksum".into());
    }
    let body_len = raw.len() - 4;
    let mut crc_bytes = [0u8; 4];
    crc_bytes.copy_from_slice(&raw[body_len..]);
    if crc32c::crc32c(&raw[..body_len]) != u32::from_le_bytes(crc_bytes) {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader::new(raw.slice(..body_len));
    let err = |e: crate::CodecError| e.to_string();
    if r.u32().map_err(err)? != SNAP_MAGIC {
        return Err("bad magic".into());
    }
    let meta_len = r.u32().map_err(err)? as usize;
    let meta = codec::decode_snapshot_meta(r.bytes(meta_len).map_err(err)?).map_err(err)?;
    let data_len = usize::try_from(r.u64().map_err(err)?).map_err(|e| e.to_string())?;
    let data = r.bytes(data_len).map_err(err)?;
    r.finish().map_err(err)?;
    Ok(Snapshot { meta, data })
}
