//! The simulator's replicated state machine: a key-value register map of
//! `u64 -> u64` with client sessions so that a retried proposal applies once.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};

/// One client command, as carried in a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: u64,
        value: u64,
    },
    /// A read that goes through the log (the RheaKV fallback when ReadIndex fails).
    Get {
        key: u64,
    },
    Cas {
        key: u64,
        expected: u64,
        new: u64,
    },
}

/// What a command returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Put,
    Get(Option<u64>),
    Cas(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub client: u64,
    pub seq: u64,
    pub command: Command,
}

const REQUEST_BYTES: usize = 1 + 8 * 5;

impl Request {
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(REQUEST_BYTES);
        let (tag, key, a, c) = match self.command {
            Command::Put { key, value } => (1u8, key, value, 0),
            Command::Get { key } => (2, key, 0, 0),
            Command::Cas { key, expected, new } => (3, key, expected, new),
        };
        b.put_u8(tag);
        b.put_u64(self.client);
        b.put_u64(self.seq);
        b.put_u64(key);
        b.put_u64(a);
        b.put_u64(c);
        b.freeze()
    }

    pub fn decode(data: &[u8]) -> Option<Request> {
        if data.len() != REQUEST_BYTES {
            return None;
        }
        let word = |i: usize| -> Option<u64> {
            let s = data.get(1 + 8 * i..1 + 8 * (i + 1))?;
            Some(u64::from_be_bytes(s.try_into().ok()?))
        };
        let (client, seq, key, a, c) = (word(0)?, word(1)?, word(2)?, word(3)?, word(4)?);
        let command = match data[0] {
            1 => Command::Put { key, value: a },
            2 => Command::Get { key },
            3 => Command::Cas {
                key,
                expected: a,
                new: c,
            },
            _ => return None,
        };
        Some(Request {
            client,
            seq,
            command,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KvStateMachine {
    pub data: BTreeMap<u64, u64>,
    /// client -> (last applied seq, its outcome)
    pub sessions: BTreeMap<u64, (u64, Outcome)>,
    pub applied: u64,
}

impl KvStateMachine {
    /// Apply a request; a duplicate of the last request of its client returns
    /// the recorded outcome, an older one is ignored (`None`).
    pub fn apply(&mut self, req: &Request) -> Option<Outcome> {
        if let Some((seq, out)) = self.sessions.get(&req.client) {
            if req.seq == *seq {
                return Some(*out);
            }
            if req.seq < *seq {
                return None;
            }
        }
        let out = match req.command {
            Command::Put { key, value } => {
                self.data.insert(key, value);
                Outcome::Put
            }
            Command::Get { key } => Outcome::Get(self.data.get(&key).copied()),
            Command::Cas { key, expected, new } => {
                if self.data.get(&key) == Some(&expected) {
                    self.data.insert(key, new);
                    Outcome::Cas(true)
                } else {
                    Outcome::Cas(false)
                }
            }
        };
        self.sessions.insert(req.client, (req.seq, out));
        Some(out)
    }

    pub fn get(&self, key: u64) -> Option<u64> {
        self.data.get(&key).copied()
    }

    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::new();
        b.put_u64(self.applied);
        b.put_u64(self.data.len() as u64);
        for (k, v) in &self.data {
            b.put_u64(*k);
            b.put_u64(*v);
        }
        b.put_u64(self.sessions.len() as u64);
        for (c, (seq, out)) in &self.sessions {
            b.put_u64(*c);
            b.put_u64(*seq);
            let (tag, v) = match out {
                Outcome::Put => (0u8, 0u64),
                Outcome::Get(None) => (1, 0),
                Outcome::Get(Some(v)) => (2, *v),
                Outcome::Cas(false) => (3, 0),
                Outcome::Cas(true) => (4, 0),
            };
            b.put_u8(tag);
            b.put_u64(v);
        }
        b.freeze()
    }

    pub fn decode(mut data: &[u8]) -> Option<KvStateMachine> {
        fn u64_of(d: &mut &[u8]) -> Option<u64> {
            let (head, rest) = d.split_first_chunk::<8>()?;
            *d = rest;
            Some(u64::from_be_bytes(*head))
        }
        let mut sm = KvStateMachine {
            applied: u64_of(&mut data)?,
            ..KvStateMachine::default()
        };
        for _ in 0..u64_of(&mut data)? {
            let k = u64_of(&mut data)?;
            let v = u64_of(&mut data)?;
            sm.data.insert(k, v);
        }
        for _ in 0..u64_of(&mut data)? {
            let c = u64_of(&mut data)?;
            let seq = u64_of(&mut data)?;
            let (tag, rest) = data.split_first()?;
            data = rest;
            let v = u64_of(&mut data)?;
            let out = match tag {
                0 => Outcome::Put,
                1 => Outcome::Get(None),
                2 => Outcome::Get(Some(v)),
                3 => Outcome::Cas(false),
                4 => Outcome::Cas(true),
                _ => return None,
            };
            sm.sessions.insert(c, (seq, out));
        }
        data.is_empty().then_some(sm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_rejects_garbage() {
        let r = Request {
            client: 7,
            seq: 9,
            command: Command::Cas {
                key: 1,
                expected: 2,
                new: 3,
            },
        };
        assert_eq!(Request::decode(&r.encode()), Some(r));
        assert_eq!(Request::decode(&[1, 2, 3]), None);
        let mut bad = r.encode().to_vec();
        bad[0] = 9;
        assert_eq!(Request::decode(&bad), None);
    }

    #[test]
    fn sessions_make_retries_idempotent() {
        let mut sm = KvStateMachine::default();
        let put = Request {
            client: 1,
            seq: 1,
            command: Command::Put { key: 5, value: 10 },
        };
        assert_eq!(sm.apply(&put), Some(Outcome::Put));
        let cas = Request {
            client: 1,
            seq: 2,
            command: Command::Cas {
                key: 5,
                expected: 10,
                new: 11,
            },
        };
        assert_eq!(sm.apply(&cas), Some(Outcome::Cas(true)));
        // The retry returns the recorded outcome instead of failing the CAS.
        assert_eq!(sm.apply(&cas), Some(Outcome::Cas(true)));
        // An older request of the same client is ignored.
        assert_eq!(sm.apply(&put), None);
        assert_eq!(sm.get(5), Some(11));
        let again = KvStateMachine::decode(&sm.encode()).expect("decodes");
        assert_eq!(again, sm);
        assert!(KvStateMachine::decode(&sm.encode()[..5]).is_none());
    }
}
