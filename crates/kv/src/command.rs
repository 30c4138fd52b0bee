//! The commands a region's raft log carries and the answers its state
//! machine gives, with their binary encoding.
//!
//! ```text
//! command  = tag:u8 fields...
//! bytes    = len:u32le data          (keys, values, addresses)
//! list     = count:u32le item...
//! answer   = tag:u8 fields...
//! ```
//! Decoding checks every length against the input and never panics: a log
//! entry that does not decode is applied as a no-op with an error answer.

use bytes::Bytes;
use rhea_raft::NodeId;
use thiserror::Error;

/// A read, served from the state machine (locally after a read index, or in
/// the log on the fallback path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadOp {
    Get {
        key: Bytes,
    },
    MultiGet {
        keys: Vec<Bytes>,
    },
    ContainsKey {
        key: Bytes,
    },
    /// Keys in `[start, end)` (empty `end`: unbounded), at most `limit`,
    /// ascending or (`reverse`) descending.
    Scan {
        start: Bytes,
        end: Bytes,
        limit: u32,
        reverse: bool,
    },
}

/// What a region's raft log carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCommand {
    Put {
        key: Bytes,
        value: Bytes,
    },
    /// Answers the previous value (`None`: the put happened).
    PutIfAbsent {
        key: Bytes,
        value: Bytes,
    },
    /// Answers the previous value.
    GetAndPut {
        key: Bytes,
        value: Bytes,
    },
    /// Answers whether the value was `expect` (and is now `value`); an absent
    /// key never equals `expect`.
    CompareAndPut {
        key: Bytes,
        expect: Bytes,
        value: Bytes,
    },
    /// Answers whether the key existed.
    Delete {
        key: Bytes,
    },
    /// Answers how many keys were removed from `[start, end)`.
    DeleteRange {
        start: Bytes,
        end: Bytes,
    },
    BatchPut {
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Answers how many of the keys existed.
    BatchDelete {
        keys: Vec<Bytes>,
    },
    /// A read through the log: the fallback when a read index fails on a
    /// node that is still leader. Only the proposer's node evaluates it.
    Read(ReadOp),
    /// Record a node's addresses in the region's node directory (empty
    /// strings leave the stored one unchanged).
    RegisterNode {
        node: NodeId,
        raft_addr: String,
        client_addr: String,
    },
}

