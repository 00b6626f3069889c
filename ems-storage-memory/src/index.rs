//! An index keyed by time-ordered ids.
//!
//! Bookings, payments and tickets get UUID v7 ids, which increase with the
//! millisecond and, within one, among the ids one thread mints
//! ([`ems_core::id::mint`]), and the store indexes each one as it is made
//! (and keeps it: they are never removed).
//! A hash table puts every new entry at a random place: once the table
//! outgrows the processor's caches, each insert misses them (and a growing
//! table moves every entry again at each doubling). [`IdIndex`] keeps each
//! shard's entries sorted, in chunks: an id above every id of its shard (nearly
//! every insert) is appended right after the previous one, in memory that is
//! already in cache. An id overtaken by a newer one (concurrent inserts, or
//! another thread's ids of the same millisecond) takes its place among the
//! last chunk's entries, near their end; one older
//! than every id of the last chunk (minted long ago, or by another process)
//! goes to a hash map beside the sorted entries.

use ems_core::id::{BookingId, HoldId, PaymentId, TicketId};
use parking_lot::RwLock;

use crate::state::HashMap;

/// A key of an [`IdIndex`]: an id, ordered as the number its bytes spell
/// (big-endian, as UUIDs order), compared as one 128-bit number instead of
/// sixteen bytes.
pub(crate) trait Id: Copy {
    /// The id as a number.
    fn bits(self) -> u128;
}

macro_rules! uuid_ids {
    ($($id:ty),*) => {$(
        impl Id for $id {
            fn bits(self) -> u128 {
                self.0.as_u128()
            }
        }
    )*};
}
uuid_ids!(BookingId, HoldId, PaymentId, TicketId);

/// Shards per index: concurrent inserts of different shards do not contend.
const SHARDS: usize = if cfg!(test) { 2 } else { 16 };

/// Entries per chunk of a shard's sorted entries (a handful under test, so
/// the tests, the conformance suite's included, cross chunks).
const CHUNK: usize = if cfg!(test) { 4 } else { 2048 };

/// A concurrent map from ids (time-ordered, see the module docs) to small
/// copyable values.
pub(crate) struct IdIndex<K, V> {
    shards: Box<[Padded<RwLock<Run<V>>>]>,
    key: std::marker::PhantomData<fn(K)>,
}

/// A shard on cache lines of its own.
#[repr(align(128))]
struct Padded<T>(T);

/// A key as it is kept: [`Id::bits`] in four words, most significant
/// first, so keys order as the numbers do and an entry is aligned to 4 bytes
/// (a `u128` would align it to 16, padding most entries).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key([u32; 4]);

impl Key {
    /// The key of `id`.
    pub(crate) fn id(id: impl Id) -> Self {
        Self::of(id.bits())
    }

    fn of(bits: u128) -> Self {
        Key([
            (bits >> 96) as u32,
            (bits >> 64) as u32,
            (bits >> 32) as u32,
            bits as u32,
        ])
    }
}

/// One shard's entries, by the keys' [`Id::bits`].
struct Run<V> {
    /// Sorted by key across chunks; each chunk is never empty and holds at
    /// most [`CHUNK`] entries.
    chunks: Vec<Vec<(Key, V)>>,
    /// Entries whose key was below every key of the last chunk when
    /// inserted (and not among the sorted ones). A key is in the sorted
    /// entries or here, never both.
    late: HashMap<u128, V>,
}

impl<K, V> Default for IdIndex<K, V> {
    fn default() -> Self {
        Self {
            key: std::marker::PhantomData,
            shards: (0..SHARDS)
                .map(|_| {
                    Padded(RwLock::new(Run {
                        chunks: Vec::new(),
                        late: HashMap::default(),
                    }))
                })
                .collect(),
        }
    }
}

