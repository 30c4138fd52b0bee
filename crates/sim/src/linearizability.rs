//! Linearizability checking for histories recorded by the simulator.
//!
//! A *history* is a list of [`Operation`]s. Each one records the simulated
//! time at which a client invoked it (`call`), the time at which the client saw
//! the response (`return_time`), and what it asked for and got back. The
//! history is *linearizable* with respect to a sequential specification (a
//! [`Model`]) if every operation can be given a single instant inside its
//! interval such that running the operations one at a time in that order,
//! starting from [`Model::init`], reproduces every output the clients
//! observed. Operation `a` has to come before `b` only when `a` returned
//! *strictly* before `b` was called; intervals that merely touch are
//! concurrent.
//!
//! An operation whose outcome is unknown (`output == None`, typically a request
//! that timed out) may have taken effect at any instant after its call, even
//! after the client gave up on it, or never. It is therefore treated as if it
//! returned at +infinity, whatever `return_time` says, and the model accepts
//! any outcome for it.
//!
//! # Search
//!
//! The checker is a Wing & Gong search with Lowe's memoisation. Every call and
//! every return becomes an *entry*. Entries are sorted by time (a call sorts
//! before a return at the same instant) and threaded onto a doubly linked
//! list. A depth-first search walks the list from the front. A call entry
//! names an operation that may be linearized next: if the model accepts it in
//! the current state, the operation's call and return entries are unlinked,
//! the operation is pushed onto an explicit stack (no recursion, so long
//! histories cannot overflow the thread stack) and the walk restarts at the
//! front of the shortened list. Reaching a return entry means that this
//! operation has to be linearized before anything called after it, and no
//! candidate in front of it worked. The search then backtracks: it pops the
//! stack, relinks the two entries (undoing unlinks in reverse order restores
//! the list exactly) and goes on with the candidate after the one it undid.
//! The history is linearizable once every operation has been placed.
//!
//! The same *configuration* (set of linearized operations plus model state)
//! can be reached along many paths, and its future does not depend on the
//! path taken. Every configuration entered is stored in a memo table, so
//! reaching it again is pruned at once. The set is a bitset whose hash is
//! maintained incrementally (Zobrist hashing: the XOR of a fixed random word
//! per member). A lookup therefore costs one hash of the model state and one
//! table probe, and bitsets are compared exactly only when the hashes match.
//! The search places operations roughly in call order and never beyond the
//! first pending return, so each bitset is all ones below a low-water mark
//! and all zeros above a high-water mark. The memo stores only the few words
//! in between.
//!
//! # Operations with unknown outcome
//!
//! An operation with unknown outcome stays a candidate until the very end.
//! Handled naively, each one doubles the search space, because at every
//! point it can either be linearized or not. When the model promises that
//! such an operation is legal in every state ([`Model::unknown_outcome`]),
//! it becomes *deferrable*: leaving it out is never the reason a
//! linearization fails, because it can always be appended at the end. The
//! search exploits that in several ways:
//!
//! * Deferrable operations are kept off the entry list and tried only after
//!   every ordinary candidate has failed. Once only deferrable operations
//!   remain, the history is linearizable.
//! * A deferrable operation that leaves the state unchanged is not tried.
//! * *Dominance*: a configuration `(S + p, s)` with `p` deferrable is pruned
//!   when `(S, s)` has already been explored without success, since
//!   appending `p` at the end would turn any completion of the former into
//!   one of the latter. Pruned configurations are recorded as failed, so
//!   dominance carries over to their supersets.
//! * *Absorption*: right after a deferrable `p`, a deferrable `q` that
//!   reaches the state `q` would have reached in place of `p` is not tried.
//!   That sibling branch is explored anyway, with `p` postponed to the end.
//! * Right after a deferrable operation, blind writes
//!   ([`UnknownOutcome::BlindWrite`]) are always absorbed, so only the other
//!   deferrable operations that change the current state are tried; those
//!   are looked up in a per-state cache.
//! * *Lookahead*: otherwise, a deferrable `p` is tried only if some ordinary
//!   candidate `y` can do something right after `p` that it cannot do
//!   without it, or if a chain of deferrable operations may start with `p`.
//!   Otherwise placing `y` first and `p` at the end is at least as good. A
//!   blind write always leaves the same state, so the blind writes that can
//!   help `y` are computed once per `y` and grouped by `y`'s result, and a
//!   failing configuration finds the useful ones without trying them all.
//!
//! Together these make a never-observed timed-out write cost next to
//! nothing, rather than a factor of two.
//!
//! # Partitioning
//!
//! Linearizability is compositional: a history over independent objects is
//! linearizable exactly when each object's sub-history is. [`check_kv_history`]
//! therefore splits the history by key and checks every key separately with
//! [`KvRegisterModel`], which keeps both the histories and the search spaces
//! small.
//!
//! # Results
//!
//! The search is exponential in the worst case, so it takes a budget of
//! search steps and answers [`CheckResult::Unknown`] when the budget runs out.
//! Each step stores at most one configuration, so memory is bounded by the
//! budget too. With the register model it was 30 to 60 bytes per step on
//! hard histories, so a budget of ten million steps stays under a gigabyte.
//! Decidable histories usually need only a few steps per operation: a
//! linearizable one is typically confirmed without much backtracking.
//! Refuting a history means exhausting every alternative before the
//! violation, which costs the most when many clients overlap on one key.
//!
//! A violation comes with the longest linearizable prefix the search found
//! and the operations that could have come next, none of which fit. That is
//! usually enough to see what went wrong.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A sequential specification.
pub trait Model {
    /// The state of the modelled object.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// The request of an operation.
    type Input: Clone + fmt::Debug;
    /// The response of an operation.
    type Output: Clone + fmt::Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Apply `input` to `state`. `output` is `None` when the operation's
    /// outcome is unknown (timed out: may or may not have happened); then any
    /// output is acceptable.
    ///
    /// Returns the next state if the `(input, output)` pair is legal in
    /// `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;

    /// What the model guarantees about `input` when its outcome is unknown.
    ///
    /// Stronger guarantees let the checker postpone such operations and
    /// prune most of the search space they would otherwise add. The default,
    /// [`UnknownOutcome::MayBeIllegal`], is always correct, only slower.
    fn unknown_outcome(&self, input: &Self::Input) -> UnknownOutcome {
        let _ = input;
        UnknownOutcome::MayBeIllegal
    }
}

/// What a [`Model`] guarantees about an operation whose outcome is unknown,
/// i.e. about `step(s, input, None)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnknownOutcome {
    /// No guarantee: the operation may be illegal in some states.
    #[default]
    MayBeIllegal,
    /// Legal in every state: `step(s, input, None)` is `Some` for all `s`.
    AlwaysLegal,
    /// Legal in every state, and the resulting state is the same whatever
    /// `s` was (a blind write, such as an unconditional put).
    BlindWrite,
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// The client that issued the operation (informational only).
    pub client_id: u64,
    /// What the client asked for.
    pub input: I,
    /// When the client invoked the operation.
    pub call: u64,
    /// What the client got back, or `None` if the outcome is unknown. Such an
    /// operation may take effect at any time after `call`, or never.
    pub output: Option<O>,
    /// When the client saw the response. `None` means the operation never
    /// returned (timed out): its return counts as +infinity and its output is
    /// ignored. A return time earlier than `call` counts as equal to `call`.
    pub return_time: Option<u64>,
}

/// The verdict of [`check_operations`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckResult {
    /// Some order of the operations explains every observed output.
    Linearizable,
    /// No order explains the history. All indices refer to the slice given to
    /// [`check_operations`].
    NotLinearizable {
        /// One longest linearizable prefix the search found, in
        /// linearization order.
        longest_prefix: Vec<usize>,
        /// The operation outside the prefix with the earliest return: it had
        /// to take effect before every operation called after it returned,
        /// and that was impossible.
        blocking_op: usize,
        /// All operations that could have been linearized right after the
        /// prefix (those called before `blocking_op` returned, including
        /// `blocking_op`), in call order. None of them leads to a complete
        /// linearization.
        candidates: Vec<usize>,
    },
    /// The search budget ran out before a verdict was reached.
    Unknown,
}

impl CheckResult {
    /// `true` only for [`CheckResult::Linearizable`].
    #[must_use]
    pub fn is_linearizable(&self) -> bool {
        matches!(self, CheckResult::Linearizable)
    }
}

/// Check whether `ops` is linearizable with respect to `model`.
///
/// The history is searched as a whole; split it into independent objects
/// first (as [`check_kv_history`] does) to keep the search small. At most
/// `max_search_steps` search steps are taken before giving up with
/// [`CheckResult::Unknown`]. A step considers one candidate and stores at
/// most one configuration. Expect a few million steps per second in release
/// builds and some tens of bytes of memory per step (see the module
/// documentation). Most histories need only a few steps per operation.
#[must_use]
pub fn check_operations<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_search_steps: u64,
) -> CheckResult {
    if ops.is_empty() {
        return CheckResult::Linearizable;
    }
    let prepared = Prepared::new(model, ops);
    match search(model, &prepared, max_search_steps) {
        SearchOutcome::Linearizable => CheckResult::Linearizable,
        SearchOutcome::Exhausted => CheckResult::Unknown,
        SearchOutcome::Violation { deepest } => prepared.violation(&deepest),
    }
}

// ---------------------------------------------------------------------------
// Preparation: operations in call order and the sorted entry lists.
// ---------------------------------------------------------------------------

/// Marks the end of an entry list.
const NIL: usize = usize::MAX;
/// Index of every list's sentinel head node.
const HEAD: usize = 0;

/// One operation as the search sees it.
struct PreparedOp<'a, I, O> {
    /// Index in the caller's slice.
    original: usize,
    input: &'a I,
    /// `None` if the outcome is unknown.
    output: Option<&'a O>,
    /// Unknown outcome, and legal in every state: may be postponed to the end.
    deferrable: bool,
    /// Deferrable, and its resulting state does not depend on the state before.
    blind: bool,
}

/// A doubly linked list threaded through a subset of node numbers; node 0
/// is the head sentinel.
#[derive(Clone)]
struct EntryList {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl EntryList {
    /// A list over node numbers `1..nodes` holding `members`, in that order.
    fn threading(nodes: usize, members: impl IntoIterator<Item = usize>) -> Self {
        let mut list = EntryList {
            next: vec![NIL; nodes],
            prev: vec![NIL; nodes],
        };
        let mut tail = HEAD;
        for node in members {
            list.next[tail] = node;
            list.prev[node] = tail;
            tail = node;
        }
        list
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != NIL {
            self.prev[next] = prev;
        }
    }

    /// Undo [`EntryList::unlink`]; must be called in reverse unlink order.
    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != NIL {
            self.prev[next] = node;
        }
    }
}