/// What the state machine (or a local read) answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvAnswer {
    Done,
    Bool(bool),
    Value(Option<Bytes>),
    Values(Vec<Option<Bytes>>),
    Count(u64),
    Pairs(Vec<(Bytes, Bytes)>),
    /// The command could not be applied (a key outside the region, an
    /// undecodable entry). Not retryable.
    Failed(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed command: {0}")]
pub struct DecodeError(pub &'static str);

struct W(Vec<u8>);

impl W {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    fn list<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) -> &mut Self {
        self.u32(items.len() as u32);
        for i in items {
            f(self, i);
        }
        self
    }
}

struct R<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(DecodeError("length overflow"))?;
        if end > self.buf.len() {
            return Err(DecodeError("truncated"));
        }
        let r = self.pos..end;
        self.pos = end;
        Ok(r)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let r = self.take(1)?;
        Ok(self.buf[r][0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let r = self.take(4)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.buf[r]);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let r = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buf[r]);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()? as usize;
        let r = self.take(n)?;
        Ok(self.buf.slice(r))
    }
    fn string(&mut self) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| DecodeError("address is not UTF-8"))
    }
    fn list<T>(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let n = self.u32()? as usize;
        // Every item takes at least 4 bytes: bound the allocation by the input.
        let mut v = Vec::with_capacity(n.min(self.buf.len().saturating_sub(self.pos) / 4));
        for _ in 0..n {
            v.push(f(self)?);
        }
        Ok(v)
    }
    fn finish<T>(self, v: T) -> Result<T, DecodeError> {
        if self.pos == self.buf.len() {
            Ok(v)
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

fn encode_read(w: &mut W, op: &ReadOp) {
    match op {
        ReadOp::Get { key } => w.u8(1).bytes(key),
        ReadOp::MultiGet { keys } => w.u8(2).list(keys, |w, k| {
            w.bytes(k);
        }),
        ReadOp::ContainsKey { key } => w.u8(3).bytes(key),
        ReadOp::Scan {
            start,
            end,
            limit,
            reverse,
        } => w
            .u8(4)
            .bytes(start)
            .bytes(end)
            .u32(*limit)
            .u8(u8::from(*reverse)),
    };
}

fn decode_read(r: &mut R<'_>) -> Result<ReadOp, DecodeError> {
    Ok(match r.u8()? {
        1 => ReadOp::Get { key: r.bytes()? },
        2 => ReadOp::MultiGet {
            keys: r.list(|r| r.bytes())?,
        },
        3 => ReadOp::ContainsKey { key: r.bytes()? },
        4 => ReadOp::Scan {
            start: r.bytes()?,
            end: r.bytes()?,
            limit: r.u32()?,
            reverse: r.u8()? != 0,
        },
        _ => return Err(DecodeError("unknown read op")),
    })
}

impl KvCommand {
    pub fn encode(&self) -> Bytes {
        let mut w = W(Vec::with_capacity(32));
        match self {
            KvCommand::Put { key, value } => w.u8(1).bytes(key).bytes(value),
            KvCommand::PutIfAbsent { key, value } => w.u8(2).bytes(key).bytes(value),
            KvCommand::GetAndPut { key, value } => w.u8(3).bytes(key).bytes(value),
            KvCommand::CompareAndPut { key, expect, value } => {
                w.u8(4).bytes(key).bytes(expect).bytes(value)
            }
            KvCommand::Delete { key } => w.u8(5).bytes(key),
            KvCommand::DeleteRange { start, end } => w.u8(6).bytes(start).bytes(end),
            KvCommand::BatchPut { pairs } => w.u8(7).list(pairs, |w, (k, v)| {
                w.bytes(k).bytes(v);
            }),
            KvCommand::BatchDelete { keys } => w.u8(8).list(keys, |w, k| {
                w.bytes(k);
            }),
            KvCommand::Read(op) => {
                w.u8(9);
                encode_read(&mut w, op);
                &mut w
            }
            KvCommand::RegisterNode {
                node,
                raft_addr,
                client_addr,
            } => w
                .u8(10)
                .u64(*node)
                .bytes(raft_addr.as_bytes())
                .bytes(client_addr.as_bytes()),
        };
        Bytes::from(w.0)
    }

    pub fn decode(buf: &Bytes) -> Result<KvCommand, DecodeError> {
        let mut r = R { buf, pos: 0 };
        let c = match r.u8()? {
            1 => KvCommand::Put {
                key: r.bytes()?,
                value: r.bytes()?,
            },
            2 => KvCommand::PutIfAbsent {
                key: r.bytes()?,
                value: r.bytes()?,
            },
            3 => KvCommand::GetAndPut {
                key: r.bytes()?,
                value: r.bytes()?,
            },
            4 => KvCommand::CompareAndPut {
                key: r.bytes()?,
                expect: r.bytes()?,
                value: r.bytes()?,
            },
            5 => KvCommand::Delete { key: r.bytes()? },
            6 => KvCommand::DeleteRange {
                start: r.bytes()?,
                end: r.bytes()?,
            },
            7 => KvCommand::BatchPut {
                pairs: r.list(|r| Ok((r.bytes()?, r.bytes()?)))?,
            },
            8 => KvCommand::BatchDelete {
                keys: r.list(|r| r.bytes())?,
            },
            9 => KvCommand::Read(decode_read(&mut r)?),
            10 => KvCommand::RegisterNode {
                node: r.u64()?,
                raft_addr: r.string()?,
                client_addr: r.string()?,
            },
            _ => return Err(DecodeError("unknown command")),
        };
        r.finish(c)
    }

    /// Every key the command touches (for range checks), except ranges.
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            KvCommand::Put { key, .. }
            | KvCommand::PutIfAbsent { key, .. }
            | KvCommand::GetAndPut { key, .. }
            | KvCommand::CompareAndPut { key, .. }
            | KvCommand::Delete { key } => vec![key],
            KvCommand::BatchPut { pairs } => pairs.iter().map(|(k, _)| k).collect(),
            KvCommand::BatchDelete { keys } => keys.iter().collect(),
            KvCommand::Read(op) => op.keys(),
            KvCommand::DeleteRange { .. } | KvCommand::RegisterNode { .. } => Vec::new(),
        }
    }
}

impl ReadOp {
    pub fn keys(&self) -> Vec<&Bytes> {
        match self {
            ReadOp::Get { key } | ReadOp::ContainsKey { key } => vec![key],
            ReadOp::MultiGet { keys } => keys.iter().collect(),
            ReadOp::Scan { .. } => Vec::new(),
        }
    }
}

