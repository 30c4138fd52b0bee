//! Throughput of the consensus core alone: three nodes in one process, in-memory
//! log, messages handed directly from one node's `Ready` to the others' `step`.
//! Each of C proposers keeps exactly one proposal outstanding: it proposes again
//! as soon as its previous entry is committed and applied on the leader. All
//! proposals made between two `ready()` calls travel in one AppendEntries
//! (batching comes from the Ready protocol, not from the benchmark).
//!
//! ```text
//! cargo bench -p rhea-raft --bench propose [-- --secs 5 --clients 1,64,256]
//! ```
//!
//! Comparable to openraft's `benchmarks/minimal` (see BENCHMARKS.md).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhea_raft::{Bootstrap, Config, Entry, EntryPayload, Membership, Message, RaftNode, Ready};

/// Entries kept in the in-memory store before the bench snapshots and purges.
const SNAPSHOT_EVERY_ENTRIES: u64 = 100_000;

/// The in-memory log store and state machine of one node: entries are kept
/// until compaction; applying an entry updates a small key-value map.
struct MemStore {
    entries: Vec<Entry>,
    state: std::collections::BTreeMap<u64, Bytes>,
}

struct Cluster {
    nodes: Vec<RaftNode>,
    stores: Vec<MemStore>,
    inbox: VecDeque<Message>,
    leader: usize,
}

impl Cluster {
    fn new() -> Cluster {
        let mut nodes = Vec::new();
        for id in 1..=3u64 {
            let mut cfg = Config::new(id, 1);
            cfg.seed = id;
            cfg.max_uncommitted_entries = 1 << 20;
            nodes.push(
                RaftNode::new(
                    cfg,
                    Bootstrap::NewGroup {
                        membership: Membership::new([1, 2, 3]),
                    },
                )
                .expect("valid config"),
            );
        }
        let stores = (0..3)
            .map(|_| MemStore {
                entries: Vec::new(),
                state: Default::default(),
            })
            .collect();
        let mut c = Cluster {
            nodes,
            stores,
            inbox: VecDeque::new(),
            leader: usize::MAX,
        };
        // Tick until someone leads and has committed its first entry.
        for _ in 0..1000 {
            for i in 0..3 {
                c.nodes[i].tick();
            }
            c.pump(&mut |_| {});
            if let Some(l) = c.nodes.iter().position(|n| n.is_leader())
                && c.nodes[l].commit_index() >= c.nodes[l].last_index()
            {
                c.leader = l;
                return c;
            }
        }
        panic!("no leader elected");
    }

    fn process(&mut self, i: usize, rd: Ready, on_apply: &mut dyn FnMut(u64)) {
        let store = &mut self.stores[i];
        if let Some(first) = rd.entries.first() {
            let keep = store.entries.partition_point(|e| e.index < first.index);
            store.entries.truncate(keep);
            store.entries.extend(rd.entries.iter().cloned());
        }
        self.inbox.extend(rd.messages);
        self.inbox.extend(rd.persisted_messages);
        for e in &rd.committed_entries {
            if let EntryPayload::Normal(data) = &e.payload {
                store.state.insert(e.index % 1024, data.clone());
            }
        }
        if i == self.leader {
            for e in &rd.committed_entries {
                on_apply(e.index);
            }
        }
        if let Some(last) = rd.committed_entries.last() {
            let node = &mut self.nodes[i];
            let applied = last.index;
            if applied % SNAPSHOT_EVERY_ENTRIES < rd.committed_entries.len() as u64 {
                let _ = node.snapshot_done(applied, Bytes::new());
            }
        }
        if let Some(to) = rd.compacted_to {
            let store = &mut self.stores[i];
            let cut = store.entries.partition_point(|e| e.index <= to);
            store.entries.drain(..cut);
        }
        self.nodes[i].advance();
    }

    /// Run readies and deliver messages until the cluster is quiet.
    fn pump(&mut self, on_apply: &mut dyn FnMut(u64)) {
        loop {
            let mut progressed = false;
            for i in 0..3 {
                while let Some(rd) = self.nodes[i].ready() {
                    self.process(i, rd, on_apply);
                    progressed = true;
                }
            }
            while let Some(m) = self.inbox.pop_front() {
                let to = (m.to - 1) as usize;
                self.nodes[to].step(m);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }
}

fn run(clients: usize, secs: f64) -> (u64, Duration) {
    let mut c = Cluster::new();
    let payload = Bytes::from_static(b"x");
    let mut idle = clients;
    let mut done = 0u64;
    let start = Instant::now();
    let budget = Duration::from_secs_f64(secs);
    let mut rounds = 0u64;
    loop {
        let leader = c.leader;
        for _ in 0..idle {
            c.nodes[leader]
                .propose(payload.clone())
                .expect("leader accepts proposals");
        }
        idle = 0;
        let mut completed = 0usize;
        c.pump(&mut |_| completed += 1);
        // The blank and membership entries are not proposals: count only ours.
        idle += completed;
        done += completed as u64;
        idle = idle.min(clients);
        rounds += 1;
        if rounds.is_multiple_of(64) && start.elapsed() >= budget {
            break;
        }
    }
    (done, start.elapsed())
}

fn main() {
    let mut secs = 5.0;
    let mut clients: Vec<usize> = vec![1, 64, 256];
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--secs" if i + 1 < args.len() => {
                secs = args[i + 1].parse().expect("--secs takes a number");
                i += 1;
            }
            "--clients" if i + 1 < args.len() => {
                clients = args[i + 1]
                    .split(',')
                    .map(|s| s.parse().expect("--clients takes numbers"))
                    .collect();
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    println!("rhea-raft core: 3 nodes in one process, in-memory, direct message passing");
    println!("{:>8} {:>14} {:>10}", "clients", "proposals/s", "seconds");
    for n in clients {
        let (done, took) = run(n, secs);
        println!(
            "{:>8} {:>14.0} {:>10.2}",
            n,
            done as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
    }
}