/// The history in the form the search needs.
///
/// Every call and return is an *entry*; entry nodes are numbered from 1 in
/// time order, so comparing node numbers compares times. Required operations
/// are threaded onto `required` through their entry nodes. Deferrable
/// operations, which stay candidates until the very end, are kept off it so
/// that scans of the required list never wade through them.
struct Prepared<'a, I, O> {
    /// Operations in call order; the position is the operation's id.
    ops: Vec<PreparedOp<'a, I, O>>,
    /// For each entry node, the operation whose call or return it is.
    node_op: Vec<usize>,
    /// For each entry node, whether it is a call.
    node_is_call: Vec<bool>,
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    /// Entries of the required operations, in time order.
    required: EntryList,
    /// Ids of the deferrable operations that are blind writes, in call
    /// order.
    blind_deferred: Vec<usize>,
    /// Ids of the deferrable operations that are not blind writes, in call
    /// order.
    stateful_deferred: Vec<usize>,
}

impl<'a, I, O> Prepared<'a, I, O> {
    fn new<M>(model: &M, history: &'a [Operation<I, O>]) -> Self
    where
        M: Model<Input = I, Output = O>,
    {
        let mut order: Vec<usize> = (0..history.len()).collect();
        order.sort_by_key(|&i| (history[i].call, i));

        let mut ops = Vec::with_capacity(order.len());
        // (time, 0 = call / 1 = return, op id); an unknown outcome returns at
        // +infinity, which `u128::MAX` stands in for.
        let mut entries: Vec<(u128, u8, usize)> = Vec::with_capacity(2 * order.len());
        for (id, &original) in order.iter().enumerate() {
            let op = &history[original];
            let output = op.return_time.and(op.output.as_ref());
            let return_at = match (output, op.return_time) {
                (Some(_), Some(t)) => u128::from(t.max(op.call)),
                _ => u128::MAX,
            };
            entries.push((u128::from(op.call), 0, id));
            entries.push((return_at, 1, id));
            let guarantee = match output {
                Some(_) => UnknownOutcome::MayBeIllegal,
                None => model.unknown_outcome(&op.input),
            };
            ops.push(PreparedOp {
                original,
                input: &op.input,
                output,
                deferrable: guarantee != UnknownOutcome::MayBeIllegal,
                blind: guarantee == UnknownOutcome::BlindWrite,
            });
        }
        entries.sort_unstable();

        let nodes = entries.len() + 1;
        let mut node_op = vec![0; nodes];
        let mut node_is_call = vec![false; nodes];
        let mut call_node = vec![0; ops.len()];
        let mut return_node = vec![0; ops.len()];
        for (position, &(_, kind, id)) in entries.iter().enumerate() {
            let node = position + 1;
            node_op[node] = id;
            if kind == 0 {
                node_is_call[node] = true;
                call_node[id] = node;
            } else {
                return_node[id] = node;
            }
        }
        let required = EntryList::threading(
            nodes,
            (1..nodes).filter(|&node| !ops[node_op[node]].deferrable),
        );
        let blind_deferred = (0..ops.len())
            .filter(|&id| ops[id].deferrable && ops[id].blind)
            .collect();
        let stateful_deferred = (0..ops.len())
            .filter(|&id| ops[id].deferrable && !ops[id].blind)
            .collect();

        Prepared {
            ops,
            node_op,
            node_is_call,
            call_node,
            return_node,
            required,
            blind_deferred,
            stateful_deferred,
        }
    }

    /// Build the diagnostic for a failed search from its deepest prefix.
    fn violation(&self, deepest: &[usize]) -> CheckResult {
        let mut in_prefix = vec![false; self.ops.len()];
        for &id in deepest {
            in_prefix[id] = true;
        }
        // The search only fails when some operation cannot be placed, so the
        // deepest prefix never covers the whole history; 0 is a placeholder
        // that cannot actually be used.
        let blocking = (0..self.ops.len())
            .filter(|&id| !in_prefix[id])
            .min_by_key(|&id| self.return_node[id])
            .unwrap_or(0);
        let deadline = self.return_node[blocking];
        let candidates = (0..self.ops.len())
            .filter(|&id| !in_prefix[id] && self.call_node[id] < deadline)
            .map(|id| self.ops[id].original)
            .collect();
        CheckResult::NotLinearizable {
            longest_prefix: deepest.iter().map(|&id| self.ops[id].original).collect(),
            blocking_op: self.ops[blocking].original,
            candidates,
        }
    }
}

// ---------------------------------------------------------------------------
// Hashing and the memo table.
// ---------------------------------------------------------------------------

/// A small, fast, non-cryptographic hasher: each word is folded in with a
/// rotate, an xor and a multiplication by an odd constant. Good enough for
/// hash-table keys; memo keys are mixed again before use.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

impl FxHasher {
    const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::MULTIPLIER);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        // usize is at most 64 bits on every supported target.
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxBuildHasher = BuildHasherDefault<FxHasher>;

/// The `SplitMix64` finaliser: a cheap bijection that spreads every input bit
/// over the whole word.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = FxHasher::default();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Memo key of a configuration, from its set hash and its state hash.
fn config_hash(set_hash: u64, state_hash: u64) -> u64 {
    mix64(set_hash ^ mix64(state_hash))
}

/// The set of linearized operations: a bitset plus its Zobrist hash.
///
/// Required operations occupy the low words, in call order; deferrable ones
/// follow in words of their own. The search places required operations
/// roughly in call order and never beyond the frontier, so the required
/// words are all ones below a low-water word `lo` and all zeros from a
/// high-water word `end` on. The memo stores only the required words in
/// between, plus the deferrable words, which keeps its entries a few words
/// long whatever the history's length.
struct OpSet {
    bits: Vec<u64>,
    /// Number of words holding required operations; the rest hold
    /// deferrable ones.
    required_words: usize,
    /// The valid bits of the last required word.
    last_required_mask: u64,
    /// The first required word that is not full.
    lo: usize,
    /// One past the last non-zero required word, and at least `lo`.
    end: usize,
    hash: u64,
    /// Bit position of each operation.
    position: Vec<usize>,
    /// One random word per operation; the set's hash is the XOR over members.
    zobrist: Vec<u64>,
}

impl OpSet {
    /// An empty set over operations whose deferrability is given in id order.
    fn new(deferrable: &[bool]) -> Self {
        let required = deferrable.iter().filter(|&&d| !d).count();
        let required_words = required.div_ceil(64);
        let deferred_base = required_words * 64;
        let (mut next_required, mut next_deferred) = (0, deferred_base);
        let position = deferrable
            .iter()
            .map(|&d| {
                let counter = if d {
                    &mut next_deferred
                } else {
                    &mut next_required
                };
                *counter += 1;
                *counter - 1
            })
            .collect();
        let zobrist = (0..deferrable.len() as u64)
            .map(|i| mix64((i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        OpSet {
            bits: vec![0; next_deferred.div_ceil(64)],
            required_words,
            last_required_mask: match required % 64 {
                0 => u64::MAX,
                r => (1 << r) - 1,
            },
            lo: 0,
            end: 0,
            hash: 0,
            position,
            zobrist,
        }
    }

    fn is_full(&self, word: usize) -> bool {
        let mask = if word + 1 == self.required_words {
            self.last_required_mask
        } else {
            u64::MAX
        };
        self.bits[word] == mask
    }

    fn toggle(&mut self, id: usize) {
        let bit = self.position[id];
        let word = bit / 64;
        self.bits[word] ^= 1 << (bit % 64);
        self.hash ^= self.zobrist[id];
        if word >= self.required_words {
            return;
        }
        if word < self.lo {
            self.lo = word;
        } else if word == self.lo {
            while self.lo < self.required_words && self.is_full(self.lo) {
                self.lo += 1;
            }
        }
        if self.bits[word] != 0 {
            self.end = self.end.max(word + 1);
        } else if word + 1 == self.end {
            while self.end > self.lo && self.bits[self.end - 1] == 0 {
                self.end -= 1;
            }
        }
        self.end = self.end.max(self.lo);
    }

    fn contains(&self, id: usize) -> bool {
        let bit = self.position[id];
        self.bits[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// Hash of the set with member `id` removed.
    fn hash_without(&self, id: usize) -> u64 {
        self.hash ^ self.zobrist[id]
    }

    /// The words the memo stores: required words `lo..end`, then the
    /// deferrable words.
    fn stored_words(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (self.lo..self.end)
            .chain(self.required_words..self.bits.len())
            .map(|word| (word, self.bits[word]))
    }
}

struct MemoEntry<S> {
    state: S,
    /// Next entry with the same hash, or `NIL`.
    next: usize,
    /// Fully explored without finding a linearization.
    closed: bool,
    /// The set's `lo` and `end`; its stored words are in `Memo::sets` from
    /// `start` on.
    lo: usize,
    end: usize,
    start: usize,
}

/// Every configuration the search has entered. Entries with equal hashes are
/// chained; the stored parts of the bitsets live in one flat array to keep
/// allocations down.
struct Memo<S> {
    heads: HashMap<u64, usize, FxBuildHasher>,
    entries: Vec<MemoEntry<S>>,
    sets: Vec<u64>,
}

impl<S: Eq> Memo<S> {
    fn new() -> Self {
        Memo {
            heads: HashMap::default(),
            entries: Vec::new(),
            sets: Vec::new(),
        }
    }

    /// Whether entry `idx` holds `set` minus deferrable member `without` (if
    /// given).
    fn holds(&self, idx: usize, set: &OpSet, without: Option<usize>) -> bool {
        let entry = &self.entries[idx];
        if entry.lo != set.lo || entry.end != set.end {
            return false;
        }
        let (removed_word, mask) = match without {
            Some(id) => {
                let bit = set.position[id];
                if bit / 64 < set.required_words {
                    // Only deferrable members are ever removed.
                    return false;
                }
                (bit / 64, 1u64 << (bit % 64))
            }
            None => (NIL, 0),
        };
        let stored = &self.sets[entry.start..];
        set.stored_words().zip(stored).all(|((word, bits), &s)| {
            s == if word == removed_word {
                bits & !mask
            } else {
                bits
            }
        })
    }

    /// Find the configuration (`set` minus `without`, `state`), whose key is
    /// `hash`.
    fn find(&self, hash: u64, set: &OpSet, without: Option<usize>, state: &S) -> Option<usize> {
        let mut idx = self.heads.get(&hash).copied().unwrap_or(NIL);
        while idx != NIL {
            let entry = &self.entries[idx];
            if entry.state == *state && self.holds(idx, set, without) {
                return Some(idx);
            }
            idx = entry.next;
        }
        None
    }

    fn insert(&mut self, hash: u64, set: &OpSet, state: S) -> usize {
        let idx = self.entries.len();
        let next = self.heads.insert(hash, idx).unwrap_or(NIL);
        self.entries.push(MemoEntry {
            state,
            next,
            closed: false,
            lo: set.lo,
            end: set.end,
            start: self.sets.len(),
        });
        self.sets.extend(set.stored_words().map(|(_, bits)| bits));
        idx
    }

    fn state(&self, idx: usize) -> &S {
        &self.entries[idx].state
    }
}

// ---------------------------------------------------------------------------
// The search.
// ---------------------------------------------------------------------------

/// Which candidates a scan considers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Required operations: walk the required entry list up to its first
    /// return entry.
    Required,
    /// Deferrable operations called before the frontier that may help, tried
    /// once the required ones are exhausted. The candidates are computed
    /// when the pass starts (see [`Searcher::deferred_candidates`]) and kept
    /// on `Searcher::pass_lists` until it ends.
    Deferred,
    /// Like `Deferred`, right after another deferrable operation `p`. Only
    /// operations that change the current state and are not blind writes
    /// need trying there: a blind write `q` would land in the same state as
    /// placing `q` instead of `p`, a sibling the parent tries anyway (with
    /// `p` postponed to the end).
    Stateful,
}

/// A scan position.
#[derive(Clone, Copy)]
struct Scan {
    pass: Pass,
    /// `Required`: the next node of the required list.
    /// `Deferred`: the next position in `Searcher::pass_lists[list]`.
    /// `Stateful`: the next position in `Searcher::effective.lists[list]`.
    cursor: usize,
    /// `Deferred`/`Stateful`: which list is walked.
    list: usize,
    /// `Deferred`/`Stateful`: the first required return entry; only
    /// operations called before it may go next.
    frontier: usize,
}

impl Scan {
    fn required(first: usize) -> Self {
        Scan {
            pass: Pass::Required,
            cursor: first,
            list: 0,
            frontier: NIL,
        }
    }
}

/// One linearized operation on the search stack.
struct Frame {
    op: usize,
    /// The scan that chose `op`, positioned just after it (for the required
    /// list the position is recomputed from `op` once it is relinked).
    scan: Scan,
    /// Memo index of the configuration before `op`.
    parent: usize,
}

/// Tracks the stack that placed the most required operations, copying only
/// what changed since the last snapshot (`ops[..common]` always equals the
/// bottom of the current stack).
#[derive(Default)]
struct Deepest {
    ops: Vec<usize>,
    required: usize,
    common: usize,
}

impl Deepest {
    /// Called after every push; `required` is how many required operations
    /// the stack now holds.
    fn pushed(&mut self, stack: &[Frame], required: usize) {
        let Some(top) = stack.last() else { return };
        let depth = stack.len() - 1;
        if self.common == depth && self.ops.get(depth) == Some(&top.op) {
            self.common = stack.len();
        }
        if required > self.required {
            self.required = required;
            self.ops.truncate(self.common);
            self.ops
                .extend(stack[self.common..].iter().map(|frame| frame.op));
            self.common = stack.len();
        }
    }

    fn popped(&mut self, depth: usize) {
        self.common = self.common.min(depth);
    }
}

enum SearchOutcome {
    Linearizable,
    Exhausted,
    /// Not linearizable; `deepest` is a longest linearizable prefix (op ids).
    Violation {
        deepest: Vec<usize>,
    },
}

/// For each model state met, the stateful deferrable operations that change
/// it (in call order).
struct EffectiveCache<S> {
    by_state: HashMap<S, usize, FxBuildHasher>,
    lists: Vec<Vec<usize>>,
}

impl<S: Clone + Eq + Hash> EffectiveCache<S> {
    /// Index in `lists` of the list for `state`.
    fn list_for<M: Model<State = S>>(
        &mut self,
        model: &M,
        history: &Prepared<'_, M::Input, M::Output>,
        state: &S,
    ) -> usize {
        if let Some(&list) = self.by_state.get(state) {
            return list;
        }
        let ids = history
            .stateful_deferred
            .iter()
            .copied()
            .filter(|&id| {
                model
                    .step(state, history.ops[id].input, None)
                    .is_some_and(|next| next != *state)
            })
            .collect();
        let list = self.lists.len();
        self.lists.push(ids);
        self.by_state.insert(state.clone(), list);
        list
    }
}

/// The blind writes after which a required operation `y` is legal, grouped
/// by what `y` does then.
struct Enablers<S> {
    /// Blind writes after which `y` changes nothing.
    no_op: Vec<usize>,
    /// Blind writes after which `y` leads to the given state (not the blind
    /// write's own).
    by_result: Vec<(S, Vec<usize>)>,
}

/// The mutable part of the search: the current configuration, the lists it
/// leaves, and the stack of choices that led to it.
struct Searcher<'p, 'a, M: Model> {
    model: &'p M,
    history: &'p Prepared<'a, M::Input, M::Output>,
    required: EntryList,
    set: OpSet,
    memo: Memo<M::State>,
    /// Memo index of the current configuration.
    current: usize,
    stack: Vec<Frame>,
    /// Deferrable operations currently linearized, in stack order.
    deferred_in_set: Vec<usize>,
    required_left: usize,
    effective: EffectiveCache<M::State>,
    /// For each blind write, the state it leaves (`None` only if the model
    /// broke its promise; such operations are always tried).
    blind_result: Vec<Option<M::State>>,
    /// Blind writes after which some stateful deferrable operation changes
    /// the state, so that a chain may start with them.
    chain_starters: Vec<usize>,
    /// Per required operation, lazily: the blind writes enabling it.
    enablers: Vec<Option<Enablers<M::State>>>,
    /// Candidate lists of the active `Deferred` passes, innermost last.
    pass_lists: Vec<Vec<usize>>,
}

impl<'p, 'a, M: Model> Searcher<'p, 'a, M> {
    fn new(model: &'p M, history: &'p Prepared<'a, M::Input, M::Output>) -> Self {
        let deferrable: Vec<bool> = history.ops.iter().map(|op| op.deferrable).collect();
        let set = OpSet::new(&deferrable);
        let mut memo = Memo::new();
        let init = model.init();
        let blind_result: Vec<Option<M::State>> = history
            .ops
            .iter()
            .map(|op| {
                op.blind
                    .then(|| model.step(&init, op.input, None))
                    .flatten()
            })
            .collect();
        let mut effective = EffectiveCache {
            by_state: HashMap::default(),
            lists: Vec::new(),
        };
        let chain_starters = history
            .blind_deferred
            .iter()
            .copied()
            .filter(|&id| match &blind_result[id] {
                Some(state) => {
                    let list = effective.list_for(model, history, state);
                    !effective.lists[list].is_empty()
                }
                None => true,
            })
            .collect();
        let current = memo.insert(config_hash(set.hash, hash_of(&init)), &set, init);
        Searcher {
            model,
            history,
            required: history.required.clone(),
            set,
            memo,
            current,
            stack: Vec::with_capacity(history.ops.len()),
            deferred_in_set: Vec::new(),
            required_left: history.ops.iter().filter(|op| !op.deferrable).count(),
            effective,
            blind_result,
            chain_starters,
            enablers: (0..history.ops.len()).map(|_| None).collect(),
            pass_lists: Vec::new(),
        }
    }

    /// Compute which blind writes enable required operation `y`.
    fn enablers_of(&mut self, y: usize) -> &Enablers<M::State> {
        let (model, history) = (self.model, self.history);
        let blind_result = &self.blind_result;
        self.enablers[y].get_or_insert_with(|| {
            let op = &history.ops[y];
            let mut enablers = Enablers {
                no_op: Vec::new(),
                by_result: Vec::new(),
            };
            let mut group_of: HashMap<M::State, usize, FxBuildHasher> = HashMap::default();
            for &p in &history.blind_deferred {
                let Some(written) = &blind_result[p] else {
                    continue;
                };
                let Some(after) = model.step(written, op.input, op.output) else {
                    continue;
                };
                if after == *written {
                    enablers.no_op.push(p);
                } else if let Some(&group) = group_of.get(&after) {
                    enablers.by_result[group].1.push(p);
                } else {
                    group_of.insert(after.clone(), enablers.by_result.len());
                    enablers.by_result.push((after, vec![p]));
                }
            }
            enablers
        })
    }

    /// The deferrable operations worth trying in the current configuration,
    /// whose required candidates have all failed and whose first required
    /// return entry is `frontier`; in call order.
    ///
    /// A blind write `p` can only help if, right after it, a required
    /// candidate `y` does something it could not do directly: see
    /// [`Searcher::may_help`]. Those `p` are read off `y`'s enablers. The
    /// other deferrable operations worth trying are blind writes that may
    /// start a chain, and stateful operations that change the current state.
    fn deferred_candidates(&mut self, frontier: usize) -> Vec<usize> {
        let history = self.history;
        let mut candidates: Vec<usize> = Vec::new();
        let mut node = self.required.first();
        while node != NIL && history.node_is_call[node] {
            let y = history.node_op[node];
            let op = &history.ops[y];
            let direct = self
                .model
                .step(self.memo.state(self.current), op.input, op.output);
            let enablers = self.enablers_of(y);
            if direct.is_none() {
                candidates.extend(&enablers.no_op);
            }
            for (after, ps) in &enablers.by_result {
                if direct.as_ref() != Some(after) {
                    candidates.extend(ps);
                }
            }
            node = self.required.next[node];
        }
        candidates.extend(&self.chain_starters);
        let list = self
            .effective
            .list_for(self.model, history, self.memo.state(self.current));
        candidates.extend(&self.effective.lists[list]);
        candidates.extend(
            history
                .blind_deferred
                .iter()
                .filter(|&&p| self.blind_result[p].is_none()),
        );
        candidates.retain(|&p| history.call_node[p] < frontier && !self.set.contains(p));
        candidates.sort_unstable();
        candidates.dedup();
        candidates
    }

    /// The scan of deferrable operations to start in the current
    /// configuration, whose first required return entry is `frontier`.
    fn deferred_scan(&mut self, frontier: usize) -> Scan {
        let top_is_deferrable = self
            .stack
            .last()
            .is_some_and(|frame| self.history.ops[frame.op].deferrable);
        if top_is_deferrable {
            Scan {
                pass: Pass::Stateful,
                cursor: 0,
                list: self.effective.list_for(
                    self.model,
                    self.history,
                    self.memo.state(self.current),
                ),
                frontier,
            }
        } else {
            let candidates = self.deferred_candidates(frontier);
            self.pass_lists.push(candidates);
            Scan {
                pass: Pass::Deferred,
                cursor: 0,
                list: self.pass_lists.len() - 1,
                frontier,
            }
        }
    }

    /// Whether placing deferrable operation `id` now, which leads to state
    /// `next`, can achieve anything that placing a required operation first
    /// cannot; only called when the latest operation is not deferrable.
    ///
    /// After `id`, either a stateful deferrable operation that changes `next`
    /// follows, or a required candidate `y` does. Placing `y` first instead is
    /// at least as good when `y` reaches the same state with or without `id`
    /// in front (`id` then goes at the end), or when `id` is a blind write and
    /// `y` leaves `next` unchanged (`y` then `id` is the same configuration).
    fn may_help(&mut self, id: usize, next: &M::State, frontier: usize) -> bool {
        let history = self.history;
        let state = self.memo.state(self.current);
        let blind = history.ops[id].blind;
        let mut node = self.required.first();
        while node != NIL && history.node_is_call[node] {
            let y = &history.ops[history.node_op[node]];
            if let Some(after) = self.model.step(next, y.input, y.output) {
                let covered = self
                    .model
                    .step(state, y.input, y.output)
                    .is_some_and(|direct| direct == after || (blind && after == *next));
                if !covered {
                    return true;
                }
            }
            node = self.required.next[node];
        }
        let list = self.effective.list_for(self.model, history, next);
        self.effective.lists[list]
            .iter()
            .take_while(|&&q| history.call_node[q] < frontier)
            .any(|&q| q != id && !self.set.contains(q))
    }

    /// Try to linearize operation `id` next; `scan` is positioned after it.
    /// Returns `true` if it was pushed.
    fn try_push(&mut self, id: usize, scan: Scan) -> bool {
        let history = self.history;
        let op = &history.ops[id];
        let state = self.memo.state(self.current);
        let Some(next_state) = self.model.step(state, op.input, op.output) else {
            return false;
        };
        if op.deferrable {
            // A deferrable operation that changes nothing can as well go at
            // the end.
            if next_state == *state {
                return false;
            }
            // Right after another deferrable operation `p`, an operation that
            // lands in the same state as it would have instead of `p` is
            // covered by that sibling (with `p` postponed to the end).
            if let Some(top) = self.stack.last()
                && history.ops[top.op].deferrable
                && self
                    .model
                    .step(self.memo.state(top.parent), op.input, None)
                    .is_some_and(|alternative| alternative == next_state)
            {
                return false;
            }
            if scan.pass == Pass::Deferred && !self.may_help(id, &next_state, scan.frontier) {
                return false;
            }
        }

        self.set.toggle(id);
        let state_hash = hash_of(&next_state);
        let hash = config_hash(self.set.hash, state_hash);
        if self.memo.find(hash, &self.set, None, &next_state).is_some() {
            self.set.toggle(id);
            return false;
        }
        let deferred_members = self
            .deferred_in_set
            .iter()
            .rev()
            .take(DOMINANCE_DEPTH)
            .copied()
            .chain(op.deferrable.then_some(id));
        if dominated(
            &self.memo,
            &self.set,
            deferred_members,
            state_hash,
            &next_state,
        ) {
            // Record it as failed, so that configurations it dominates in
            // turn are recognised too.
            let idx = self.memo.insert(hash, &self.set, next_state);
            self.memo.entries[idx].closed = true;
            self.set.toggle(id);
            return false;
        }

        let idx = self.memo.insert(hash, &self.set, next_state);
        self.stack.push(Frame {
            op: id,
            scan,
            parent: self.current,
        });
        self.current = idx;
        if op.deferrable {
            self.deferred_in_set.push(id);
        } else {
            self.required.unlink(history.call_node[id]);
            self.required.unlink(history.return_node[id]);
            self.required_left -= 1;
        }
        true
    }

    /// Undo the latest push, marking the configuration it led to as failed.
    /// Returns the scan to resume.
    fn pop(&mut self) -> Option<Scan> {
        let frame = self.stack.pop()?;
        let history = self.history;
        self.memo.entries[self.current].closed = true;
        self.current = frame.parent;
        self.set.toggle(frame.op);
        if history.ops[frame.op].deferrable {
            self.deferred_in_set.pop();
        } else {
            self.required.relink(history.return_node[frame.op]);
            self.required.relink(history.call_node[frame.op]);
            self.required_left += 1;
        }
        let mut scan = frame.scan;
        if scan.pass == Pass::Required {
            scan.cursor = self.required.next[history.call_node[frame.op]];
        }
        Some(scan)
    }

    /// The next candidate of `scan`, advancing it; `None` when it is done.
    /// A finished required scan turns into a deferred one if deferrable
    /// operations remain.
    fn next_candidate(&mut self, scan: &mut Scan, deferrable_total: usize) -> Option<usize> {
        let history = self.history;
        match scan.pass {
            Pass::Required => {
                if scan.cursor != NIL && history.node_is_call[scan.cursor] {
                    let id = history.node_op[scan.cursor];
                    scan.cursor = self.required.next[scan.cursor];
                    Some(id)
                } else if self.deferred_in_set.len() < deferrable_total {
                    // Every required candidate failed: on to the deferrable
                    // ones called before this return entry.
                    *scan = self.deferred_scan(scan.cursor);
                    self.next_candidate(scan, deferrable_total)
                } else {
                    None
                }
            }
            Pass::Deferred => {
                let id = self.pass_lists[scan.list].get(scan.cursor).copied()?;
                scan.cursor += 1;
                Some(id)
            }
            Pass::Stateful => {
                let ids = &self.effective.lists[scan.list];
                while let Some(&id) = ids.get(scan.cursor) {
                    if history.call_node[id] >= scan.frontier {
                        break;
                    }
                    scan.cursor += 1;
                    if !self.set.contains(id) {
                        return Some(id);
                    }
                }
                None
            }
        }
    }

    fn run(mut self, budget: u64) -> SearchOutcome {
        let required_total = self.required_left;
        let deferrable_total = self.history.ops.len() - required_total;
        let mut deepest = Deepest::default();
        let mut scan = Scan::required(self.required.first());
        let mut steps: u64 = 0;
        loop {
            if self.required_left == 0 {
                // Whatever remains can be appended in any order.
                return SearchOutcome::Linearizable;
            }
            if steps >= budget {
                return SearchOutcome::Exhausted;
            }
            steps += 1;

            if let Some(id) = self.next_candidate(&mut scan, deferrable_total) {
                if self.try_push(id, scan) {
                    deepest.pushed(&self.stack, required_total - self.required_left);
                    scan = Scan::required(self.required.first());
                }
            } else {
                // Nothing can go next here: backtrack.
                if scan.pass == Pass::Deferred {
                    self.pass_lists.pop();
                }
                let Some(resume) = self.pop() else {
                    return SearchOutcome::Violation {
                        deepest: deepest.ops,
                    };
                };
                deepest.popped(self.stack.len());
                scan = resume;
            }
        }
    }
}

fn search<M: Model>(
    model: &M,
    history: &Prepared<'_, M::Input, M::Output>,
    budget: u64,
) -> SearchOutcome {
    Searcher::new(model, history).run(budget)
}

/// How many of the most recently linearized deferrable operations the
/// dominance check tries removing. Checking fewer only prunes less; the ones
/// placed long ago were almost always needed, and checking them all costs a
/// probe each.
const DOMINANCE_DEPTH: usize = 4;

/// Whether the configuration (`set`, `state`) is dominated by an explored one:
/// removing some deferrable member `p` gives a configuration that was fully
/// explored without success. Any completion of ours would complete that one
/// too, with `p` appended at the end, so ours cannot succeed either.
fn dominated<S: Eq>(
    memo: &Memo<S>,
    set: &OpSet,
    deferred_members: impl Iterator<Item = usize>,
    state_hash: u64,
    state: &S,
) -> bool {
    // Only a closed match counts. (An open one could only be the current
    // configuration itself, a case the no-op rule already covers.)
    deferred_members.into_iter().any(|id| {
        let hash = config_hash(set.hash_without(id), state_hash);
        memo.find(hash, set, Some(id), state)
            .is_some_and(|idx| memo.entries[idx].closed)
    })
}

// ---------------------------------------------------------------------------
// The key-value register model used by the simulator's workload.
// ---------------------------------------------------------------------------

/// A request of the simulator's key-value workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Unconditionally set `key` to `value`.
    Put {
        /// The key written.
        key: u64,
        /// The value written.
        value: u64,
    },
    /// Read `key`.
    Get {
        /// The key read.
        key: u64,
    },
    /// Set `key` to `new` if it currently holds `expected`.
    Cas {
        /// The key compared and maybe written.
        key: u64,
        /// The value the key must hold for the swap to happen.
        expected: u64,
        /// The value written if the swap happens.
        new: u64,
    },
}

impl KvInput {
    /// The key the request addresses.
    #[must_use]
    pub fn key(&self) -> u64 {
        match *self {
            KvInput::Put { key, .. } | KvInput::Get { key } | KvInput::Cas { key, .. } => key,
        }
    }
}

impl fmt::Display for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KvInput::Put { key, value } => write!(f, "put(key {key}, {value})"),
            KvInput::Get { key } => write!(f, "get(key {key})"),
            KvInput::Cas { key, expected, new } => {
                write!(f, "cas(key {key}, {expected} -> {new})")
            }
        }
    }
}

/// A response of the simulator's key-value workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The put was applied.
    Put,
    /// The value read, `None` if the key was absent.
    Get(Option<u64>),
    /// Whether the swap happened.
    Cas(bool),
}

