//! The session partition's snapshot image.
//!
//! ```text
//! image    = magic "RTCS" version:u8 (= 1) next_release_id:u64
//!            sessions:list<GlobalSession> releases:list<LockRelease>
//! ```
//! Sessions are written in XID order and releases in id order, so equal
//! states give equal bytes. Restoring checks what the bytes cannot
//! guarantee: unique XIDs, branch ids and release ids, release ids below
//! the next one, partitions below the configured lock partition count.

use std::collections::{BTreeMap, BTreeSet};

use super::{BranchSession, GlobalSession, Outbox, RetryState, SessionPartition};
use crate::coordinator::codec::{CodecError, Reader, Wire, Writer};
use crate::coordinator::config::SessionConfig;

const MAGIC: &[u8; 4] = b"RTCS";

/// Format version of the session partition's snapshot image.
pub const SESSION_SNAPSHOT_VERSION: u8 = 1;

impl Wire for RetryState {
    const MIN_BYTES: usize = 4 + 1 + 8;
    fn put(&self, w: &mut Writer) {
        w.u32(self.failures);
        w.put(&self.first_failure_ms);
        w.u64(self.next_attempt_ms);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(RetryState {
            failures: r.u32()?,
            first_failure_ms: r.get()?,
            next_attempt_ms: r.u64()?,
        })
    }
}

impl Wire for BranchSession {
    const MIN_BYTES: usize = 8 + 4 + 1 + 1 + 4 + 4 + 4 + 4 + 4;
    fn put(&self, w: &mut Writer) {
        w.i64(self.branch_id);
        w.str(&self.resource_id);
        w.put(&self.branch_type);
        w.put(&self.status);
        w.str(&self.client_id);
        w.str(&self.application_data);
        w.str(&self.lock_key);
        w.put(&self.lock_partitions);
        w.u32(self.phase_two_failures);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(BranchSession {
            branch_id: r.i64()?,
            resource_id: r.string()?,
            branch_type: r.get()?,
            status: r.get()?,
            client_id: r.string()?,
            application_data: r.string()?,
            lock_key: r.string()?,
            lock_partitions: r.get()?,
            phase_two_failures: r.u32()?,
        })
    }
}

impl Wire for GlobalSession {
    const MIN_BYTES: usize = 4 + 8 + 1 + 1 + 4 + 4 + 4 + 8 + 8 + 4 + 4 + RetryState::MIN_BYTES;
    fn put(&self, w: &mut Writer) {
        w.str(&self.xid);
        w.u64(self.transaction_id);
        w.put(&self.status);
        w.bool(self.active);
        w.str(&self.application_id);
        w.str(&self.transaction_service_group);
        w.str(&self.transaction_name);
        w.u64(self.timeout_ms);
        w.u64(self.begin_time_ms);
        w.str(&self.application_data);
        w.put(&self.branches);
        w.put(&self.retry);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(GlobalSession {
            xid: r.string()?,
            transaction_id: r.u64()?,
            status: r.get()?,
            active: r.bool()?,
            application_id: r.string()?,
            transaction_service_group: r.string()?,
            transaction_name: r.string()?,
            timeout_ms: r.u64()?,
            begin_time_ms: r.u64()?,
            application_data: r.string()?,
            branches: r.get()?,
            retry: r.get()?,
        })
    }
}

fn invalid(what: &'static str, detail: String) -> CodecError {
    CodecError::Invalid { what, detail }
}

fn check_partitions(parts: &[u32], limit: u32, owner: &str) -> Result<(), CodecError> {
    if let Some(p) = parts.iter().find(|&&p| p >= limit) {
        return Err(invalid(
            "session snapshot",
            format!("{owner} names lock partition {p}, but there are {limit}"),
        ));
    }
    Ok(())
}

impl SessionPartition {
    /// The snapshot image of the whole partition.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC);
        w.u8(SESSION_SNAPSHOT_VERSION);
        w.u64(self.outbox.next_release_id);
        w.len(self.sessions.len());
        for session in self.sessions.values() {
            w.put(session);
        }
        w.len(self.outbox.releases.len());
        for release in self.outbox.releases.values() {
            w.put(release);
        }
        w.into_vec()
    }

    /// Rebuilds a partition from [`snapshot`](Self::snapshot) bytes, with
    /// the configuration every replica uses. Never panics.
    pub fn restore(config: SessionConfig, image: &[u8]) -> Result<SessionPartition, CodecError> {
        config
            .validate()
            .map_err(|e| invalid("session configuration", e.to_string()))?;
        let mut r = Reader::new(image);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(CodecError::BadMagic {
                what: "session partition",
            });
        }
        let version = r.u8()?;
        if version != SESSION_SNAPSHOT_VERSION {
            return Err(CodecError::UnsupportedVersion {
                what: "session snapshot",
                found: version,
                supported: SESSION_SNAPSHOT_VERSION,
            });
        }
        let next_release_id = r.u64()?;
        let sessions: Vec<GlobalSession> = r.get()?;
        let releases: Vec<super::LockRelease> = r.get()?;
        r.finish()?;

        let mut by_xid = BTreeMap::new();
        for session in sessions {
            let mut branch_ids = BTreeSet::new();
            for branch in &session.branches {
                if !branch_ids.insert(branch.branch_id) {
                    return Err(invalid(
                        "session snapshot",
                        format!(
                            "branch {} appears twice in {}",
                            branch.branch_id, session.xid
                        ),
                    ));
                }
                check_partitions(
                    &branch.lock_partitions,
                    config.lock_partitions,
                    &session.xid,
                )?;
            }
            let xid = session.xid.clone();
            if by_xid.insert(xid.clone(), session).is_some() {
                return Err(invalid(
                    "session snapshot",
                    format!("global session {xid} appears twice"),
                ));
            }
        }
        let mut outbox = Outbox {
            next_release_id,
            releases: BTreeMap::new(),
        };
        for release in releases {
            check_partitions(&release.partitions, config.lock_partitions, &release.xid)?;
            let id = release.release_id;
            if id >= next_release_id || outbox.releases.insert(id, release).is_some() {
                return Err(invalid(
                    "session snapshot",
                    format!("lock release id {id} is repeated or not below {next_release_id}"),
                ));
            }
        }
        Ok(SessionPartition {
            config,
            sessions: by_xid,
            outbox,
        })
    }
}