impl KvAnswer {
    pub fn encode(&self) -> Bytes {
        let mut w = W(Vec::with_capacity(16));
        let opt = |w: &mut W, v: &Option<Bytes>| match v {
            None => {
                w.u8(0);
            }
            Some(b) => {
                w.u8(1).bytes(b);
            }
        };
        match self {
            KvAnswer::Done => {
                w.u8(1);
            }
            KvAnswer::Bool(b) => {
                w.u8(2).u8(u8::from(*b));
            }
            KvAnswer::Value(v) => {
                w.u8(3);
                opt(&mut w, v);
            }
            KvAnswer::Values(vs) => {
                w.u8(4).list(vs, |w, v| opt(w, v));
            }
            KvAnswer::Count(n) => {
                w.u8(5).u64(*n);
            }
            KvAnswer::Pairs(ps) => {
                w.u8(6).list(ps, |w, (k, v)| {
                    w.bytes(k).bytes(v);
                });
            }
            KvAnswer::Failed(m) => {
                w.u8(7).bytes(m.as_bytes());
            }
        }
        Bytes::from(w.0)
    }

    pub fn decode(buf: &Bytes) -> Result<KvAnswer, DecodeError> {
        let mut r = R { buf, pos: 0 };
        fn opt(r: &mut R<'_>) -> Result<Option<Bytes>, DecodeError> {
            Ok(match r.u8()? {
                0 => None,
                _ => Some(r.bytes()?),
            })
        }
        let a = match r.u8()? {
            1 => KvAnswer::Done,
            2 => KvAnswer::Bool(r.u8()? != 0),
            3 => KvAnswer::Value(opt(&mut r)?),
            4 => KvAnswer::Values(r.list(opt)?),
            5 => KvAnswer::Count(r.u64()?),
            6 => KvAnswer::Pairs(r.list(|r| Ok((r.bytes()?, r.bytes()?)))?),
            7 => KvAnswer::Failed(r.string()?),
            _ => return Err(DecodeError("unknown answer")),
        };
        r.finish(a)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn samples() -> Vec<KvCommand> {
        vec![
            KvCommand::Put {
                key: b("k"),
                value: b("v"),
            },
            KvCommand::PutIfAbsent {
                key: b(""),
                value: b("v"),
            },
            KvCommand::GetAndPut {
                key: b("k"),
                value: b(""),
            },
            KvCommand::CompareAndPut {
                key: b("k"),
                expect: b("a"),
                value: b("b"),
            },
            KvCommand::Delete { key: b("k") },
            KvCommand::DeleteRange {
                start: b("a"),
                end: b(""),
            },
            KvCommand::BatchPut {
                pairs: vec![(b("a"), b("1")), (b("b"), b("2"))],
            },
            KvCommand::BatchDelete {
                keys: vec![b("a"), b("b")],
            },
            KvCommand::Read(ReadOp::Get { key: b("k") }),
            KvCommand::Read(ReadOp::MultiGet { keys: vec![b("a")] }),
            KvCommand::Read(ReadOp::ContainsKey { key: b("k") }),
            KvCommand::Read(ReadOp::Scan {
                start: b("a"),
                end: b("z"),
                limit: 9,
                reverse: true,
            }),
            KvCommand::RegisterNode {
                node: 3,
                raft_addr: "127.0.0.1:1".into(),
                client_addr: String::new(),
            },
        ]
    }

    #[test]
    fn commands_round_trip_and_truncations_fail_cleanly() {
        for c in samples() {
            let e = c.encode();
            assert_eq!(KvCommand::decode(&e).unwrap(), c);
            for cut in 0..e.len() {
                assert!(
                    KvCommand::decode(&e.slice(..cut)).is_err(),
                    "{c:?} cut at {cut}"
                );
            }
            let mut long = e.to_vec();
            long.push(0);
            assert!(KvCommand::decode(&Bytes::from(long)).is_err());
        }
        // A huge declared count with no items must not allocate or panic.
        let evil = Bytes::from_static(&[8, 0xff, 0xff, 0xff, 0xff]);
        assert!(KvCommand::decode(&evil).is_err());
    }

    #[test]
    fn answers_round_trip() {
        for a in [
            KvAnswer::Done,
            KvAnswer::Bool(true),
            KvAnswer::Value(None),
            KvAnswer::Value(Some(b("x"))),
            KvAnswer::Values(vec![None, Some(b("y"))]),
            KvAnswer::Count(7),
            KvAnswer::Pairs(vec![(b("k"), b("v"))]),
            KvAnswer::Failed("no".into()),
        ] {
            assert_eq!(KvAnswer::decode(&a.encode()).unwrap(), a);
        }
    }
}