impl fmt::Display for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KvOutput::Put => f.write_str("ok"),
            KvOutput::Get(value) => f.write_str(&describe_value(value)),
            KvOutput::Cas(swapped) => write!(f, "{swapped}"),
        }
    }
}

fn describe_value(value: Option<u64>) -> String {
    value.map_or_else(|| "absent".to_owned(), |v| v.to_string())
}

/// Why [`KvRegisterModel`] rejects an operation in a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KvRejection {
    /// The output is of the wrong kind for the input (e.g. a get that returned
    /// a CAS result).
    WrongOutputKind,
    /// A get returned something other than the register's value.
    ReadMismatch,
    /// A CAS claimed success but the register did not hold `expected`.
    SwapWithoutMatch,
    /// A CAS claimed failure but the register held `expected`.
    NoSwapDespiteMatch,
}

/// One key of the key-value store as a read/write/compare-and-swap register.
/// The state is the key's value, `None` when absent. A CAS on an absent key
/// never succeeds.
///
/// The model ignores the key inside [`KvInput`]: feed it the sub-history of a
/// single key (as [`check_kv_history`] does).
#[derive(Clone, Copy, Debug, Default)]
pub struct KvRegisterModel;

impl KvRegisterModel {
    fn apply(
        state: Option<u64>,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Result<Option<u64>, KvRejection> {
        match (*input, output) {
            (KvInput::Put { value, .. }, None | Some(KvOutput::Put)) => Ok(Some(value)),
            (KvInput::Get { .. }, None) => Ok(state),
            (KvInput::Get { .. }, Some(&KvOutput::Get(read))) => {
                if read == state {
                    Ok(state)
                } else {
                    Err(KvRejection::ReadMismatch)
                }
            }
            (KvInput::Cas { expected, new, .. }, output) => {
                let matches = state == Some(expected);
                match (output, matches) {
                    (None | Some(KvOutput::Cas(true)), true) => Ok(Some(new)),
                    (None | Some(KvOutput::Cas(false)), false) => Ok(state),
                    (Some(KvOutput::Cas(true)), false) => Err(KvRejection::SwapWithoutMatch),
                    (Some(KvOutput::Cas(false)), true) => Err(KvRejection::NoSwapDespiteMatch),
                    (Some(_), _) => Err(KvRejection::WrongOutputKind),
                }
            }
            (KvInput::Put { .. } | KvInput::Get { .. }, Some(_)) => {
                Err(KvRejection::WrongOutputKind)
            }
        }
    }
}

impl Model for KvRegisterModel {
    type State = Option<u64>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &KvInput,
        output: Option<&KvOutput>,
    ) -> Option<Option<u64>> {
        Self::apply(*state, input, output).ok()
    }

