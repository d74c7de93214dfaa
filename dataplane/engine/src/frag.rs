//! Virtual reassembly: the first fragment decides, later fragments follow its verdict.
//!
//! Nothing is reassembled. A small fixed table, keyed by (source, destination, protocol,
//! fragment id), remembers per datagram the first fragment's verdict and the byte ranges seen.
//! - The first fragment (offset 0) carries the whole L4 header (the parser rejects a tiny first
//!   fragment), so it goes through the normal flow path; its verdict is stored.
//! - A later fragment takes the stored verdict. If its range overlaps any range already seen
//!   (exact duplicates included, RFC 5722 for IPv6), the datagram is poisoned: this fragment and
//!   every later one drop as `fragment_overlap`, held ones too.
//! - A later fragment that arrives before the first is *held*: its bytes are copied into one of
//!   `frag_hold_slots` pre-allocated slots of `frag_hold_frame_bytes` (the caller owns its frame
//!   buffers, so holding means copying) and its verdict is [`crate::Verdict::Held`]. When the
//!   first fragment decides, held fragments that may pass are queued for
//!   [`crate::Worker::drain_released`]; denied ones are counted as drops with the first
//!   fragment's reason. No free slot, or a frame too long for one, drops it as
//!   `fragment_no_first`, as does expiry (`frag_timeout_ns`) before the first fragment came.
//! - An entry is freed when its ranges cover the whole datagram (the last fragment fixes its
//!   length) or when it expires. A full tracker drops a later fragment as `fragment_limit`;
//!   a datagram of more than [`MAX_RANGES`] disjoint pieces is poisoned as `fragment_limit`.
//!
//! Counting: a held frame is counted in `packets` when it arrives and in its verdict counter
//! when it is released, dropped or expires.

use crate::counters::CountersSnapshot;
use crate::flow::{addr_words, fold_mul};
use crate::{DropReason, EngineConfig, Verdict};
use bulkhead_wire::FragInfo;
use hashbrown::HashTable;
use std::net::IpAddr;

/// Disjoint byte ranges remembered per datagram (in-order fragments coalesce into one).
pub const MAX_RANGES: usize = 6;
const NO_ENTRY: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    src: [u64; 2],
    dst: [u64; 2],
    id: u32,
    proto: u8,
    v6: bool,
}

impl FragKey {
    pub fn new(src: IpAddr, dst: IpAddr, proto: u8, id: u32) -> Self {
        let (s, v6) = addr_words(src);
        let (d, _) = addr_words(dst);
        Self { src: s, dst: d, id, proto, v6 }
    }

    fn hash(&self, seed: u64) -> u64 {
        let h1 = fold_mul(self.src[0] ^ seed, self.src[1] ^ 0x9e37_79b9_7f4a_7c15);
        let h2 = fold_mul(self.dst[0] ^ u64::from(self.id), self.dst[1] ^ 0xc2b2_ae3d_27d4_eb4f);
        fold_mul(h1 ^ (u64::from(self.proto) << 1) ^ u64::from(self.v6), h2 ^ seed)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Free,
    /// Later fragments seen, first not yet.
    Pending,
    Decided(Verdict),
    Poisoned(DropReason),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: FragKey,
    state: State,
    expires: u64,
    /// Datagram length, once the last fragment (M = 0) has been seen.
    total: Option<u32>,
    ranges: [(u32, u32); MAX_RANGES],
    nranges: u8,
    held: u8,
}

impl Entry {
    const FREE: Entry = Entry {
        key: FragKey { src: [0; 2], dst: [0; 2], id: 0, proto: 0, v6: false },
        state: State::Free,
        expires: 0,
        total: None,
        ranges: [(0, 0); MAX_RANGES],
        nranges: 0,
        held: 0,
    };

    /// Adds `[start, end)`. `Err` when it overlaps a known range or there are too many pieces.
    fn add_range(&mut self, start: u32, end: u32) -> Result<(), DropReason> {
        let n = self.nranges as usize;
        if start >= end {
            return Ok(()); // an empty fragment covers nothing
        }
        if self.ranges[..n].iter().any(|&(s, e)| start < e && s < end) {
            return Err(DropReason::FragmentOverlap);
        }
        let (mut s, mut e) = (start, end);
        // Coalesce with touching neighbours.
        let mut kept = 0;
        for i in 0..n {
            let (rs, re) = self.ranges[i];
            if re == s {
                s = rs;
            } else if rs == e {
                e = re;
            } else {
                self.ranges[kept] = (rs, re);
                kept += 1;
            }
        }
        if kept == MAX_RANGES {
            return Err(DropReason::FragmentLimit);
        }
        self.ranges[kept] = (s, e);
        self.nranges = (kept + 1) as u8;
        Ok(())
    }