impl<K: Id, V: Copy> IdIndex<K, V> {
    fn shard(&self, key: u128) -> &RwLock<Run<V>> {
        // Mixed, so ids alike in their low bits still spread over the shards.
        let mixed = ((key as u64) ^ ((key >> 64) as u64)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        &self.shards[(mixed >> 32) as usize % SHARDS].0
    }

    /// The value of `key`.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let key = key.bits();
        self.shard(key).read().get(key)
    }

    /// Whether `key` has a value.
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`.
    pub(crate) fn insert(&self, key: K, value: V) {
        let key = key.bits();
        self.shard(key).write().put(key, value);
    }

    /// Sets the value of `key` unless it has one: `Err` with that one then.
    pub(crate) fn insert_new(&self, key: K, value: V) -> Result<(), V> {
        let key = key.bits();
        let mut run = self.shard(key).write();
        match run.get(key) {
            Some(existing) => Err(existing),
            None => {
                run.put(key, value);
                Ok(())
            }
        }
    }
}

impl<V: Copy> Run<V> {
    /// Where `key` is among the sorted entries: its chunk and position.
    fn find(&self, key: u128) -> Option<(usize, usize)> {
        // The last chunk whose first key is not above `key`: most lookups are
        // of recent ids, so the last chunk is tried first.
        let last = self.chunks.len().checked_sub(1)?;
        let key = Key::of(key);
        let c = if self.chunks[last][0].0 <= key {
            last
        } else {
            self.chunks[..last]
                .partition_point(|c| c[0].0 <= key)
                .checked_sub(1)?
        };
        let i = self.chunks[c].binary_search_by(|(k, _)| k.cmp(&key)).ok()?;
        Some((c, i))
    }

    /// Whether `key` is above every key this shard has (the last chunk's
    /// last: the hash map's are below it), as a new id is.
    fn is_new(&self, key: Key) -> bool {
        self.chunks
            .last()
            .and_then(|c| c.last())
            .is_none_or(|(high, _)| key > *high)
    }

    fn get(&self, key: u128) -> Option<V> {
        if self.is_new(Key::of(key)) {
            // A new id: not here.
            return None;
        }
        if let Some((c, i)) = self.find(key) {
            return Some(self.chunks[c][i].1);
        }
        if self.late.is_empty() {
            return None;
        }
        self.late.get(&key).copied()
    }

    /// Sets `key` to `value`.
    fn put(&mut self, key: u128, value: V) {
        let at = Key::of(key);
        if self.is_new(at) {
            // New, and in order.
            let entry = (at, value);
            match self.chunks.last_mut() {
                Some(c) if c.len() < CHUNK => c.push(entry),
                _ => {
                    // A shard's first chunk grows as it fills (a store with a
                    // handful of records keeps a handful); later ones are
                    // made whole, so appending never copies them.
                    let first = self.chunks.is_empty();
                    let mut chunk = Vec::with_capacity(if first { 8.min(CHUNK) } else { CHUNK });
                    chunk.push(entry);
                    self.chunks.push(chunk);
                }
            }
            return;
        }
        if let Some(last) = self.chunks.last_mut().filter(|c| c[0].0 <= at) {
            // Overtaken by a newer id, as concurrent inserts are: into its
            // place among the last chunk's entries, near their end.
            match last.binary_search_by(|(k, _)| k.cmp(&at)) {
                Ok(i) => last[i].1 = value,
                Err(i) if last.len() < CHUNK => last.insert(i, (at, value)),
                Err(i) => {
                    // Full: the key and what follows it start the next chunk
                    // (growing this one would double its allocation).
                    let mut chunk = Vec::with_capacity(CHUNK);
                    chunk.push((at, value));
                    chunk.extend(last.drain(i..));
                    self.chunks.push(chunk);
                }
            }
            return;
        }
        match self.find(key) {
            Some((c, i)) => self.chunks[c][i].1 = value,
            None => {
                self.late.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Id for u32 {
        fn bits(self) -> u128 {
            u128::from(self)
        }
    }

    impl Id for u64 {
        fn bits(self) -> u128 {
            u128::from(self)
        }
    }
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        InsertNew(u16, u32),
        Get(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys mostly increasing (as ids are minted), some from anywhere.
        prop_oneof![
            (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::InsertNew(k, v)),
            any::<u16>().prop_map(Op::Get),
        ]
    }

    proptest! {
        /// The index answers as a map does, whatever order keys come in.
        #[test]
        fn behaves_as_a_map(
            ops in proptest::collection::vec(op(), 1..400),
            ascending in any::<bool>(),
        ) {
            let index: IdIndex<u32, u32> = IdIndex::default();
            let mut model = BTreeMap::new();
            let mut next = 0u32;
            // With `ascending`, every key is offset by a counter so most
            // inserts append; otherwise keys come in any order.
            let mut key = |k: u16| -> u32 {
                if ascending {
                    next += 1;
                    next.saturating_mul(4).saturating_add(u32::from(k % 8))
                } else {
                    u32::from(k % 512)
                }
            };
            let mut seen = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let k = key(k);
                        seen.push(k);
                        index.insert(k, v);
                        model.insert(k, v);
                    }
                    Op::InsertNew(k, v) => {
                        let k = key(k);
                        seen.push(k);
                        let expected = match model.get(&k) {
                            Some(&e) => Err(e),
                            None => {
                                model.insert(k, v);
                                Ok(())
                            }
                        };
                        prop_assert_eq!(index.insert_new(k, v), expected);
                    }
                    Op::Get(k) => {
                        let k = seen.get(usize::from(k) % seen.len().max(1)).copied().unwrap_or(0);
                        prop_assert_eq!(index.get(&k), model.get(&k).copied());
                        prop_assert_eq!(index.contains_key(&k), model.contains_key(&k));
                    }
                }
            }
            for (k, v) in &model {
                prop_assert_eq!(index.get(k), Some(*v));
            }
        }
    }

    #[test]
    fn racing_inserts_give_each_key_once() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let index: IdIndex<u64, usize> = IdIndex::default();
        let next = AtomicU64::new(0);
        let n = 20_000u64;
        // Keys handed out in order, inserted by threads that overtake each
        // other; every key is claimed by two threads, and one of them wins.
        let won: Vec<Vec<u64>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|t| {
                    let (index, next) = (&index, &next);
                    scope.spawn(move || {
                        let mut won = Vec::new();
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed) / 2;
                            if k >= n {
                                return won;
                            }
                            if index.insert_new(k, t).is_ok() {
                                won.push(k);
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = won.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>());
        for (t, keys) in won.iter().enumerate() {
            for k in keys {
                assert_eq!(index.get(k), Some(t));
            }
        }
    }

    #[test]
    fn ascending_keys_fill_chunks_and_older_ones_are_found() {
        let index: IdIndex<u64, u64> = IdIndex::default();
        let n = (CHUNK * SHARDS * 3) as u64;
        // Even keys in order (as ids are minted), then the odd ones, each
        // older than every key of its shard's last chunk by then.
        for k in (0..n).step_by(2) {
            index.insert(k, k * 10);
        }
        // Every shard's keys arrived in order: nothing went to a late map.
        assert!(index.shards.iter().all(|s| s.0.read().late.is_empty()));
        for k in (1..n).step_by(2) {
            assert_eq!(index.insert_new(k, k * 10), Ok(()));
        }
        for k in 0..n {
            assert_eq!(index.get(&k), Some(k * 10), "{k}");
        }
        assert_eq!(index.insert_new(1, 7), Err(10));
        index.insert(1, 7);
        index.insert(n + 5, 1);
        assert_eq!(index.get(&1), Some(7));
        assert_eq!(index.get(&(n + 5)), Some(1));
        assert_eq!(index.get(&(n + 4)), None);
    }
}