    fn unknown_outcome(&self, input: &KvInput) -> UnknownOutcome {
        match input {
            KvInput::Put { .. } => UnknownOutcome::BlindWrite,
            KvInput::Get { .. } | KvInput::Cas { .. } => UnknownOutcome::AlwaysLegal,
        }
    }
}

/// One operation of a key-value history, as quoted in a [`KvCheckReport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvOpRecord {
    /// Index in the history given to [`check_kv_history`].
    pub index: usize,
    /// The client that issued it.
    pub client_id: u64,
    /// When it was invoked.
    pub call: u64,
    /// When it returned, `None` if it never did.
    pub return_time: Option<u64>,
    /// The request.
    pub input: KvInput,
    /// The response, `None` if unknown.
    pub output: Option<KvOutput>,
}

impl KvOpRecord {
    fn new(index: usize, op: &Operation<KvInput, KvOutput>) -> Self {
        KvOpRecord {
            index,
            client_id: op.client_id,
            call: op.call,
            return_time: op.return_time,
            input: op.input,
            output: op.output,
        }
    }

    /// The output as the checker sees it (`None` if it never returned).
    fn known_output(&self) -> Option<KvOutput> {
        self.return_time.and(self.output)
    }
}

impl fmt::Display for KvOpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op #{} client {} [{}, ",
            self.index, self.client_id, self.call
        )?;
        match self.return_time {
            Some(t) => write!(f, "{t}]")?,
            None => f.write_str("never returned]")?,
        }
        write!(f, " {} -> ", self.input)?;
        match self.known_output() {
            Some(output) => write!(f, "{output}"),
            None => f.write_str("outcome unknown"),
        }
    }
}

