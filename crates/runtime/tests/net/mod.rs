//! Shared by the transport tests: options for fast tests, message builders,
//! polling with deadlines, and raw-socket helpers that build the handshake and
//! frames by hand from docs/transport.md (pinning the wire format).

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rhea_raft::{
    Entry, EntryPayload, Membership, Message, MessageBody, NodeId, ReadIndexFailure, SnapshotMeta,
};
use rhea_runtime::{Transport, TransportOptions, encode_message};
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

pub const CLUSTER: u64 = 0xC1_u64;
/// Upper bound on any wait; tests normally finish far sooner.
pub const DEADLINE: Duration = Duration::from_secs(5);

pub fn opts() -> TransportOptions {
    TransportOptions {
        cluster_id: CLUSTER,
        reconnect_backoff_ms_min: 5,
        reconnect_backoff_ms_max: 40,
        ..TransportOptions::default()
    }
}

pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub async fn node(id: NodeId, opts: TransportOptions) -> (Transport, Receiver<Message>) {
    Transport::bind(id, any_port(), opts).await.expect("bind")
}

/// Connect every pair of `nodes` both ways.
pub fn mesh(nodes: &[&Transport]) {
    for a in nodes {
        for b in nodes {
            if a.node_id() != b.node_id() {
                a.set_peer(b.node_id(), b.local_addr()).expect("set_peer");
            }
        }
    }
}

pub fn heartbeat(group: u64, from: NodeId, to: NodeId, seq: u64) -> Message {
    Message {
        group,
        from,
        to,
        term: 7,
        body: MessageBody::Heartbeat {
            leader_commit: seq,
            read_seq: seq,
            send_tick: seq,
        },
    }
}

pub fn append(group: u64, from: NodeId, to: NodeId, index: u64, data_bytes: usize) -> Message {
    Message {
        group,
        from,
        to,
        term: 3,
        body: MessageBody::AppendEntries {
            prev_log_index: index - 1,
            prev_log_term: 3,
            entries: vec![
                Entry {
                    term: 3,
                    index,
                    payload: EntryPayload::Normal(Bytes::from(vec![index as u8; data_bytes])),
                },
                Entry {
                    term: 3,
                    index: index + 1,
                    payload: EntryPayload::Membership(Membership::new([1, 2, 3])),
                },
            ],
            leader_commit: index - 1,
            send_tick: index,
        },
    }
}

/// One message of every body kind from `from` to `to` in `group`.
pub fn every_kind(group: u64, from: NodeId, to: NodeId) -> Vec<Message> {
    let m = |body| Message {
        group,
        from,
        to,
        term: 9,
        body,
    };
    let joint = Membership {
        voters: [1, 2, 3].into(),
        old_voters: Some([1, 2, 4].into()),
        learners: [5].into(),
        priorities: [(1, 5), (2, -1)].into(),
    };
    vec![
        m(MessageBody::PreVote {
            last_log_index: 4,
            last_log_term: 2,
        }),
        m(MessageBody::PreVoteResponse { granted: true }),
        m(MessageBody::RequestVote {
            last_log_index: 4,
            last_log_term: 2,
            leader_transfer: true,
        }),
        m(MessageBody::RequestVoteResponse { granted: false }),
        m(MessageBody::AppendEntries {
            prev_log_index: 3,
            prev_log_term: 2,
            entries: vec![
                Entry {
                    term: 9,
                    index: 4,
                    payload: EntryPayload::Blank,
                },
                Entry {
                    term: 9,
                    index: 5,
                    payload: EntryPayload::Normal(Bytes::from_static(b"set x 1")),
                },
                Entry {
                    term: 9,
                    index: 6,
                    payload: EntryPayload::Membership(joint.clone()),
                },
            ],
            leader_commit: 3,
            send_tick: 11,
        }),
        m(MessageBody::AppendEntriesResponse {
            success: false,
            index: 3,
            reject_hint: Some((2, 1)),
            send_tick: 11,
        }),
        m(MessageBody::Heartbeat {
            leader_commit: 3,
            read_seq: 1,
            send_tick: 12,
        }),
        m(MessageBody::HeartbeatResponse {
            read_seq: 1,
            send_tick: 12,
            last_index: 6,
        }),
        m(MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                last_index: 100,
                last_term: 8,
                membership: joint,
            },
            offset: 0,
            total_bytes: 3000,
            data: Bytes::from(vec![0x5A; 3000]),
            send_tick: 13,
        }),
        m(MessageBody::InstallSnapshotResponse {
            last_index: 100,
            last_term: 8,
            next_offset: 3000,
            rejected: false,
            send_tick: 13,
        }),
        m(MessageBody::TimeoutNow),
        m(MessageBody::ReadIndexRequest { batch_id: 77 }),
        m(MessageBody::ReadIndexResponse {
            batch_id: 77,
            result: Ok(6),
        }),
        m(MessageBody::ReadIndexResponse {
            batch_id: 78,
            result: Err(ReadIndexFailure::RetryLater),
        }),
    ]
}

pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Poll `cond` every 2 ms until it holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

pub async fn recv_n(rx: &mut Receiver<Message>, n: usize) -> Vec<Message> {
    within(&format!("{n} messages"), async {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(rx.recv().await.expect("transport alive"));
        }
        out
    })
    .await
}

pub fn send_all(t: &Transport, msgs: &[Message]) {
    for m in msgs {
        t.send(m.clone()).expect("queued");
    }
}

// ---------------------------------------------------------------------------
// Raw sockets, built by hand from docs/transport.md
// ---------------------------------------------------------------------------

pub fn hello(magic: &[u8; 4], cluster: u64, from: NodeId, to: NodeId) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(magic);
    b.extend_from_slice(&1u16.to_le_bytes()); // version
    b.extend_from_slice(&0u16.to_le_bytes()); // reserved
    b.extend_from_slice(&cluster.to_le_bytes());
    b.extend_from_slice(&from.to_le_bytes());
    b.extend_from_slice(&to.to_le_bytes());
    assert_eq!(b.len(), 32);
    b
}

/// The 24-byte reply: (status, cluster id, node id).
pub async fn read_reply(s: &mut TcpStream) -> (u8, u64, u64) {
    let mut r = [0u8; 24];
    within("handshake reply", s.read_exact(&mut r))
        .await
        .expect("reply");
    assert_eq!(&r[0..4], b"RhTp");
    assert_eq!(u16::from_le_bytes([r[4], r[5]]), 1);
    let u64_at = |at: usize| u64::from_le_bytes(r[at..at + 8].try_into().expect("8 bytes"));
    (r[6], u64_at(8), u64_at(16))
}

/// A raw connection that completed the handshake as node `from`.
pub async fn handshaken(addr: SocketAddr, from: NodeId, to: NodeId) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&hello(b"RhTp", CLUSTER, from, to))
        .await
        .expect("hello");
    assert_eq!(read_reply(&mut s).await, (0, CLUSTER, to));
    s
}

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    f.extend_from_slice(payload);
    f
}

pub fn payload(msgs: &[Message]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(msgs.len() as u32).to_le_bytes());
    for m in msgs {
        let mut enc = Vec::new();
        encode_message(m, &mut enc);
        p.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        p.extend_from_slice(&enc);
    }
    p
}

/// The peer closes: reads reach end of stream (or a reset) before the deadline.
pub async fn assert_closed(s: &mut TcpStream) {
    within("the connection to close", async {
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}