    fn complete(&self) -> bool {
        self.nranges == 1 && self.ranges[0].0 == 0 && self.total == Some(self.ranges[0].1)
    }
}

/// The fragment tracker and hold buffer of one worker.
#[derive(Debug)]
pub(crate) struct FragTable {
    entries: Vec<Entry>,
    free: Vec<u32>,
    index: HashTable<u32>,
    seed: u64,
    timeout: u64,
    cursor: usize,
    // Hold slots.
    hold_bytes: usize,
    hold_buf: Vec<u8>,
    hold_len: Vec<u32>,
    hold_entry: Vec<u32>,
    hold_free: Vec<u32>,
    released: Vec<(u32, Verdict)>,
}

impl FragTable {
    pub fn new(cfg: &EngineConfig, seed: u64) -> Self {
        let n = cfg.frag_slots.max(1);
        let holds = cfg.frag_hold_slots;
        let hold_bytes = cfg.frag_hold_frame_bytes as usize;
        Self {
            entries: vec![Entry::FREE; n as usize],
            free: (0..n).rev().collect(),
            // Twice the entries we ever store: hashbrown then only ever rehashes in place
            // (tombstone cleanup), never reallocates.
            index: HashTable::with_capacity(2 * n as usize),
            seed,
            timeout: cfg.frag_timeout_ns,
            cursor: 0,
            hold_bytes,
            hold_buf: vec![0; hold_bytes * holds as usize],
            hold_len: vec![0; holds as usize],
            hold_entry: vec![NO_ENTRY; holds as usize],
            hold_free: (0..holds).rev().collect(),
            released: Vec::with_capacity(holds as usize),
        }
    }

    fn find(&self, key: &FragKey) -> Option<u32> {
        let h = key.hash(self.seed);
        let entries = &self.entries;
        self.index.find(h, |&i| entries.get(i as usize).is_some_and(|e| e.key == *key)).copied()
    }

    fn create(&mut self, now: u64, key: FragKey, c: &mut CountersSnapshot) -> Option<u32> {
        if self.free.is_empty() {
            self.expire_all(now, c);
        }
        let i = self.free.pop()?;
        let e = &mut self.entries[i as usize];
        *e = Entry { key, state: State::Pending, expires: now.saturating_add(self.timeout), ..Entry::FREE };
        let h = key.hash(self.seed);
        let (entries, seed) = (&self.entries, self.seed);
        self.index.insert_unique(h, i, |&j| entries.get(j as usize).map_or(0, |e| e.key.hash(seed)));
        Some(i)
    }

    fn release_entry(&mut self, i: u32) {
        let Some(e) = self.entries.get_mut(i as usize) else { return };
        let h = e.key.hash(self.seed);
        e.state = State::Free;
        if let Ok(ent) = self.index.find_entry(h, |&j| j == i) {
            ent.remove();
        }
        self.free.push(i);
    }

    /// Frees the hold slots of entry `i`, queueing them for release when `v` forwards, else
    /// counting them as drops for `v`'s reason.
    fn settle_held(&mut self, i: u32, v: Verdict, c: &mut CountersSnapshot) {
        if self.entries.get(i as usize).is_none_or(|e| e.held == 0) {
            return;
        }
        for s in 0..self.hold_entry.len() {
            if self.hold_entry[s] != i {
                continue;
            }
            if v.forwards() {
                // The slot stays occupied until drained; it no longer belongs to an entry.
                self.hold_entry[s] = NO_ENTRY - 1;
                self.released.push((s as u32, v));
            } else {
                self.hold_entry[s] = NO_ENTRY;
                self.hold_free.push(s as u32);
                let r = match v {
                    Verdict::Drop(r) => r,
                    _ => DropReason::FragmentNoFirst,
                };
                c.drops[r.index()] += 1;
            }
        }
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.held = 0;
        }
    }