/// What went wrong on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvFailureKind {
    /// The key's history is not linearizable.
    NotLinearizable {
        /// Indices (into the full history) of one longest linearizable prefix
        /// of the key's history, in linearization order.
        longest_prefix: Vec<usize>,
        /// The last few operations of that prefix, for display.
        prefix_tail: Vec<KvOpRecord>,
        /// The key's value after the prefix.
        state_after_prefix: Option<u64>,
        /// The operation outside the prefix that returned first: it had to
        /// take effect before everything called after it returned.
        blocking_op: KvOpRecord,
        /// Every operation that could have come right after the prefix
        /// (including `blocking_op`); none of them leads anywhere.
        candidates: Vec<KvOpRecord>,
    },
    /// The search budget ran out: no verdict.
    Unknown {
        /// The budget that was exhausted.
        budget: u64,
    },
}

/// The result of checking one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvKeyFailure {
    /// The key.
    pub key: u64,
    /// How many operations on the key were checked.
    pub ops_on_key: usize,
    /// What went wrong.
    pub kind: KvFailureKind,
}

/// The verdict of [`check_kv_history`]; its `Display` explains failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCheckReport {
    /// Number of distinct keys checked.
    pub keys_checked: usize,
    /// Number of operations checked.
    pub ops_checked: usize,
    /// Reads with unknown outcome, which carry no information and were
    /// dropped.
    pub ops_dropped: usize,
    /// Keys that are not linearizable or could not be decided, by key.
    pub failures: Vec<KvKeyFailure>,
}

impl KvCheckReport {
    /// `true` if every key was proven linearizable.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// `true` if some key was proven not linearizable.
    #[must_use]
    pub fn has_violation(&self) -> bool {
        self.failures
            .iter()
            .any(|f| matches!(f.kind, KvFailureKind::NotLinearizable { .. }))
    }

    /// `true` if the budget ran out on some key.
    #[must_use]
    pub fn has_unknown(&self) -> bool {
        self.failures
            .iter()
            .any(|f| matches!(f.kind, KvFailureKind::Unknown { .. }))
    }
}

/// How many operations of the longest prefix a report quotes.
const PREFIX_TAIL: usize = 5;

/// Check a key-value history for linearizability, key by key.
///
/// Reads whose outcome is unknown are dropped first, since they carry no
/// information. Each key's operations are then checked independently with
/// [`KvRegisterModel`], with at most `max_search_steps_per_key` steps each.
#[must_use]
pub fn check_kv_history(
    ops: &[Operation<KvInput, KvOutput>],
    max_search_steps_per_key: u64,
) -> KvCheckReport {
    let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut ops_dropped = 0;
    for (index, op) in ops.iter().enumerate() {
        let unknown = op.output.is_none() || op.return_time.is_none();
        if unknown && matches!(op.input, KvInput::Get { .. }) {
            ops_dropped += 1;
        } else {
            by_key.entry(op.input.key()).or_default().push(index);
        }
    }

    let mut failures = Vec::new();
    for (&key, indices) in &by_key {
        let sub: Vec<_> = indices.iter().map(|&i| ops[i].clone()).collect();
        let kind = match check_operations(&KvRegisterModel, &sub, max_search_steps_per_key) {
            CheckResult::Linearizable => continue,
            CheckResult::Unknown => KvFailureKind::Unknown {
                budget: max_search_steps_per_key,
            },
            CheckResult::NotLinearizable {
                longest_prefix,
                blocking_op,
                candidates,
            } => {
                let record = |local: usize| KvOpRecord::new(indices[local], &sub[local]);
                let state_after_prefix = longest_prefix.iter().fold(None, |state, &local| {
                    let op = &sub[local];
                    let output = op.return_time.and(op.output.as_ref());
                    KvRegisterModel::apply(state, &op.input, output).unwrap_or(state)
                });
                let tail_start = longest_prefix.len().saturating_sub(PREFIX_TAIL);
                KvFailureKind::NotLinearizable {
                    prefix_tail: longest_prefix[tail_start..]
                        .iter()
                        .map(|&l| record(l))
                        .collect(),
                    longest_prefix: longest_prefix.iter().map(|&l| indices[l]).collect(),
                    state_after_prefix,
                    blocking_op: record(blocking_op),
                    candidates: candidates.iter().map(|&l| record(l)).collect(),
                }
            }
        };
        failures.push(KvKeyFailure {
            key,
            ops_on_key: sub.len(),
            kind,
        });
    }

    KvCheckReport {
        keys_checked: by_key.len(),
        ops_checked: ops.len() - ops_dropped,
        ops_dropped,
        failures,
    }
}

impl fmt::Display for KvCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let summary = format!(
            "{} keys, {} operations checked ({} reads with unknown outcome ignored)",
            self.keys_checked, self.ops_checked, self.ops_dropped
        );
        if self.is_ok() {
            return write!(f, "linearizable: {summary}");
        }
        let violations = self
            .failures
            .iter()
            .filter(|k| matches!(k.kind, KvFailureKind::NotLinearizable { .. }))
            .count();
        writeln!(
            f,
            "linearizability check FAILED: {violations} key(s) not linearizable, {} key(s) \
             undecided; {summary}",
            self.failures.len() - violations
        )?;
        for failure in &self.failures {
            write!(f, "{failure}")?;
        }
        Ok(())
    }
}

