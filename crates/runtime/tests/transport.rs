//! The peer transport over loopback TCP: exchange between two and three nodes
//! for many groups, batching, reconnection, limits, and hostile input from raw
//! sockets. Every test binds 127.0.0.1 port 0 and waits by polling with a
//! deadline, never by fixed sleeps.

mod net;

use std::net::SocketAddr;
use std::time::Duration;

use net::*;
use rhea_raft::Message;
use rhea_runtime::{SendError, Transport, TransportError, TransportOptions, message_encoded_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;

// ---------------------------------------------------------------------------
// Exchange
// ---------------------------------------------------------------------------

#[tokio::test]
async fn two_nodes_exchange_messages_of_many_groups() {
    let (a, mut a_rx) = node(1, opts()).await;
    let (b, mut b_rx) = node(2, opts()).await;
    mesh(&[&a, &b]);

    let groups = 1..=20u64;
    let to_b: Vec<Message> = groups
        .clone()
        .flat_map(|g| (1..=5).map(move |i| append(g, 1, 2, i * 10, 64)))
        .collect();
    let to_a: Vec<Message> = groups
        .flat_map(|g| (1..=5).map(move |i| heartbeat(g, 2, 1, i)))
        .collect();
    send_all(&a, &to_b);
    send_all(&b, &to_a);

    // One connection each way: arrival order is send order, across groups.
    assert_eq!(recv_n(&mut b_rx, to_b.len()).await, to_b);
    assert_eq!(recv_n(&mut a_rx, to_a.len()).await, to_a);

    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!(sa.messages_sent, to_b.len() as u64);
    assert_eq!(sb.messages_received, to_b.len() as u64);
    assert_eq!(sa.connects, 1);
    assert_eq!(sb.inbound_accepted, 1);
    assert_eq!(sa.frames_sent, sb.frames_received);
    assert_eq!(sa.bytes_sent, sb.bytes_received);
    let pa = a.peer_stats(2).expect("peer");
    assert!(pa.connected);
    assert_eq!(pa.queued_messages, 0);
    assert_eq!(pa.queued_bytes, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_exchange_every_message_kind() {
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(node(id, opts()).await);
    }
    let refs: Vec<&Transport> = nodes.iter().map(|(t, _)| t).collect();
    mesh(&refs);

    // Each node sends every kind, for three groups, to both others.
    let mut expected: Vec<Vec<Message>> = vec![Vec::new(); 4];
    for from in 1..=3u64 {
        for g in [10, 20, 30] {
            for to in (1..=3u64).filter(|t| *t != from) {
                let msgs = every_kind(g, from, to);
                send_all(refs[from as usize - 1], &msgs);
                expected[to as usize].extend(msgs);
            }
        }
    }
    for (i, (_, rx)) in nodes.iter_mut().enumerate() {
        let to = i + 1;
        let got = recv_n(rx, expected[to].len()).await;
        // Per sender, order is preserved; senders interleave arbitrarily.
        for from in 1..=3u64 {
            let sent: Vec<&Message> = expected[to].iter().filter(|m| m.from == from).collect();
            let recv: Vec<&Message> = got.iter().filter(|m| m.from == from).collect();
            assert_eq!(recv, sent, "node {to} from {from}");
        }
    }
    for (t, _) in &nodes {
        t.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// Batching, reconnection, peer changes
// ---------------------------------------------------------------------------

/// A free loopback address: bind a transport there, then shut it down.
async fn dead_addr() -> SocketAddr {
    let (t, _rx) = node(99, opts()).await;
    let addr = t.local_addr();
    t.shutdown().await;
    addr
}

#[tokio::test]
async fn messages_queued_while_the_peer_is_down_go_out_in_few_frames() {
    let addr = dead_addr().await;
    let (a, _a_rx) = node(
        1,
        TransportOptions {
            max_batch_messages: 100,
            ..opts()
        },
    )
    .await;
    a.set_peer(2, addr).expect("set_peer");
    let msgs: Vec<Message> = (0..450u64).map(|i| heartbeat(i % 7, 1, 2, i)).collect();
    send_all(&a, &msgs);
    let queued = a.peer_stats(2).expect("peer");
    assert_eq!(queued.queued_messages, 450);
    assert!(!queued.connected);
    assert_eq!(a.stats().frames_sent, 0);

    // The peer comes up at the address: the backlog leaves in full batches.
    let (b, mut b_rx) = Transport::bind(2, addr, opts()).await.expect("rebind");
    assert_eq!(recv_n(&mut b_rx, 450).await, msgs);
    let sa = a.stats();
    assert_eq!(sa.messages_sent, 450);
    assert_eq!(sa.frames_sent, 5, "450 messages in batches of 100: {sa:?}");
    assert_eq!(b.stats().frames_received, 5);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn frames_stay_within_max_frame_bytes() {
    let addr = dead_addr().await;
    let small = TransportOptions {
        max_message_bytes: 4096,
        max_frame_bytes: 8192,
        ..opts()
    };
    let (a, _a_rx) = node(1, small.clone()).await;
    a.set_peer(2, addr).expect("set_peer");
    let msgs: Vec<Message> = (1..=40u64).map(|i| append(1, 1, 2, i, 1000)).collect();
    let one = message_encoded_len(&msgs[0]);
    assert!(one > 1000 && one < 4096);
    send_all(&a, &msgs);
    let (b, mut b_rx) = Transport::bind(2, addr, small).await.expect("rebind");
    assert_eq!(recv_n(&mut b_rx, 40).await, msgs);
    let s = a.stats();
    // Each frame holds as many whole messages as fit in 8192 payload bytes.
    let per_frame = (8192 - 4) / (4 + one);
    let frames = 40u64.div_ceil(per_frame as u64);
    assert_eq!(s.frames_sent, frames, "{s:?}");
    assert!(s.bytes_sent <= frames * (8 + 8192));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn reconnects_after_the_peer_listener_restarts() {
    let (a, _a_rx) = node(1, opts()).await;
    let (b, mut b_rx) = node(2, opts()).await;
    let addr = b.local_addr();
    a.set_peer(2, addr).expect("set_peer");
    a.send(heartbeat(1, 1, 2, 1)).expect("queued");
    assert_eq!(recv_n(&mut b_rx, 1).await[0], heartbeat(1, 1, 2, 1));

    // The peer's process goes away and comes back on the same address.
    b.shutdown().await;
    drop(b);
    wait_until("a to notice the lost connection", || {
        a.peer_stats(2).is_some_and(|p| !p.connected)
    })
    .await;
    let (b2, mut b2_rx) = Transport::bind(2, addr, opts()).await.expect("rebind");

    // Keep sending (as raft would) until one arrives; earlier ones may be lost.
    let got = within("delivery after restart", async {
        let mut seq = 100;
        loop {
            let _ = a.send(heartbeat(1, 1, 2, seq));
            seq += 1;
            tokio::select! {
                m = b2_rx.recv() => break m.expect("alive"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    })
    .await;
    assert_eq!(got.from, 1);
    assert!(a.stats().connects >= 2);
    assert!(a.peer_stats(2).expect("peer").connected);
    a.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test]
async fn changing_a_peer_address_moves_its_connection() {
    let (a, _a_rx) = node(1, opts()).await;
    let (b, mut b_rx) = node(2, opts()).await;
    a.set_peer(2, b.local_addr()).expect("set_peer");
    a.send(heartbeat(1, 1, 2, 1)).expect("queued");
    recv_n(&mut b_rx, 1).await;

    // Node 2 moves to another address (another incarnation, new port).
    let (b_new, mut b_new_rx) = node(2, opts()).await;
    a.set_peer(2, b_new.local_addr()).expect("set_peer");
    assert_eq!(a.peers(), vec![(2, b_new.local_addr())]);
    let got = within("delivery at the new address", async {
        let mut seq = 2;
        loop {
            let _ = a.send(heartbeat(1, 1, 2, seq));
            seq += 1;
            tokio::select! {
                m = b_new_rx.recv() => break m.expect("alive"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    })
    .await;
    assert_eq!(got.to, 2);
    assert!(a.remove_peer(2));
    assert_eq!(
        a.send(heartbeat(1, 1, 2, 0)),
        Err(SendError::UnknownPeer(2))
    );
    for t in [&a, &b, &b_new] {
        t.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// Limits and errors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn binding_a_port_in_use_names_the_address() {
    let (a, _rx) = node(1, opts()).await;
    let addr = a.local_addr();
    let err = Transport::bind(2, addr, opts())
        .await
        .expect_err("port in use");
    assert!(matches!(err, TransportError::Bind { addr: a2, .. } if a2 == addr));
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    a.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    let addr = dead_addr().await;
    let (a, _rx) = node(
        1,
        TransportOptions {
            max_queue_messages: 10,
            ..opts()
        },
    )
    .await;
    a.set_peer(2, addr).expect("set_peer");
    let mut dropped = 0;
    for i in 0..25 {
        match a.send(heartbeat(1, 1, 2, i)) {
            Ok(()) => {}
            Err(SendError::QueueFull { to: 2 }) => dropped += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(dropped, 15);
    assert_eq!(a.stats().dropped_queue_full, 15);
    let p = a.peer_stats(2).expect("peer");
    assert_eq!((p.queued_messages, p.dropped_queue_full), (10, 15));
    // The peer stays unreachable; the writer keeps retrying with backoff.
    wait_until("a few connection attempts", || {
        a.stats().connect_failures >= 2
    })
    .await;
    a.shutdown().await;

    // The byte bound: three 300-byte messages fit in 1024 bytes, a fourth does not.
    let (b, _rx) = node(
        1,
        TransportOptions {
            max_message_bytes: 1024,
            max_frame_bytes: 2048,
            max_queue_bytes: 1024,
            ..opts()
        },
    )
    .await;
    b.set_peer(2, addr).expect("set_peer");
    let big = append(
        1,
        1,
        2,
        5,
        300 - message_encoded_len(&append(1, 1, 2, 5, 0)),
    );
    assert_eq!(message_encoded_len(&big), 300);
    let results: Vec<bool> = (0..4).map(|_| b.send(big.clone()).is_ok()).collect();
    assert_eq!(results, [true, true, true, false]);
    assert_eq!(b.peer_stats(2).expect("peer").queued_bytes, 900);
    b.shutdown().await;
}

#[tokio::test]
async fn send_refuses_what_cannot_be_delivered() {
    let (a, _rx) = node(
        1,
        TransportOptions {
            max_message_bytes: 1024,
            max_frame_bytes: 2048,
            max_queue_bytes: 4096,
            ..opts()
        },
    )
    .await;
    assert_eq!(
        a.send(heartbeat(1, 1, 5, 0)),
        Err(SendError::UnknownPeer(5))
    );
    assert!(matches!(
        a.send(heartbeat(1, 3, 5, 0)),
        Err(SendError::WrongSender { from: 3, node: 1 })
    ));
    a.set_peer(2, any_port()).expect("set_peer");
    let huge = append(1, 1, 2, 5, 2000);
    assert!(matches!(
        a.send(huge),
        Err(SendError::TooLarge { limit: 1024, .. })
    ));
    assert!(a.set_peer(1, any_port()).is_err(), "self is not a peer");
    assert!(a.set_peer(0, any_port()).is_err(), "0 is no node");
    let s = a.stats();
    assert_eq!((s.dropped_unknown_peer, s.dropped_too_large), (1, 1));
    a.shutdown().await;
    assert_eq!(a.send(heartbeat(1, 1, 2, 0)), Err(SendError::Shutdown));
    assert!(matches!(
        a.set_peer(3, any_port()),
        Err(TransportError::Shutdown)
    ));
    assert!(
        Transport::bind(0, any_port(), opts()).await.is_err(),
        "node id 0 is reserved"
    );
}

#[tokio::test]
async fn a_slow_driver_pushes_back_instead_of_losing_messages() {
    let (a, _a_rx) = node(1, opts()).await;
    let (b, mut b_rx) = node(
        2,
        TransportOptions {
            max_inbound_messages: 4,
            ..opts()
        },
    )
    .await;
    a.set_peer(2, b.local_addr()).expect("set_peer");
    let msgs: Vec<Message> = (0..200u64).map(|i| heartbeat(i % 3, 1, 2, i)).collect();
    send_all(&a, &msgs);
    // Nobody reads yet: the inbound channel fills, the connection stops reading.
    wait_until("the inbound channel to fill", || b_rx.len() == 4).await;
    assert_eq!(recv_n(&mut b_rx, 200).await, msgs);
    assert_eq!(a.stats().dropped_queue_full, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_connections() {
    let (a, _a_rx) = node(1, opts()).await;
    let (b, mut b_rx) = node(2, opts()).await;
    a.set_peer(2, b.local_addr()).expect("set_peer");
    a.send(heartbeat(1, 1, 2, 1)).expect("queued");
    recv_n(&mut b_rx, 1).await;
    let addr = b.local_addr();
    let mut raw = handshaken(addr, 7, 2).await;

    b.shutdown().await;
    b.shutdown().await; // idempotent
    assert_closed(&mut raw).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    wait_until("a to see the connection closed", || {
        a.peer_stats(2).is_some_and(|p| !p.connected)
    })
    .await;
    // The receiver ends once the transport is gone.
    drop(b);
    within("receiver end", async {
        while b_rx.recv().await.is_some() {}
    })
    .await;
    // The port is free again.
    let (b2, _rx) = Transport::bind(2, addr, opts()).await.expect("rebind");
    b2.shutdown().await;
    a.shutdown().await;
}

// ---------------------------------------------------------------------------
// Hostile input from raw sockets, built by hand from docs/transport.md
// ---------------------------------------------------------------------------

/// Node 2 listening, node 3 connected to it as a well-behaved peer.
struct Victim {
    b: Transport,
    b_rx: Receiver<Message>,
    c: Transport,
    seq: u64,
}

impl Victim {
    async fn new(b_opts: TransportOptions) -> Victim {
        let (b, b_rx) = node(2, b_opts).await;
        let (c, _c_rx) = node(3, opts()).await;
        c.set_peer(2, b.local_addr()).expect("set_peer");
        let mut v = Victim { b, b_rx, c, seq: 0 };
        v.still_serving().await;
        v
    }

    fn addr(&self) -> SocketAddr {
        self.b.local_addr()
    }

    /// The well-behaved peer still gets through, on its original connection.
    async fn still_serving(&mut self) {
        self.seq += 1;
        let m = heartbeat(4, 3, 2, self.seq);
        self.c.send(m.clone()).expect("queued");
        assert_eq!(recv_n(&mut self.b_rx, 1).await, vec![m]);
        assert_eq!(self.c.stats().connects, 1);
    }

    async fn shutdown(self) {
        self.b.shutdown().await;
        self.c.shutdown().await;
    }
}

#[tokio::test]
async fn refused_handshakes_close_the_connection() {
    let mut v = Victim::new(TransportOptions {
        handshake_timeout_ms: 300,
        ..opts()
    })
    .await;

    // Garbage instead of a hello: closed without a reply.
    let mut s = TcpStream::connect(v.addr()).await.expect("connect");
    s.write_all(&[0xA5; 64]).await.expect("write");
    assert_closed(&mut s).await;
    v.still_serving().await;

    // Wrong magic in an otherwise valid hello: closed without a reply.
    let mut s = TcpStream::connect(v.addr()).await.expect("connect");
    s.write_all(&hello(b"XhTp", CLUSTER, 5, 2))
        .await
        .expect("write");
    let mut rest = Vec::new();
    let _ = within("close", s.read_to_end(&mut rest)).await;
    assert!(rest.is_empty(), "no reply to a stranger");
    v.still_serving().await;

    // Another cluster: refused with status 2 naming our cluster, then closed.
    let mut s = TcpStream::connect(v.addr()).await.expect("connect");
    s.write_all(&hello(b"RhTp", CLUSTER + 1, 5, 2))
        .await
        .expect("write");
    assert_eq!(read_reply(&mut s).await, (2, CLUSTER, 2));
    assert_closed(&mut s).await;
    v.still_serving().await;

    // Addressed to another node id: status 3.
    let mut s = TcpStream::connect(v.addr()).await.expect("connect");
    s.write_all(&hello(b"RhTp", CLUSTER, 5, 9))
        .await
        .expect("write");
    assert_eq!(read_reply(&mut s).await.0, 3);
    assert_closed(&mut s).await;

    // Silent: closed after handshake_timeout_ms.
    let mut s = TcpStream::connect(v.addr()).await.expect("connect");
    assert_closed(&mut s).await;
    v.still_serving().await;

    assert_eq!(v.b.stats().inbound_refused, 5);
    v.shutdown().await;
}

#[tokio::test]
async fn another_cluster_is_refused_on_the_connecting_side_too() {
    let (a, _a_rx) = node(
        1,
        TransportOptions {
            cluster_id: CLUSTER + 1,
            ..opts()
        },
    )
    .await;
    let (b, mut b_rx) = node(2, opts()).await;
    a.set_peer(2, b.local_addr()).expect("set_peer");
    a.send(heartbeat(1, 1, 2, 1)).expect("queued");
    wait_until("refusals on both sides", || {
        a.stats().handshakes_refused >= 2 && b.stats().inbound_refused >= 2
    })
    .await;
    assert!(b_rx.try_recv().is_err(), "nothing delivered");
    assert_eq!(a.stats().connects, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn bad_frames_close_the_connection_and_deliver_nothing() {
    let mut v = Victim::new(opts()).await;
    let max_frame = opts().max_frame_bytes as u32;
    let good = payload(&[heartbeat(1, 5, 2, 1), heartbeat(2, 5, 2, 2)]);

    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // A length over max_frame_bytes: refused from the header alone.
    let mut oversize = Vec::new();
    oversize.extend_from_slice(&(max_frame + 1).to_le_bytes());
    oversize.extend_from_slice(&0u32.to_le_bytes());
    cases.push(("oversize length", oversize));
    let mut max = Vec::new();
    max.extend_from_slice(&u32::MAX.to_le_bytes());
    max.extend_from_slice(&0u32.to_le_bytes());
    cases.push(("u32::MAX length", max));
    // A flipped checksum bit.
    let mut bad_crc = frame(&good);
    bad_crc[4] ^= 1;
    cases.push(("bad crc", bad_crc));
    // A flipped payload bit.
    let mut flipped = frame(&good);
    flipped[30] ^= 0x40;
    cases.push(("flipped payload", flipped));
    // Garbage with a valid checksum.
    cases.push(("garbage payload", frame(&[7u8; 100])));
    // A message claiming more bytes than max_message_bytes.
    let mut claim = Vec::new();
    claim.extend_from_slice(&1u32.to_le_bytes());
    claim.extend_from_slice(&(opts().max_message_bytes as u32 + 1).to_le_bytes());
    cases.push(("oversize message", frame(&claim)));
    // A frame with no message.
    cases.push(("empty frame", frame(&0u32.to_le_bytes())));
    // A valid frame whose second message claims another sender.
    cases.push((
        "misaddressed message",
        frame(&payload(&[heartbeat(1, 5, 2, 1), heartbeat(1, 6, 2, 2)])),
    ));
    // A frame cut short by the end of the stream.
    let mut cut = frame(&good);
    cut.truncate(cut.len() - 3);
    cases.push(("truncated frame", cut));

    for (i, (what, bytes)) in cases.iter().enumerate() {
        let mut s = handshaken(v.addr(), 5, 2).await;
        s.write_all(bytes).await.expect("write");
        if *what == "truncated frame" {
            s.shutdown().await.expect("half close");
        }
        assert_closed(&mut s).await;
        let errors = i as u64 + 1;
        wait_until(what, || v.b.stats().inbound_protocol_errors == errors).await;
        v.still_serving().await;
    }
    // None of those frames delivered anything.
    assert!(v.b_rx.try_recv().is_err());

    // A well-formed frame from a raw peer is delivered.
    let mut s = handshaken(v.addr(), 5, 2).await;
    s.write_all(&frame(&good)).await.expect("write");
    let got = recv_n(&mut v.b_rx, 2).await;
    assert_eq!(got, vec![heartbeat(1, 5, 2, 1), heartbeat(2, 5, 2, 2)]);
    v.shutdown().await;
}

#[tokio::test]
async fn a_newer_connection_from_the_same_node_replaces_the_older() {
    let (b, mut b_rx) = node(2, opts()).await;
    let mut first = handshaken(b.local_addr(), 5, 2).await;
    let mut second = handshaken(b.local_addr(), 5, 2).await;
    assert_closed(&mut first).await;
    second
        .write_all(&frame(&payload(&[heartbeat(1, 5, 2, 1)])))
        .await
        .expect("write");
    assert_eq!(recv_n(&mut b_rx, 1).await, vec![heartbeat(1, 5, 2, 1)]);
    assert_eq!(b.stats().inbound_protocol_errors, 0);
    b.shutdown().await;
}