    /// The first fragment of a datagram was judged `v`. Returns the verdict to apply to it
    /// (`v`, or a drop when it overlaps fragments already seen).
    pub fn first(
        &mut self,
        now: u64,
        key: FragKey,
        frag: &FragInfo,
        v: Verdict,
        c: &mut CountersSnapshot,
    ) -> Verdict {
        let i = match self.find(&key) {
            Some(i) => i,
            None => match self.create(now, key, c) {
                Some(i) => i,
                // Tracker full: the first fragment keeps its own verdict; later ones will drop.
                None => return v,
            },
        };
        let e = &mut self.entries[i as usize];
        match e.state {
            State::Poisoned(r) => return Verdict::Drop(r),
            State::Decided(_) => {
                // A second first fragment: a duplicate, i.e. an overlap.
                e.state = State::Poisoned(DropReason::FragmentOverlap);
                return Verdict::Drop(DropReason::FragmentOverlap);
            }
            State::Pending | State::Free => {}
        }
        if let Err(r) = e.add_range(0, frag.payload_len) {
            e.state = State::Poisoned(r);
            self.settle_held(i, Verdict::Drop(r), c);
            return Verdict::Drop(r);
        }
        if !frag.more {
            e.total = Some(frag.payload_len);
        }
        e.state = State::Decided(v);
        let done = e.complete();
        self.settle_held(i, v, c);
        if done {
            self.release_entry(i);
        }
        v
    }

    /// A non-first fragment. Returns its verdict (`Held` when copied into a hold slot).
    pub fn later(
        &mut self,
        now: u64,
        key: FragKey,
        frag: &FragInfo,
        frame: &[u8],
        c: &mut CountersSnapshot,
    ) -> Verdict {
        let i = match self.find(&key) {
            Some(i) => i,
            None => match self.create(now, key, c) {
                Some(i) => i,
                None => return Verdict::Drop(DropReason::FragmentLimit),
            },
        };
        let e = &mut self.entries[i as usize];
        if let State::Poisoned(r) = e.state {
            return Verdict::Drop(r);
        }
        let end = frag.offset.saturating_add(frag.payload_len);
        if let Err(r) = e.add_range(frag.offset, end) {
            e.state = State::Poisoned(r);
            self.settle_held(i, Verdict::Drop(r), c);
            return Verdict::Drop(r);
        }
        if !frag.more {
            e.total = Some(end);
        }
        match e.state {
            State::Decided(v) => {
                if e.complete() {
                    self.release_entry(i);
                }
                v
            }
            _ => self.hold(i, frame),
        }
    }

    fn hold(&mut self, i: u32, frame: &[u8]) -> Verdict {
        if frame.len() > self.hold_bytes {
            return Verdict::Drop(DropReason::FragmentNoFirst);
        }
        let Some(s) = self.hold_free.pop() else { return Verdict::Drop(DropReason::FragmentNoFirst) };
        let off = s as usize * self.hold_bytes;
        if let Some(dst) = self.hold_buf.get_mut(off..off + frame.len()) {
            dst.copy_from_slice(frame);
        }
        self.hold_len[s as usize] = frame.len() as u32;
        self.hold_entry[s as usize] = i;
        if let Some(e) = self.entries.get_mut(i as usize) {
            e.held = e.held.saturating_add(1);
        }
        Verdict::Held
    }

    fn expire_entry(&mut self, i: u32, c: &mut CountersSnapshot) {
        self.settle_held(i, Verdict::Drop(DropReason::FragmentNoFirst), c);
        self.release_entry(i);
    }

    /// Incremental expiry: checks `n` entries from the cursor.
    pub fn expire_some(&mut self, now: u64, n: usize, c: &mut CountersSnapshot) {
        if self.free.len() == self.entries.len() {
            return;
        }
        for _ in 0..n {
            self.cursor = (self.cursor + 1) % self.entries.len();
            let e = &self.entries[self.cursor];
            if e.state != State::Free && now > e.expires {
                self.expire_entry(self.cursor as u32, c);
            }
        }
    }

    fn expire_all(&mut self, now: u64, c: &mut CountersSnapshot) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.state != State::Free && now > e.expires {
                self.expire_entry(i as u32, c);
            }
        }
    }

    /// Hold slots in use (waiting for a first fragment or for draining).
    pub fn held(&self) -> usize {
        self.hold_entry.len() - self.hold_free.len()
    }

    pub fn released_len(&self) -> usize {
        self.released.len()
    }

    /// Hands released frames to `f` and frees their slots.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8], Verdict)) -> usize {
        let n = self.released.len();
        for &(s, v) in &self.released {
            let off = s as usize * self.hold_bytes;
            let len = self.hold_len[s as usize] as usize;
            if let Some(bytes) = self.hold_buf.get(off..off + len) {
                f(bytes, v);
            }
            self.hold_entry[s as usize] = NO_ENTRY;
            self.hold_free.push(s);
        }
        self.released.clear();
        n
    }
}
