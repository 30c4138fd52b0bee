//! The coordinator's partitions as raft state machines on Rhea's runtime.
//!
//! Each applies its committed entries with the sans-IO partition's
//! `apply_bytes` and answers the local proposer with the encoded answer.
//! The partition stays in memory: after a restart the driver restores the
//! latest snapshot and replays the log after it, so the state is as durable
//! as the raft log.
//!
//! Snapshot image: `applied_index:u64le` followed by the partition's own
//! snapshot image (`docs/tc-state-machine.md`).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use rhea_raft::{Entry, EntryPayload, GroupId, Index};
use rhea_runtime::{ApplyContext, StateMachine, StateMachineError};

use crate::coordinator::{LockConfig, LockPartition, SessionConfig, SessionPartition};

pub(crate) fn lock_shared<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn split_image(data: &[u8]) -> Result<(Index, &[u8]), StateMachineError> {
    let (head, rest) = data
        .split_at_checked(8)
        .ok_or_else(|| StateMachineError("coordinator snapshot shorter than 8 bytes".into()))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(head);
    Ok((u64::from_le_bytes(b), rest))
}

fn image(applied: Index, body: Vec<u8>) -> Bytes {
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&applied.to_le_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// A session partition (global and branch sessions) as a state machine.
/// The partition is shared with the node's phase-two worker, which reads
/// what is due from it.
pub struct SessionMachine {
    partition: Arc<Mutex<SessionPartition>>,
    config: SessionConfig,
    applied: Index,
}

impl SessionMachine {
    pub fn new(config: SessionConfig) -> Result<SessionMachine, StateMachineError> {
        let p = SessionPartition::new(config).map_err(|e| StateMachineError(e.to_string()))?;
        Ok(SessionMachine {
            partition: Arc::new(Mutex::new(p)),
            config,
            applied: 0,
        })
    }
    pub fn shared(&self) -> Arc<Mutex<SessionPartition>> {
        self.partition.clone()
    }
}

impl StateMachine for SessionMachine {
    fn apply(
        &mut self,
        _group: GroupId,
        entries: &[Entry],
        ctx: &mut ApplyContext,
    ) -> Result<(), StateMachineError> {
        let mut p = lock_shared(&self.partition);
        for e in entries {
            if let EntryPayload::Normal(data) = &e.payload {
                let answer = p.apply_bytes(data);
                if ctx.wants_response(e.index) {
                    ctx.respond(e.index, Bytes::from(answer.encode()));
                }
            }
            self.applied = e.index;
        }
        Ok(())
    }
    fn snapshot(&self) -> Result<Bytes, StateMachineError> {
        Ok(image(self.applied, lock_shared(&self.partition).snapshot()))
    }
    fn restore(&mut self, data: Bytes) -> Result<(), StateMachineError> {
        let (applied, body) = split_image(&data)?;
        let p = SessionPartition::restore(self.config, body)
            .map_err(|e| StateMachineError(format!("session partition snapshot: {e}")))?;
        *lock_shared(&self.partition) = p;
        self.applied = applied;
        Ok(())
    }
    fn applied_index(&self) -> Index {
        self.applied
    }
}

/// A lock partition (global row locks) as a state machine.
pub struct LockMachine {
    partition: Arc<Mutex<LockPartition>>,
    config: LockConfig,
    applied: Index,
}

impl LockMachine {
    pub fn new(config: LockConfig) -> Result<LockMachine, StateMachineError> {
        let p = LockPartition::new(config).map_err(|e| StateMachineError(e.to_string()))?;
        Ok(LockMachine {
            partition: Arc::new(Mutex::new(p)),
            config,
            applied: 0,
        })
    }
    pub fn shared(&self) -> Arc<Mutex<LockPartition>> {
        self.partition.clone()
    }
}

impl StateMachine for LockMachine {
    fn apply(
        &mut self,
        _group: GroupId,
        entries: &[Entry],
        ctx: &mut ApplyContext,
    ) -> Result<(), StateMachineError> {
        let mut p = lock_shared(&self.partition);
        for e in entries {
            if let EntryPayload::Normal(data) = &e.payload {
                let answer = p.apply_bytes(data);
                if ctx.wants_response(e.index) {
                    ctx.respond(e.index, Bytes::from(answer.encode()));
                }
            }
            self.applied = e.index;
        }
        Ok(())
    }
    fn snapshot(&self) -> Result<Bytes, StateMachineError> {
        Ok(image(self.applied, lock_shared(&self.partition).snapshot()))
    }
    fn restore(&mut self, data: Bytes) -> Result<(), StateMachineError> {
        let (applied, body) = split_image(&data)?;
        let p = LockPartition::restore(self.config, body)
            .map_err(|e| StateMachineError(format!("lock partition snapshot: {e}")))?;
        *lock_shared(&self.partition) = p;
        self.applied = applied;
        Ok(())
    }
    fn applied_index(&self) -> Index {
        self.applied
    }
}
