//! The handshake: the first bytes each way on a new connection.
//!
//! ```text
//! Hello (connecting node -> listening node), 32 bytes:
//!   magic u32 "RhTp", version u16, reserved u16 (0), cluster_id u64,
//!   from u64 (the connecting node), to u64 (the node it means to reach)
//! Reply (listening node -> connecting node), 24 bytes:
//!   magic u32 "RhTp", version u16, status u8, reserved u8 (0),
//!   cluster_id u64, node_id u64 (the listening node)
//! ```
//!
//! The listener checks magic (a wrong one is closed without a reply: it is
//! not a Rhea peer), version, cluster id and the addressed node, replies with
//! a status, and closes unless the status is `Accepted`. The connecting node
//! checks the reply the same way and sends frames only after an accepted one.

/// First four bytes of a hello and a reply (`"RhTp"` on the wire).
pub const TRANSPORT_MAGIC: u32 = u32::from_le_bytes(*b"RhTp");
/// The protocol version this build speaks (only exact matches connect).
pub const PROTOCOL_VERSION: u16 = 1;
/// Size of a hello.
pub const HELLO_BYTES: usize = 32;
/// Size of a hello reply.
pub const HELLO_REPLY_BYTES: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub cluster_id: u64,
    pub from: u64,
    pub to: u64,
}

/// The listener's verdict, byte 6 of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeStatus {
    Accepted = 0,
    UnsupportedVersion = 1,
    WrongCluster = 2,
    /// The hello's `to` is not the listening node (stale address book).
    WrongNode = 3,
    /// The hello's `from` is 0 or the listening node itself.
    BadSender = 4,
}

impl HandshakeStatus {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => HandshakeStatus::Accepted,
            1 => HandshakeStatus::UnsupportedVersion,
            2 => HandshakeStatus::WrongCluster,
            3 => HandshakeStatus::WrongNode,
            4 => HandshakeStatus::BadSender,
            _ => return None,
        })
    }

    pub fn describe(self) -> &'static str {
        match self {
            HandshakeStatus::Accepted => "accepted",
            HandshakeStatus::UnsupportedVersion => "unsupported protocol version",
            HandshakeStatus::WrongCluster => "wrong cluster id",
            HandshakeStatus::WrongNode => "addressed to another node id",
            HandshakeStatus::BadSender => "invalid sender node id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub version: u16,
    pub status: u8,
    pub cluster_id: u64,
    pub node_id: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub fn encode_hello(h: &Hello) -> [u8; HELLO_BYTES] {
    let mut b = [0u8; HELLO_BYTES];
    b[0..4].copy_from_slice(&TRANSPORT_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&h.version.to_le_bytes());
    b[8..16].copy_from_slice(&h.cluster_id.to_le_bytes());
    b[16..24].copy_from_slice(&h.from.to_le_bytes());
    b[24..32].copy_from_slice(&h.to.to_le_bytes());
    b
}

/// `Err(found magic)` when the magic is wrong; the reserved bytes are ignored.
pub fn decode_hello(b: &[u8; HELLO_BYTES]) -> Result<Hello, u32> {
    let magic = u32_at(b, 0);
    if magic != TRANSPORT_MAGIC {
        return Err(magic);
    }
    Ok(Hello {
        version: u16_at(b, 4),
        cluster_id: u64_at(b, 8),
        from: u64_at(b, 16),
        to: u64_at(b, 24),
    })
}

pub fn encode_reply(r: &Reply) -> [u8; HELLO_REPLY_BYTES] {
    let mut b = [0u8; HELLO_REPLY_BYTES];
    b[0..4].copy_from_slice(&TRANSPORT_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&r.version.to_le_bytes());
    b[6] = r.status;
    b[8..16].copy_from_slice(&r.cluster_id.to_le_bytes());
    b[16..24].copy_from_slice(&r.node_id.to_le_bytes());
    b
}

/// `Err(found magic)` when the magic is wrong.
pub fn decode_reply(b: &[u8; HELLO_REPLY_BYTES]) -> Result<Reply, u32> {
    let magic = u32_at(b, 0);
    if magic != TRANSPORT_MAGIC {
        return Err(magic);
    }
    Ok(Reply {
        version: u16_at(b, 4),
        status: b[6],
        cluster_id: u64_at(b, 8),
        node_id: u64_at(b, 16),
    })
}

/// The listener's check of a hello (magic already checked).
pub fn judge_hello(h: &Hello, cluster_id: u64, node_id: u64) -> HandshakeStatus {
    if h.version != PROTOCOL_VERSION {
        HandshakeStatus::UnsupportedVersion
    } else if h.cluster_id != cluster_id {
        HandshakeStatus::WrongCluster
    } else if h.to != node_id {
        HandshakeStatus::WrongNode
    } else if h.from == rhea_raft::NO_NODE || h.from == node_id {
        HandshakeStatus::BadSender
    } else {
        HandshakeStatus::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_reply_round_trip() {
        let h = Hello {
            version: PROTOCOL_VERSION,
            cluster_id: 0xC0FFEE,
            from: 1,
            to: 2,
        };
        let b = encode_hello(&h);
        assert_eq!(&b[0..4], b"RhTp");
        assert_eq!(decode_hello(&b), Ok(h));
        let r = Reply {
            version: PROTOCOL_VERSION,
            status: HandshakeStatus::WrongCluster as u8,
            cluster_id: 7,
            node_id: 2,
        };
        assert_eq!(decode_reply(&encode_reply(&r)), Ok(r));
        let mut bad = b;
        bad[0] = b'X';
        assert!(decode_hello(&bad).is_err());
    }

    #[test]
    fn judge_checks_version_cluster_and_nodes() {
        let ok = Hello {
            version: PROTOCOL_VERSION,
            cluster_id: 9,
            from: 1,
            to: 2,
        };
        assert_eq!(judge_hello(&ok, 9, 2), HandshakeStatus::Accepted);
        assert_eq!(
            judge_hello(&Hello { version: 2, ..ok }, 9, 2),
            HandshakeStatus::UnsupportedVersion
        );
        assert_eq!(judge_hello(&ok, 8, 2), HandshakeStatus::WrongCluster);
        assert_eq!(judge_hello(&ok, 9, 3), HandshakeStatus::WrongNode);
        assert_eq!(
            judge_hello(&Hello { from: 2, ..ok }, 9, 2),
            HandshakeStatus::BadSender
        );
        assert_eq!(
            judge_hello(&Hello { from: 0, ..ok }, 9, 2),
            HandshakeStatus::BadSender
        );
        for s in 0..=4 {
            assert_eq!(HandshakeStatus::from_u8(s).map(|s| s as u8), Some(s));
        }
        assert_eq!(HandshakeStatus::from_u8(5), None);
    }
}