impl fmt::Display for KvKeyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key;
        match &self.kind {
            KvFailureKind::Unknown { budget } => writeln!(
                f,
                "key {key}: UNDECIDED: the search budget of {budget} steps ran out on {} \
                 operations (no violation found so far; raise the budget to get a verdict)",
                self.ops_on_key
            ),
            KvFailureKind::NotLinearizable {
                longest_prefix,
                prefix_tail,
                state_after_prefix,
                blocking_op,
                candidates,
            } => {
                writeln!(
                    f,
                    "key {key}: NOT LINEARIZABLE ({} operations on this key)",
                    self.ops_on_key
                )?;
                let state = describe_value(*state_after_prefix);
                writeln!(
                    f,
                    "  the longest linearizable prefix found has {} of them; after it the \
                     key's value is {state}.",
                    longest_prefix.len()
                )?;
                if !prefix_tail.is_empty() {
                    writeln!(f, "  the prefix ends with (in linearization order):")?;
                    for op in prefix_tail {
                        writeln!(f, "    {op}")?;
                    }
                }
                let deadline = match blocking_op.return_time {
                    Some(t) if blocking_op.known_output().is_some() => t.to_string(),
                    _ => "infinity".to_owned(),
                };
                writeln!(
                    f,
                    "  next, {blocking_op} must take effect before anything called after \
                     {deadline}, but none of the operations that could go next fits:"
                )?;
                let (known, unknown): (Vec<_>, Vec<_>) = candidates
                    .iter()
                    .partition(|op| op.known_output().is_some());
                for op in known {
                    writeln!(f, "    {op}: {}", why_not(*state_after_prefix, op))?;
                }
                if !unknown.is_empty() {
                    writeln!(
                        f,
                        "  nor does any of the {} operations with unknown outcome that could \
                         go next:",
                        unknown.len()
                    )?;
                    for op in unknown.iter().take(MAX_UNKNOWN_CANDIDATES) {
                        writeln!(f, "    {op}")?;
                    }
                    if unknown.len() > MAX_UNKNOWN_CANDIDATES {
                        writeln!(
                            f,
                            "    ... and {} more",
                            unknown.len() - MAX_UNKNOWN_CANDIDATES
                        )?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// How many unknown-outcome candidates a report lists.
const MAX_UNKNOWN_CANDIDATES: usize = 8;

/// Why `op` cannot be linearized right after a prefix leaving `state`.
fn why_not(state: Option<u64>, op: &KvOpRecord) -> String {
    let output = op.known_output();
    let value = describe_value(state);
    match KvRegisterModel::apply(state, &op.input, output.as_ref()) {
        Ok(_) => "legal here, but every continuation after it fails".to_owned(),
        Err(KvRejection::WrongOutputKind) => {
            "its output does not match the kind of request".to_owned()
        }
        Err(KvRejection::ReadMismatch) => match output {
            Some(KvOutput::Get(read)) => {
                format!("it read {}, but the value is {value}", describe_value(read))
            }
            _ => format!("it did not read the value {value}"),
        },
        Err(KvRejection::SwapWithoutMatch) => {
            format!("it claims to have swapped, but the value is {value}")
        }
        Err(KvRejection::NoSwapDespiteMatch) => {
            format!("it claims to have failed, but the value is {value}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    type KvOp = Operation<KvInput, KvOutput>;

    const BUDGET: u64 = 50_000_000;

    fn put(client_id: u64, key: u64, value: u64, call: u64, ret: u64) -> KvOp {
        Operation {
            client_id,
            input: KvInput::Put { key, value },
            call,
            output: Some(KvOutput::Put),
            return_time: Some(ret),
        }
    }

    fn get(client_id: u64, key: u64, read: Option<u64>, call: u64, ret: u64) -> KvOp {
        Operation {
            client_id,
            input: KvInput::Get { key },
            call,
            output: Some(KvOutput::Get(read)),
            return_time: Some(ret),
        }
    }

    fn cas(
        client_id: u64,
        key: u64,
        expected: u64,
        new: u64,
        swapped: bool,
        call: u64,
        ret: u64,
    ) -> KvOp {
        Operation {
            client_id,
            input: KvInput::Cas { key, expected, new },
            call,
            output: Some(KvOutput::Cas(swapped)),
            return_time: Some(ret),
        }
    }

    fn timed_out(client_id: u64, input: KvInput, call: u64) -> KvOp {
        Operation {
            client_id,
            input,
            call,
            output: None,
            return_time: None,
        }
    }

    fn single_key(ops: &[KvOp]) -> CheckResult {
        check_operations(&KvRegisterModel, ops, BUDGET)
    }

    /// A naive checker: every read (and every successful CAS) saw a value
    /// that some operation which started before it returned wrote, or the
    /// initial value.
    fn naive_accepts(ops: &[KvOp]) -> bool {
        let wrote = |writer: &KvOp, key: u64, value: u64, before: u64| {
            let writes = match (writer.input, writer.output) {
                (KvInput::Put { key: k, value: v }, _) => k == key && v == value,
                (KvInput::Cas { key: k, new, .. }, Some(KvOutput::Cas(true)) | None) => {
                    k == key && new == value
                }
                _ => false,
            };
            writes && writer.call < before
        };
        ops.iter().enumerate().all(|(i, op)| {
            let Some(ret) = op.return_time else {
                return true;
            };
            let observed = match (op.input, op.output) {
                (KvInput::Get { key }, Some(KvOutput::Get(Some(v)))) => Some((key, v)),
                (KvInput::Cas { key, expected, .. }, Some(KvOutput::Cas(true))) => {
                    Some((key, expected))
                }
                _ => None,
            };
            observed.is_none_or(|(key, value)| {
                ops.iter()
                    .enumerate()
                    .any(|(j, w)| j != i && wrote(w, key, value, ret))
            })
        })
    }

    fn assert_not_linearizable(ops: &[KvOp]) {
        let result = single_key(ops);
        assert!(
            matches!(result, CheckResult::NotLinearizable { .. }),
            "expected a violation, got {result:?}"
        );
    }

    // --- 1. linearizable histories are accepted -------------------------

    #[test]
    fn sequential_history_is_accepted() {
        let ops = vec![
            get(0, 1, None, 0, 1),
            put(0, 1, 5, 2, 3),
            get(1, 1, Some(5), 4, 5),
            cas(1, 1, 5, 6, true, 6, 7),
            cas(0, 1, 5, 7, false, 8, 9),
            get(0, 1, Some(6), 10, 11),
        ];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
        assert!(check_kv_history(&ops, BUDGET).is_ok());
    }

    #[test]
    fn cas_on_absent_key_never_succeeds() {
        // Absent never equals `expected`, not even 0.
        assert_not_linearizable(&[cas(0, 1, 0, 1, true, 0, 1)]);
        let ops = vec![cas(0, 1, 0, 1, false, 0, 1), get(0, 1, None, 2, 3)];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
    }

    #[test]
    fn concurrent_histories_are_accepted() {
        // A read overlapping a write may see either value.
        for read in [None, Some(1)] {
            let ops = vec![put(0, 1, 1, 0, 10), get(1, 1, read, 5, 15)];
            assert_eq!(single_key(&ops), CheckResult::Linearizable, "read {read:?}");
        }
        // Two overlapping writes may land in either order, and reads that
        // overlap both may even disagree in time order with the call order.
        let ops = vec![
            put(0, 1, 1, 0, 20),
            put(1, 1, 2, 5, 25),
            get(2, 1, Some(1), 21, 30),
            get(3, 1, Some(2), 10, 15),
        ];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
        // Of two racing CASes from the same value, exactly one wins.
        let ops = vec![
            put(0, 1, 0, 0, 1),
            cas(1, 1, 0, 10, false, 2, 20),
            cas(2, 1, 0, 20, true, 3, 18),
            get(3, 1, Some(20), 21, 22),
        ];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
    }

    #[test]
    fn touching_intervals_are_concurrent() {
        // The read is called at the instant the put returns: either order.
        let ops = vec![put(0, 1, 1, 0, 10), get(1, 1, None, 10, 20)];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
        // One tick later the put must come first.
        let ops = vec![put(0, 1, 1, 0, 10), get(1, 1, None, 11, 20)];
        assert_not_linearizable(&ops);
    }

    // --- 2. violations a naive checker misses ---------------------------

    #[test]
    fn stale_read_is_rejected() {
        let ops = vec![put(0, 1, 1, 0, 10), get(1, 1, None, 20, 30)];
        assert!(naive_accepts(&ops));
        assert_not_linearizable(&ops);
    }

    #[test]
    fn new_then_old_reads_are_rejected() {
        let ops = vec![
            put(0, 1, 1, 0, 10),
            put(0, 1, 2, 20, 30),
            get(1, 1, Some(2), 40, 50),
            get(2, 1, Some(1), 60, 70),
        ];
        assert!(naive_accepts(&ops));
        assert_not_linearizable(&ops);
    }

    #[test]
    fn cas_on_overwritten_value_is_rejected() {
        let ops = vec![
            put(0, 1, 1, 0, 10),
            put(0, 1, 2, 20, 30),
            cas(1, 1, 1, 3, true, 40, 50),
        ];
        assert!(naive_accepts(&ops));
        assert_not_linearizable(&ops);
    }

    #[test]
    fn two_winning_cas_from_same_value_are_rejected() {
        let ops = vec![
            put(0, 1, 0, 0, 10),
            cas(1, 1, 0, 1, true, 20, 40),
            cas(2, 1, 0, 2, true, 25, 35),
        ];
        assert!(naive_accepts(&ops));
        assert_not_linearizable(&ops);
    }

    #[test]
    fn diagnostic_points_at_the_culprit() {
        let ops = vec![
            put(0, 1, 1, 0, 10),
            put(0, 1, 2, 20, 30),
            get(1, 1, Some(2), 40, 50),
            get(2, 1, Some(1), 60, 70),
        ];
        let CheckResult::NotLinearizable {
            longest_prefix,
            blocking_op,
            candidates,
        } = single_key(&ops)
        else {
            panic!("expected a violation");
        };
        assert_eq!(longest_prefix, vec![0, 1, 2]);
        assert_eq!(blocking_op, 3);
        assert_eq!(candidates, vec![3]);

        let report = check_kv_history(&ops, BUDGET);
        let text = report.to_string();
        assert!(text.contains("NOT LINEARIZABLE"), "{text}");
        assert!(
            text.contains("op #3 client 2 [60, 70] get(key 1) -> 1: it read 1, but the value is 2"),
            "{text}"
        );
    }

    // --- 3. unknown outcomes --------------------------------------------

    #[test]
    fn timed_out_put_that_is_read_later_is_accepted() {
        let ops = vec![
            timed_out(0, KvInput::Put { key: 1, value: 5 }, 0),
            get(1, 1, None, 10, 20),
            get(1, 1, Some(5), 1_000, 1_010),
            get(2, 1, Some(5), 2_000, 2_010),
        ];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
        assert!(check_kv_history(&ops, BUDGET).is_ok());
    }

    #[test]
    fn timed_out_put_never_observed_is_accepted() {
        let ops = vec![
            put(0, 1, 1, 0, 10),
            timed_out(1, KvInput::Put { key: 1, value: 5 }, 20),
            timed_out(
                1,
                KvInput::Cas {
                    key: 1,
                    expected: 1,
                    new: 7,
                },
                30,
            ),
            get(2, 1, Some(1), 40, 50),
            put(0, 1, 2, 60, 70),
            get(2, 1, Some(2), 80, 90),
        ];
        assert!(check_all_ways(&ops));
    }

    #[test]
    fn unknown_outcome_with_return_time_is_treated_as_pending() {
        // The client saw an ambiguous error at 10, yet the write landed later.
        let mut ambiguous = put(0, 1, 5, 0, 10);
        ambiguous.output = None;
        let ops = vec![
            ambiguous,
            get(1, 1, None, 20, 30),
            get(1, 1, Some(5), 40, 50),
        ];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
    }

    #[test]
    fn read_of_never_written_value_is_rejected() {
        let ops = vec![
            timed_out(0, KvInput::Put { key: 1, value: 5 }, 0),
            put(1, 1, 6, 5, 15),
            get(2, 1, Some(42), 20, 30),
        ];
        assert_not_linearizable(&ops);
        let report = check_kv_history(&ops, BUDGET);
        assert!(report.has_violation() && !report.has_unknown(), "{report}");
    }

    #[test]
    fn timed_out_put_cannot_be_read_before_its_call() {
        let ops = vec![
            get(1, 1, Some(5), 0, 10),
            timed_out(0, KvInput::Put { key: 1, value: 5 }, 20),
        ];
        assert_not_linearizable(&ops);
    }

    #[test]
    fn chains_of_unknown_outcomes_are_found() {
        // Only put(5) followed by cas(5 -> 6), both timed out, explains the
        // read of 6; the CAS was even called first.
        let ops = vec![
            put(0, 1, 1, 0, 5),
            timed_out(
                1,
                KvInput::Cas {
                    key: 1,
                    expected: 5,
                    new: 6,
                },
                10,
            ),
            timed_out(2, KvInput::Put { key: 1, value: 5 }, 20),
            put(0, 1, 2, 30, 35),
            get(3, 1, Some(2), 40, 45),
            get(3, 1, Some(6), 50, 55),
        ];
        assert!(check_all_ways(&ops));
        // Without the put, nothing can have written 6 after 2.
        let without_put: Vec<KvOp> = ops
            .iter()
            .filter(|op| !matches!(op.input, KvInput::Put { value: 5, .. }))
            .cloned()
            .collect();
        assert!(!check_all_ways(&without_put));
    }

    #[test]
    fn unknown_outcome_can_explain_a_failed_cas() {
        // The CAS found something other than 1 even though 1 had been
        // written: only the timed-out put can have intervened.
        let ops = vec![
            put(0, 1, 1, 0, 10),
            timed_out(1, KvInput::Put { key: 1, value: 9 }, 5),
            cas(2, 1, 1, 3, false, 20, 30),
            get(2, 1, Some(9), 40, 50),
        ];
        assert!(check_all_ways(&ops));
        // A later read of 1 contradicts it (nothing writes 1 again).
        let mut contradicted = ops.clone();
        contradicted.push(get(3, 1, Some(1), 60, 70));
        assert!(!check_all_ways(&contradicted));
    }

    #[test]
    fn unknown_reads_are_dropped() {
        let mut unknown_read = get(1, 1, None, 0, 10);
        unknown_read.output = None;
        let ops = vec![
            unknown_read,
            timed_out(2, KvInput::Get { key: 1 }, 5),
            put(0, 1, 1, 0, 10),
        ];
        let report = check_kv_history(&ops, BUDGET);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.ops_dropped, 2);
        assert_eq!(report.ops_checked, 1);
    }

    // --- 4. per-key partitioning ----------------------------------------

    #[test]
    fn violation_is_reported_against_its_key_only() {
        let ops = vec![
            put(0, 1, 1, 0, 10),
            put(0, 2, 1, 0, 10),
            get(1, 1, Some(1), 20, 30),
            // Key 2: a stale read.
            get(1, 2, None, 20, 30),
            put(2, 3, 9, 5, 50),
            get(0, 3, Some(9), 55, 60),
        ];
        let report = check_kv_history(&ops, BUDGET);
        assert!(!report.is_ok());
        assert_eq!(report.keys_checked, 3);
        assert_eq!(report.failures.len(), 1, "{report}");
        let failure = &report.failures[0];
        assert_eq!(failure.key, 2);
        assert_eq!(failure.ops_on_key, 2);
        let KvFailureKind::NotLinearizable {
            longest_prefix,
            blocking_op,
            candidates,
            ..
        } = &failure.kind
        else {
            panic!("expected a violation, got {failure:?}");
        };
        assert_eq!(longest_prefix, &vec![1]);
        assert_eq!(blocking_op.index, 3);
        assert!(candidates.iter().all(|op| op.input.key() == 2));
        let text = report.to_string();
        assert!(text.contains("key 2: NOT LINEARIZABLE"), "{text}");
        assert!(
            !text.contains("key 1:") && !text.contains("key 3:"),
            "{text}"
        );
    }

    // --- 5. a large generated history -----------------------------------

    /// SplitMix64, deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            mix64(self.0)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn percent(&mut self, p: u64) -> bool {
            self.below(100) < p
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Fate {
        Known,
        /// Returned with an ambiguous error.
        Ambiguous,
        /// Never returned.
        TimedOut,
    }

    struct Planned {
        client_id: u64,
        input: KvInput,
        call: u64,
        ret: u64,
        /// The instant the store executes it (if `applied`).
        at: u64,
        fate: Fate,
        applied: bool,
    }

    /// Simulate `clients` clients running `n_ops` operations against a
    /// linearizable store: each operation executes atomically at a random
    /// instant inside its interval (or, with unknown outcome, maybe later or
    /// never), and outputs come from executing them in that order.
    fn generate_history(seed: u64, n_ops: usize, clients: usize, keys: u64) -> Vec<KvOp> {
        let mut rng = Rng(seed);
        let mut free_at = vec![0u64; clients];
        let mut fresh = 1u64;
        let mut last_written = vec![0u64; keys as usize];
        let mut plan = Vec::with_capacity(n_ops);
        for _ in 0..n_ops {
            let client = (0..clients).min_by_key(|&c| (free_at[c], c)).unwrap_or(0);
            let call = free_at[client] + rng.below(5);
            let duration = 1 + rng.below(30);
            let ret = call + duration;
            let key = rng.below(keys);
            let input = match rng.below(10) {
                0..=3 => KvInput::Get { key },
                4..=7 => {
                    fresh += 1;
                    KvInput::Put { key, value: fresh }
                }
                _ => {
                    fresh += 1;
                    let expected = if rng.percent(70) {
                        last_written[key as usize]
                    } else {
                        rng.below(fresh)
                    };
                    KvInput::Cas {
                        key,
                        expected,
                        new: fresh,
                    }
                }
            };
            if let KvInput::Put { value: v, .. } | KvInput::Cas { new: v, .. } = input {
                last_written[key as usize] = v;
            }
            let fate = match rng.below(100) {
                0 => Fate::TimedOut,
                1 => Fate::Ambiguous,
                _ => Fate::Known,
            };
            let at = match fate {
                Fate::TimedOut | Fate::Ambiguous => call + rng.below(3 * duration + 1),
                Fate::Known => call + rng.below(duration + 1),
            };
            let applied = fate == Fate::Known || rng.percent(50);
            free_at[client] = ret + 1 + rng.below(3);
            plan.push(Planned {
                client_id: client as u64,
                input,
                call,
                ret,
                at,
                fate,
                applied,
            });
        }

        let mut order: Vec<usize> = (0..plan.len()).collect();
        order.sort_by_key(|&i| (plan[i].at, i));
        let mut store = vec![None; keys as usize];
        let mut outputs = vec![None; plan.len()];
        for i in order {
            let p = &plan[i];
            if !p.applied {
                continue;
            }
            let slot = &mut store[p.input.key() as usize];
            outputs[i] = Some(match p.input {
                KvInput::Put { value, .. } => {
                    *slot = Some(value);
                    KvOutput::Put
                }
                KvInput::Get { .. } => KvOutput::Get(*slot),
                KvInput::Cas { expected, new, .. } => {
                    let swap = *slot == Some(expected);
                    if swap {
                        *slot = Some(new);
                    }
                    KvOutput::Cas(swap)
                }
            });
        }

        plan.iter()
            .zip(outputs)
            .map(|(p, output)| Operation {
                client_id: p.client_id,
                input: p.input,
                call: p.call,
                output: if p.fate == Fate::Known { output } else { None },
                return_time: if p.fate == Fate::TimedOut {
                    None
                } else {
                    Some(p.ret)
                },
            })
            .collect()
    }

    #[test]
    fn large_generated_history() {
        let ops = generate_history(0x5eed, 10_000, 5, 10);
        let unknown = ops.iter().filter(|op| op.output.is_none()).count();
        let swapped = ops
            .iter()
            .filter(|op| op.output == Some(KvOutput::Cas(true)))
            .count();
        assert!(
            unknown > 50 && swapped > 50,
            "{unknown} unknown, {swapped} swaps"
        );

        let started = Instant::now();
        let report = check_kv_history(&ops, BUDGET);
        eprintln!(
            "10,000-op linearizable history ({unknown} unknown outcomes): {:?}",
            started.elapsed()
        );
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.keys_checked, 10);

        // Corruption 1: a read in the middle returns a value never written.
        let victim = (ops.len() / 2..ops.len())
            .find(|&i| matches!(ops[i].output, Some(KvOutput::Get(Some(_)))))
            .unwrap_or(0);
        assert!(victim > 0);
        let mut corrupted = ops.clone();
        corrupted[victim].output = Some(KvOutput::Get(Some(u64::MAX)));
        assert_rejected_naming(&corrupted, victim, "never-written value");

        // Corruption 2: a read returns the value of a put that was provably
        // overwritten before the read was called: put `old` returned before
        // put `newer` was called, which returned before the read was called.
        // (Values are unique, so nothing else can have written `old`.)
        let stale = (ops.len() / 2..ops.len()).find_map(|read| {
            let Some(KvOutput::Get(Some(_))) = ops[read].output else {
                return None;
            };
            let key = ops[read].input.key();
            let newer = last_put_returned_before(&ops[..read], key, ops[read].call)?;
            let old = last_put_returned_before(&ops[..newer], key, ops[newer].call)?;
            match ops[old].input {
                KvInput::Put { value, .. } => Some((read, value)),
                _ => None,
            }
        });
        let Some((read, old_value)) = stale else {
            panic!("the generated history has no stale-read candidate");
        };
        let mut corrupted = ops.clone();
        corrupted[read].output = Some(KvOutput::Get(Some(old_value)));
        assert_rejected_naming(&corrupted, read, "stale read");
    }

    /// The last put on `key` in `ops` that completed before `limit`.
    fn last_put_returned_before(ops: &[KvOp], key: u64, limit: u64) -> Option<usize> {
        ops.iter().rposition(|op| {
            op.output == Some(KvOutput::Put)
                && op.input.key() == key
                && op.return_time.is_some_and(|t| t < limit)
        })
    }

    /// Assert that `ops` fails on exactly the key of `victim`, which the
    /// report names among the operations that could not go next.
    fn assert_rejected_naming(ops: &[KvOp], victim: usize, what: &str) {
        let started = Instant::now();
        let report = check_kv_history(ops, BUDGET);
        eprintln!(
            "10,000-op history with a {what} (op #{victim}): {:?}",
            started.elapsed()
        );
        assert!(report.has_violation(), "{report}");
        assert!(!report.has_unknown(), "{report}");
        assert_eq!(report.failures.len(), 1, "{report}");
        let failure = &report.failures[0];
        assert_eq!(failure.key, ops[victim].input.key());
        let KvFailureKind::NotLinearizable { candidates, .. } = &failure.kind else {
            panic!("expected a violation: {report}");
        };
        assert!(
            candidates.iter().any(|op| op.index == victim),
            "op #{victim} should be named: {report}"
        );
        assert!(report.to_string().contains(&format!("op #{victim} ")));
    }

    // --- 6. budget exhaustion -------------------------------------------

    #[test]
    fn exhausted_budget_is_unknown() {
        let ops = generate_history(7, 200, 5, 1);
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
        assert_eq!(
            check_operations(&KvRegisterModel, &ops, 10),
            CheckResult::Unknown
        );

        let report = check_kv_history(&ops, 10);
        assert!(!report.is_ok());
        assert!(report.has_unknown() && !report.has_violation(), "{report}");
        let text = report.to_string();
        assert!(text.contains("key 0: UNDECIDED"), "{text}");
        assert!(!text.contains("NOT LINEARIZABLE"), "{text}");
    }

    // --- cross-checks ---------------------------------------------------

    /// A model with its unknown-outcome guarantee weakened to at most `cap`,
    /// to exercise every search path on the same histories.
    struct Capped<M> {
        model: M,
        cap: UnknownOutcome,
    }

    impl<M: Model> Model for Capped<M> {
        type State = M::State;
        type Input = M::Input;
        type Output = M::Output;

        fn init(&self) -> M::State {
            self.model.init()
        }

        fn step(
            &self,
            state: &M::State,
            input: &M::Input,
            output: Option<&M::Output>,
        ) -> Option<M::State> {
            self.model.step(state, input, output)
        }

        fn unknown_outcome(&self, input: &M::Input) -> UnknownOutcome {
            let strength = |g: UnknownOutcome| match g {
                UnknownOutcome::MayBeIllegal => 0,
                UnknownOutcome::AlwaysLegal => 1,
                UnknownOutcome::BlindWrite => 2,
            };
            let own = self.model.unknown_outcome(input);
            if strength(own) <= strength(self.cap) {
                own
            } else {
                self.cap
            }
        }
    }

    const ALL_GUARANTEES: [UnknownOutcome; 3] = [
        UnknownOutcome::BlindWrite,
        UnknownOutcome::AlwaysLegal,
        UnknownOutcome::MayBeIllegal,
    ];

    /// Check `ops` with every level of unknown-outcome guarantee, asserting
    /// they agree, and return the verdict.
    fn check_all_ways(ops: &[KvOp]) -> bool {
        let verdicts: Vec<CheckResult> = ALL_GUARANTEES
            .iter()
            .map(|&cap| {
                let model = Capped {
                    model: KvRegisterModel,
                    cap,
                };
                check_operations(&model, ops, BUDGET)
            })
            .collect();
        assert!(
            verdicts.iter().all(|v| !matches!(v, CheckResult::Unknown)),
            "{verdicts:?}"
        );
        let linearizable = verdicts[0].is_linearizable();
        assert!(
            verdicts.iter().all(|v| v.is_linearizable() == linearizable),
            "search paths disagree on {ops:#?}: {verdicts:?}"
        );
        linearizable
    }

    /// Try every order that respects real time (exponential; tiny inputs).
    fn brute_force(ops: &[KvOp]) -> bool {
        fn effective_return(op: &KvOp) -> u64 {
            match (op.return_time, op.output) {
                (Some(t), Some(_)) => t.max(op.call),
                _ => u64::MAX,
            }
        }

        fn extend(ops: &[KvOp], placed: &mut Vec<bool>, state: Option<u64>) -> bool {
            if placed.iter().all(|&p| p) {
                return true;
            }
            for i in 0..ops.len() {
                if placed[i] {
                    continue;
                }
                let must_wait = (0..ops.len())
                    .any(|j| !placed[j] && j != i && effective_return(&ops[j]) < ops[i].call);
                if must_wait {
                    continue;
                }
                let output = ops[i].return_time.and(ops[i].output.as_ref());
                let Some(next) = KvRegisterModel.step(&state, &ops[i].input, output) else {
                    continue;
                };
                placed[i] = true;
                let ok = extend(ops, placed, next);
                placed[i] = false;
                if ok {
                    return true;
                }
            }
            false
        }

        extend(ops, &mut vec![false; ops.len()], None)
    }

    fn random_small_history(rng: &mut Rng) -> Vec<KvOp> {
        let n = 1 + rng.below(7) as usize;
        (0..n)
            .map(|i| {
                let call = rng.below(20);
                let ret = call + rng.below(10);
                let input = match rng.below(3) {
                    0 => KvInput::Get { key: 0 },
                    1 => KvInput::Put {
                        key: 0,
                        value: rng.below(3),
                    },
                    _ => KvInput::Cas {
                        key: 0,
                        expected: rng.below(3),
                        new: rng.below(3),
                    },
                };
                let output = match input {
                    KvInput::Get { .. } => match rng.below(5) {
                        0 => None,
                        1 => Some(KvOutput::Get(None)),
                        v => Some(KvOutput::Get(Some(v - 2))),
                    },
                    KvInput::Put { .. } => Some(KvOutput::Put),
                    KvInput::Cas { .. } => Some(KvOutput::Cas(rng.percent(50))),
                };
                let (output, return_time) = match rng.below(6) {
                    0 => (None, None),
                    1 => (None, Some(ret)),
                    _ => (output, Some(ret)),
                };
                Operation {
                    client_id: i as u64,
                    input,
                    call,
                    output,
                    return_time,
                }
            })
            .collect()
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let mut rng = Rng(42);
        let (mut accepted, mut rejected) = (0, 0);
        for round in 0..3_000 {
            let ops = random_small_history(&mut rng);
            let expected = brute_force(&ops);
            assert_eq!(check_all_ways(&ops), expected, "round {round}: {ops:#?}");
            if expected {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(accepted > 300 && rejected > 300, "{accepted} / {rejected}");
    }

    #[test]
    fn many_unobserved_timeouts_stay_cheap() {
        // Twenty writes that may or may not have happened, then a violation:
        // without pruning the search would visit ~2^20 subsets.
        let mut ops: Vec<KvOp> = (0..20)
            .map(|i| {
                timed_out(
                    i,
                    KvInput::Put {
                        key: 0,
                        value: 100 + i,
                    },
                    i,
                )
            })
            .collect();
        ops.push(put(30, 0, 1, 30, 40));
        ops.push(get(31, 0, Some(1), 50, 60));
        ops.push(get(31, 0, Some(2), 70, 80));
        assert_eq!(
            check_operations(&KvRegisterModel, &ops, 200_000),
            CheckResult::NotLinearizable {
                longest_prefix: vec![20, 21],
                blocking_op: 22,
                candidates: (0..20).chain([22]).collect(),
            }
        );
    }

    #[test]
    fn op_set_tracks_its_water_marks() {
        let mut rng = Rng(9);
        let deferrable: Vec<bool> = (0..300).map(|_| rng.percent(20)).collect();
        let mut set = OpSet::new(&deferrable);
        let mut members = vec![false; deferrable.len()];
        let mut memo = Memo::new();
        for round in 0..20_000 {
            // Favour low ids so that `lo` actually moves.
            let id = (rng.below(300) * rng.below(300) / 300) as usize;
            set.toggle(id);
            members[id] = !members[id];

            assert!(set.lo <= set.end && set.end <= set.required_words);
            assert!((0..set.lo).all(|w| set.is_full(w)), "round {round}");
            assert!(set.lo == set.required_words || !set.is_full(set.lo));
            assert!((set.end..set.required_words).all(|w| set.bits[w] == 0));
            let hash = members
                .iter()
                .enumerate()
                .filter(|&(_, &m)| m)
                .fold(0, |h, (i, _)| h ^ set.zobrist[i]);
            assert_eq!(set.hash, hash);
            assert!((0..300).all(|i| set.contains(i) == members[i]));

            // The memo recognises the set, and the set minus a deferrable
            // member, but not the set with that member toggled back in.
            let idx = match memo.find(set.hash, &set, None, &()) {
                Some(idx) => idx,
                None => memo.insert(set.hash, &set, ()),
            };
            assert!(memo.holds(idx, &set, None));
            if let Some(d) = (0..300).find(|&i| deferrable[i] && members[i]) {
                assert!(!memo.holds(idx, &set, Some(d)));
                set.toggle(d);
                let without = memo.insert(set.hash, &set, ());
                set.toggle(d);
                assert_eq!(
                    memo.find(set.hash_without(d), &set, Some(d), &()),
                    Some(without)
                );
            }
        }
    }

    // --- a different model ----------------------------------------------

    /// A FIFO queue, to show the checker is not tied to registers.
    struct Queue;

    #[derive(Clone, Debug)]
    enum QueueOp {
        Push(u64),
        Pop,
    }

    impl Model for Queue {
        type State = std::collections::VecDeque<u64>;
        type Input = QueueOp;
        type Output = Option<u64>;

        fn init(&self) -> Self::State {
            Self::State::new()
        }

        fn step(
            &self,
            state: &Self::State,
            input: &QueueOp,
            output: Option<&Option<u64>>,
        ) -> Option<Self::State> {
            let mut next = state.clone();
            match input {
                QueueOp::Push(v) => next.push_back(*v),
                QueueOp::Pop => {
                    let popped = next.pop_front();
                    if output.is_some_and(|o| *o != popped) {
                        return None;
                    }
                }
            }
            Some(next)
        }
    }

    fn queue_op(
        input: QueueOp,
        output: Option<u64>,
        call: u64,
        ret: u64,
    ) -> Operation<QueueOp, Option<u64>> {
        Operation {
            client_id: 0,
            input,
            call,
            output: Some(output),
            return_time: Some(ret),
        }
    }

    #[test]
    fn works_with_other_models() {
        let concurrent_pushes = vec![
            queue_op(QueueOp::Push(1), None, 0, 10),
            queue_op(QueueOp::Push(2), None, 0, 10),
            queue_op(QueueOp::Pop, Some(2), 20, 30),
            queue_op(QueueOp::Pop, Some(1), 40, 50),
        ];
        assert!(check_operations(&Queue, &concurrent_pushes, BUDGET).is_linearizable());
        let sequential_pushes = vec![
            queue_op(QueueOp::Push(1), None, 0, 10),
            queue_op(QueueOp::Push(2), None, 11, 20),
            queue_op(QueueOp::Pop, Some(2), 21, 30),
            queue_op(QueueOp::Pop, Some(1), 31, 40),
        ];
        assert!(matches!(
            check_operations(&Queue, &sequential_pushes, BUDGET),
            CheckResult::NotLinearizable { blocking_op: 2, .. }
        ));
    }

    #[test]
    fn output_of_the_wrong_kind_is_rejected_and_explained() {
        let mut garbled = put(1, 1, 5, 0, 10);
        garbled.output = Some(KvOutput::Cas(true));
        let report = check_kv_history(&[garbled], BUDGET);
        assert!(report.has_violation(), "{report}");
        let text = report.to_string();
        assert!(
            text.contains("its output does not match the kind of request"),
            "{text}"
        );
    }

    #[test]
    fn malformed_intervals_do_not_panic() {
        // A return before the call counts as returning at the call.
        let ops = vec![put(0, 1, 1, 10, 5), get(1, 1, Some(1), 11, 12)];
        assert_eq!(single_key(&ops), CheckResult::Linearizable);
        assert_eq!(
            check_operations(&KvRegisterModel, &[], 0),
            CheckResult::Linearizable
        );
    }
}
