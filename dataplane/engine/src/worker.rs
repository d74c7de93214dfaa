//! The per-core worker: the batch API and the verdict logic.
//!
//! One [`Worker`] per worker thread; nothing in it is shared except the published counters, the
//! latency recorder and the optional flow-event queue. [`Worker::process_batch`] works in three
//! passes over (chunks of) the batch so that the flow-table cache misses overlap:
//! 1. parse every frame and compute its canonical flow key and hash, then load every home bucket.
//!    Plain IPv4 TCP/UDP frames take the *express lane*: their fields are read at fixed offsets
//!    ([`bulkhead_wire::fast`]) and the full parse is skipped unless the packet turns out not to
//!    belong to an established flow (then it is parsed fully and judged the ordinary way, so
//!    verdicts, state and counters are the same with the lane on or off; `tests/express_lane.rs`
//!    compares both on random traffic). On established traffic it cut the cost per packet by ~40%;
//! 2. find each packet's candidate record by tag and load it;
//! 3. judge each packet in order (the real lookup now hits the cache; the candidate of pass 2 is
//!    taken when it holds the packet's key, so most packets skip the bucket probe).
//!
//! Choices made where DESIGN.md is silent:
//! - TCP flags: the valid combinations are Linux conntrack's (`tcp_valid_flags`), ignoring PSH,
//!   ECE and CWR: SYN, SYN+URG, SYN+ACK, RST, RST+ACK, FIN+ACK, FIN+ACK+URG, ACK, ACK+URG.
//!   Anything else drops as `invalid_tcp_flags` and creates or refreshes no state.
//! - A RST with no flow drops as `invalid_state` (there is nothing to reset, and loose pickup
//!   of a RST would only create state that dies at once).
//! - Loose pickup (not strict): a mid-stream ACK / FIN+ACK / SYN+ACK with no flow is judged as
//!   if its sender opened the connection; allowed, it creates an established (or closing) flow.
//! - RST window: the window scale option is not tracked, so a RST is accepted when its sequence
//!   number is within max(64 KiB, raw window x 128) of the next sequence number the sender was
//!   seen to use; a RST answering a SYN must acknowledge it exactly. A RST outside that is
//!   dropped as `invalid_state` and changes nothing.
//! - A SYN on an established flow passes without changing state (the endpoints sort it out);
//!   a SYN on a TIME_WAIT / closed flow replaces it with a fresh flow, judged anew.
//! - Eviction when full: a handful of random slots are sampled and the best candidate goes:
//!   expired, then half-open / closing TCP, then unreplied pseudo-connections, then idle
//!   (silent for longer than the transitory timeout), oldest first. When every sample is an
//!   active flow the new flow is refused (`table_full`) rather than cutting a live connection.
//! - Hot swap: a flow judged by an older generation is judged again, by its opening tuple, on
//!   its next packet (or the next ICMP error about it). A revoked flow's packet drops as
//!   `revoked`, or `quarantined` when a quarantine is what denies it.
//! - Monitor mode: a would-deny connection creates a flow flagged `would_deny`; its packets
//!   pass as `WouldDeny`, one `WouldDeny` event per flow.

use crate::counters::{CountersSnapshot, WorkerCounters};
use crate::events::{FlowEvent, FlowEventKind, FlowFilter, FlowSummary};
use crate::flow::{fl, st, Cold, Flow, FlowKey, FlowTable, PackedDecision, NONE};
use crate::frag::{FragKey, FragTable};
use crate::latency::LatencyRecorder;
use crate::{DropReason, EngineConfig, Verdict};
use bulkhead_tables::{Decision, FlowQuery, Judgement, Mode, TableSet};
use bulkhead_wire::fast::{parse_ipv4_fast, Ipv4Fast};
use bulkhead_wire::{Malformed, PacketInfo, Parsed, Quoted};
use crossbeam_queue::ArrayQueue;
use std::hash::BuildHasher;
use std::sync::Arc;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;

/// True for the TCP flag combinations a middlebox lets through (see the module docs).
#[inline]
pub fn valid_tcp_flags(flags: u8) -> bool {
    let f = flags & (FIN | SYN | RST | ACK | URG);
    matches!(f, 0x02 | 0x22 | 0x12 | 0x04 | 0x14 | 0x11 | 0x31 | 0x10 | 0x30)
}

#[inline]
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[inline]
fn is_icmp(proto: u8, v6: bool) -> bool {
    (proto == 1 && !v6) || (proto == 58 && v6)
}

/// The TCP fields conntrack reads, from either parser.
#[derive(Clone, Copy, Debug)]
struct Seg {
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    payload_len: u32,
}

impl Seg {
    #[inline]
    fn of_info(info: &PacketInfo) -> Seg {
        Seg {
            flags: info.tcp_flags,
            seq: info.tcp_seq,
            ack: info.tcp_ack,
            window: info.tcp_window,
            payload_len: info.l4_payload_len,
        }
    }

    #[inline]
    fn of_fast(x: &Ipv4Fast) -> Seg {
        Seg {
            flags: x.tcp_flags,
            seq: x.tcp_seq,
            ack: x.tcp_ack,
            window: x.tcp_window,
            payload_len: x.l4_payload_len,
        }
    }
}

/// Per-frame scratch of one batch.
#[derive(Clone, Copy, Debug)]
struct Pre {
    /// The full parse; not filled for an express-lane frame unless it leaves the lane.
    parsed: Result<Parsed, Malformed>,
    /// Express lane: `v4` holds the frame's fields and `parsed` is stale.
    fast: bool,
    v4: Ipv4Fast,
    key: FlowKey,
    hash: u64,
    /// The slot pass 2 found by tag in the home bucket ([`NONE`] if none): a hint that pass 3
    /// confirms by key (earlier packets of the batch may have changed the table since).
    cand: u32,
    from_a: bool,
    keyed: bool,
}

impl Default for Pre {
    fn default() -> Self {
        Self {
            parsed: Err(Malformed::TruncatedEthernet),
            fast: false,
            v4: Ipv4Fast::default(),
            key: FlowKey::default(),
            hash: 0,
            cand: NONE,
            from_a: true,
            keyed: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Expired,
    Evicted,
    Closed,
    Revoked,
}

/// All per-core state. Create one per worker thread with [`Worker::new`].
#[derive(Debug)]
pub struct Worker {
    id: u16,
    cfg: EngineConfig,
    table: FlowTable,
    frag: FragTable,
    pre: Vec<Pre>,
    local: CountersSnapshot,
    counters: Arc<WorkerCounters>,
    latency: Arc<LatencyRecorder>,
    sink: Option<Arc<ArrayQueue<FlowEvent>>>,
    rng: u64,
    sweep_cursor: usize,
    deny_cache: Vec<(u64, u64)>,
    /// The decision behind the packet being judged (set where a policy judgement or a flow's
    /// decision yields its verdict), copied per frame into `decisions` for [`Worker::last_decisions`].
    cur_decision: Option<Decision>,
    decisions: Vec<Option<Decision>>,
    decisions_len: usize,
}

impl Worker {
    /// Allocates every table and scratch buffer up front; nothing allocates afterwards.
    ///
    /// # Panics
    /// When `cfg.flow_capacity` exceeds [`crate::MAX_FLOW_CAPACITY`] (callers validate it first).
    pub fn new(worker_id: u16, cfg: &EngineConfig) -> Worker {
        assert!(
            cfg.flow_capacity <= crate::MAX_FLOW_CAPACITY,
            "flow capacity {} over the limit {}",
            cfg.flow_capacity,
            crate::MAX_FLOW_CAPACITY
        );
        let seed = std::collections::hash_map::RandomState::new().hash_one(worker_id) | 1;
        let mut local =
            CountersSnapshot { flow_capacity: u64::from(cfg.flow_capacity.max(1)), ..Default::default() };
        local.generation = 0;
        let counters = Arc::new(WorkerCounters::new(worker_id));
        counters.publish(&local);
        Worker {
            id: worker_id,
            cfg: cfg.clone(),
            table: FlowTable::new(cfg.flow_capacity, seed),
            frag: FragTable::new(cfg, seed.rotate_left(17)),
            pre: vec![Pre::default(); cfg.max_batch.max(1)],
            local,
            counters,
            latency: Arc::new(LatencyRecorder::new()),
            sink: None,
            rng: seed.rotate_left(31) | 1,
            sweep_cursor: 0,
            deny_cache: vec![(0, 0); cfg.deny_log_slots.max(1).next_power_of_two() as usize],
            cur_decision: None,
            decisions: vec![None; cfg.max_batch.max(1)],
            decisions_len: 0,
        }
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Judges `frames`, writing one verdict per frame into `verdicts[..frames.len()]`, every
    /// packet by `tables`. Frames beyond `verdicts.len()` are not processed. No allocation, no
    /// lock, no panic. Counters are published at the end.
    pub fn process_batch(
        &mut self,
        now_ns: u64,
        tables: &TableSet,
        frames: &[&[u8]],
        verdicts: &mut [Verdict],
    ) {
        let n = frames.len().min(verdicts.len());
        let mb = self.pre.len();
        let mut start = 0;
        while start < n {
            let end = (start + mb).min(n);
            self.chunk(now_ns, tables, &frames[start..end], &mut verdicts[start..end]);
            start = end;
        }
        self.upkeep(now_ns, tables, self.cfg.sweep_per_batch);
    }

    fn upkeep(&mut self, now: u64, tables: &TableSet, sweep: u32) {
        self.sweep(now, tables, sweep);
        self.frag.expire_some(now, 4, &mut self.local);
        self.local.batches += 1;
        self.local.generation = tables.generation;
        self.local.flows_active = self.table.len() as u64;
        self.local.frag_held = self.frag.held() as u64;
        self.counters.publish(&self.local);
    }

    fn chunk(&mut self, now: u64, tables: &TableSet, frames: &[&[u8]], verdicts: &mut [Verdict]) {
        let len = frames.len().min(self.pre.len());
        // Pass 1: parse, key and hash. Plain IPv4 TCP/UDP takes the express lane (fixed offsets,
        // no full parse); everything else, and any express-lane packet that is not on an
        // established flow, goes through the full parser.
        for (p, f) in self.pre.iter_mut().zip(frames.iter()) {
            let fast = if self.cfg.express_lane { parse_ipv4_fast(f) } else { None };
            if let Some(x) = fast {
                let (k, a) = FlowKey::new_v4(x.src, x.sport, x.dst, x.dport, x.proto);
                p.v4 = x;
                p.fast = true;
                p.key = k;
                p.from_a = a;
                p.hash = self.table.hash(&k);
                p.keyed = true;
                self.table.prefetch_bucket(p.hash);
                continue;
            }
            p.fast = false;
            // Written in place, field by field: the parse result is large and copying it (or a
            // whole `Pre`) per packet showed up in instruction counts.
            bulkhead_wire::parse_into(f, &mut p.parsed);
            p.keyed = false;
            if let Ok(Parsed::Ip(info)) = &p.parsed {
                if !info.is_ndp && info.quoted.is_none() && info.frag.is_none_or(|fr| fr.offset == 0) {
                    let (k, a) = FlowKey::new(info.src, info.sport, info.dst, info.dport, info.proto);
                    p.key = k;
                    p.from_a = a;
                    p.hash = self.table.hash(&k);
                    p.keyed = true;
                    self.table.prefetch_bucket(p.hash);
                }
            }
        }
        // Pass 2: find each candidate record by tag in its (by now fetched) home bucket and ask
        // for the record's lines.
        for p in &mut self.pre[..len] {
            if p.keyed {
                let c = self.table.candidate(p.hash);
                p.cand = c;
                if c != NONE {
                    self.table.prefetch_flow(c);
                }
            }
        }
        // Pass 3: judge in order. (The scratch is moved out so that `decide` can borrow both it
        // and the worker; `mem::take` of a Vec swaps in an empty one and allocates nothing.)
        self.decisions_len = len;
        let mut pre = std::mem::take(&mut self.pre);
        for (i, ((p, frame), out)) in
            pre[..len].iter_mut().zip(frames.iter()).zip(verdicts.iter_mut()).enumerate()
        {
            self.cur_decision = None;
            let flen = frame.len() as u64;
            let v = if p.fast {
                // Express lane: an established flow is all it handles; anything else (a new
                // flow, an expired or closed one) leaves the lane through the full parser.
                let seg = Seg::of_fast(&p.v4);
                let tcp = p.v4.proto == 6;
                match self.established(now, tables, tcp, &seg, &p.key, p.hash, p.cand, p.from_a, flen) {
                    Some(v) => v,
                    None => {
                        bulkhead_wire::parse_into(frame, &mut p.parsed);
                        self.decide(now, tables, frame, p)
                    }
                }
            } else {
                // A keyed packet that is not a fragment is an ordinary connection packet: go
                // straight to the flow lookup (what `decide` would do, minus its dispatch).
                match &p.parsed {
                    Ok(Parsed::Ip(info)) if p.keyed && info.frag.is_none() => {
                        self.conn(now, tables, info, &p.key, p.hash, p.cand, p.from_a, flen)
                    }
                    _ => self.decide(now, tables, frame, p),
                }
            };
            *out = v;
            if let Some(d) = self.decisions.get_mut(i) {
                *d = self.cur_decision;
            }
            self.account(now, tables, v);
        }
        self.pre = pre;
        // Counted per chunk rather than per packet (same totals; counters publish per batch).
        self.local.packets += len as u64;
        self.local.bytes += frames[..len].iter().map(|f| f.len() as u64).sum::<u64>();
    }

    #[inline]
    fn account(&mut self, now: u64, tables: &TableSet, v: Verdict) {
        match v {
            Verdict::Pass => self.local.pass += 1,
            Verdict::WouldDeny => self.local.would_deny += 1,
            Verdict::Held => {}
            Verdict::Drop(r) => {
                self.local.drops[r.index()] += 1;
                if r == DropReason::Quarantined
                    && self.local.quarantine_first_drop_generation != tables.generation
                {
                    self.local.quarantine_first_drop_generation = tables.generation;
                    self.local.quarantine_first_drop_ns = now;
                }
            }
        }
    }

    fn decide(&mut self, now: u64, tables: &TableSet, frame: &[u8], p: &Pre) -> Verdict {
        let info = match &p.parsed {
            Err(m) => return Verdict::Drop(DropReason::Malformed(*m)),
            Ok(Parsed::Arp) => return Verdict::Pass,
            Ok(Parsed::OtherEthertype(t)) => {
                return if tables.config.allowed_ethertypes.contains(t) {
                    Verdict::Pass
                } else {
                    Verdict::Drop(DropReason::Ethertype)
                };
            }
            Ok(Parsed::Ip(info)) => info,
        };
        if info.is_ndp {
            return Verdict::Pass;
        }
        match info.frag {
            Some(fr) if fr.offset != 0 => {
                let fk = FragKey::new(info.src, info.dst, info.proto, fr.id);
                self.frag.later(now, fk, &fr, frame, &mut self.local)
            }
            Some(fr) => {
                let v = self.l4(now, tables, info, p, frame.len());
                let fk = FragKey::new(info.src, info.dst, info.proto, fr.id);
                self.frag.first(now, fk, &fr, v, &mut self.local)
            }
            None => self.l4(now, tables, info, p, frame.len()),
        }
    }

    fn l4(&mut self, now: u64, tables: &TableSet, info: &PacketInfo, p: &Pre, len: usize) -> Verdict {
        if let Some(q) = info.quoted {
            return self.icmp_error(now, tables, info, &q);
        }
        if p.keyed {
            return self.conn(now, tables, info, &p.key, p.hash, p.cand, p.from_a, len as u64);
        }
        let (k, a) = FlowKey::new(info.src, info.sport, info.dst, info.dport, info.proto);
        let h = self.table.hash(&k);
        self.conn(now, tables, info, &k, h, NONE, a, len as u64)
    }

    #[allow(clippy::too_many_arguments)] // the packet's pre-computed key travels with it
    #[inline(always)]
    fn conn(
        &mut self,
        now: u64,
        tables: &TableSet,
        info: &PacketInfo,
        key: &FlowKey,
        hash: u64,
        cand: u32,
        from_a: bool,
        len: u64,
    ) -> Verdict {
        let seg = Seg::of_info(info);
        match self.established(now, tables, info.proto == 6, &seg, key, hash, cand, from_a, len) {
            Some(v) => v,
            None => self.open(now, tables, info, *key, hash, from_a, len),
        }
    }

    /// The verdict of a packet on a live flow, or `None` when there is none (and the packet
    /// opens one). Expired flows, and TIME_WAIT / closed ones a new SYN reuses, are removed
    /// first, so a second call for the same packet also returns `None`.
    #[allow(clippy::too_many_arguments)] // as `conn`
    #[inline(always)] // the hot path; a call costs ~35 instructions of register saves here
    fn established(
        &mut self,
        now: u64,
        tables: &TableSet,
        tcp: bool,
        seg: &Seg,
        key: &FlowKey,
        hash: u64,
        cand: u32,
        from_a: bool,
        len: u64,
    ) -> Option<Verdict> {
        if tcp && !valid_tcp_flags(seg.flags) {
            return Some(Verdict::Drop(DropReason::InvalidTcpFlags));
        }
        // The prefetch pass's candidate is the flow's slot when it holds this key (keys are
        // unique in the table); otherwise (tag collision, or the batch changed the table) probe.
        let s = if self.table.holds(cand, key) { cand } else { self.table.find(key, hash)? };
        if self.table.get(s).is_some_and(|f| f.expired(now, &tables.config)) {
            self.remove_flow(now, tables, s, Removal::Expired);
            return None;
        }
        if tcp
            && seg.flags & (SYN | ACK) == SYN
            && self
                .table
                .get(s)
                .is_some_and(|f| f.state == st::TIME_WAIT || f.state == st::CLOSED || f.revoked())
        {
            // A new connection on the tuple (a SYN names its true opener): judged afresh.
            self.remove_flow(now, tables, s, Removal::Closed);
            return None;
        }
        if self.table.get(s).is_some_and(|f| f.generation != tables.generation) {
            if let Some(v) = self.revalidate(now, tables, s) {
                return Some(v);
            }
        }
        let Some(f) = self.table.get_mut(s) else { return Some(Verdict::Drop(DropReason::InvalidState)) };
        self.cur_decision = Some(f.decision.decision());
        if f.revoked() {
            // Cut by this generation: the tombstone drops both directions (no loose pickup).
            f.last_seen = now;
            return Some(Verdict::Drop(revoked_reason(f.decision.decision())));
        }
        let from_opener = from_a == f.opener_is_a();
        if tcp {
            if let Err(r) = tcp_track(f, usize::from(!from_a), from_opener, seg) {
                return Some(Verdict::Drop(r));
            }
        }
        if !from_opener {
            f.flags |= fl::REPLIED;
        }
        f.last_seen = now;
        f.packets = f.packets.wrapping_add(1);
        f.bytes = f.bytes.wrapping_add(len);
        Some(if f.would_deny() { Verdict::WouldDeny } else { Verdict::Pass })
    }

    /// Judges a flow again when the table set changed since it was judged. `Some(drop)` when the
    /// flow is (still) revoked: it stays as a tombstone (see `fl::REVOKED`).
    fn revalidate(&mut self, now: u64, tables: &TableSet, s: u32) -> Option<Verdict> {
        let f = self.table.get(s)?;
        if f.generation == tables.generation {
            return None;
        }
        let was_revoked = f.revoked();
        let j = tables.judge(&opener_query(&self.table.key_of(s), f, &self.table.cold(s)));
        self.cur_decision = Some(j.decision);
        if let Some(c) = self.table.cold_mut(s) {
            c.src_id = j.src_identity;
            c.dst_id = j.dst_identity;
        }
        let f = self.table.get_mut(s)?;
        f.generation = tables.generation;
        f.decision = PackedDecision::pack(j.decision, j.mode);
        if j.decision.allows() {
            f.flags &= !(fl::WOULD_DENY | fl::REVOKED);
            return None;
        }
        if j.mode == Mode::Monitor {
            let was = f.would_deny();
            f.flags = (f.flags | fl::WOULD_DENY) & !fl::REVOKED;
            if !was {
                let ev =
                    self.flow_event(now, FlowEventKind::WouldDeny, Verdict::WouldDeny, s, tables.generation);
                self.emit(ev);
            }
            return None;
        }
        let reason = revoked_reason(j.decision);
        f.flags |= fl::REVOKED;
        f.last_seen = now;
        if !was_revoked {
            let ev =
                self.flow_event(now, FlowEventKind::Revoked, Verdict::Drop(reason), s, tables.generation);
            self.emit(ev);
            self.local.flows_revoked += 1;
        }
        Some(Verdict::Drop(reason))
    }

    #[allow(clippy::too_many_arguments)] // as `conn`
    fn open(
        &mut self,
        now: u64,
        tables: &TableSet,
        info: &PacketInfo,
        key: FlowKey,
        hash: u64,
        from_a: bool,
        len: u64,
    ) -> Verdict {
        let tcp = info.proto == 6;
        let fl_ = info.tcp_flags;
        let state = if tcp {
            if fl_ & RST != 0 {
                return Verdict::Drop(DropReason::InvalidState);
            }
            if fl_ & (SYN | ACK) == SYN {
                st::SYN_SENT
            } else if tables.config.strict_tcp {
                return Verdict::Drop(DropReason::InvalidState);
            } else if fl_ & FIN != 0 {
                st::FIN_WAIT
            } else {
                st::ESTABLISHED
            }
        } else {
            st::PSEUDO
        };
        let icmp = is_icmp(info.proto, key.v6);
        let q = FlowQuery {
            src: info.src,
            dst: info.dst,
            proto: info.proto,
            sport: if icmp { u16::from(info.icmp_type) } else { info.sport },
            dport: if icmp { u16::from(info.icmp_code) } else { info.dport },
        };
        let j = tables.judge(&q);
        self.cur_decision = Some(j.decision);
        let mut flags = if from_a { fl::OPENER_A } else { 0 };
        let verdict = if j.decision.allows() {
            Verdict::Pass
        } else if j.mode == Mode::Monitor {
            flags |= fl::WOULD_DENY;
            Verdict::WouldDeny
        } else {
            let r = deny_reason(j.decision);
            self.emit_denied(now, tables, info, &j, hash, len, r);
            return Verdict::Drop(r);
        };
        if self.table.is_full() && !self.make_room(now, tables) {
            return Verdict::Drop(DropReason::TableFull);
        }
        let mut flow = Flow {
            last_seen: now,
            generation: tables.generation,
            bytes: len,
            decision: PackedDecision::pack(j.decision, j.mode),
            packets: 1,
            state,
            flags,
            ..Flow::default()
        };
        let cold = Cold {
            src_id: j.src_identity,
            dst_id: j.dst_identity,
            q_type: if icmp { info.icmp_type } else { 0 },
            q_code: if icmp { info.icmp_code } else { 0 },
        };
        if tcp {
            let d = usize::from(!from_a);
            flow.seq_end[d] = info
                .tcp_seq
                .wrapping_add(info.l4_payload_len)
                .wrapping_add(u32::from(fl_ & SYN != 0))
                .wrapping_add(u32::from(fl_ & FIN != 0));
            flow.win[d] = info.tcp_window;
            flow.flags |= if d == 0 { fl::SEQ_A } else { fl::SEQ_B };
            if fl_ & FIN != 0 {
                flow.flags |= if d == 0 { fl::FIN_A } else { fl::FIN_B };
            }
        }
        let Some(s) = self.table.insert(&key, flow, cold, hash) else {
            return Verdict::Drop(DropReason::TableFull);
        };
        self.local.flows_created += 1;
        if verdict == Verdict::WouldDeny {
            let ev = self.flow_event(now, FlowEventKind::WouldDeny, verdict, s, tables.generation);
            self.emit(ev);
        }
        if self.cfg.log_start_end {
            let ev = self.flow_event(now, FlowEventKind::Start, verdict, s, tables.generation);
            self.emit(ev);
        }
        verdict
    }

    /// Frees one slot in a full table (see the module docs). False when nothing may go.
    fn make_room(&mut self, now: u64, tables: &TableSet) -> bool {
        let Some((s, class)) =
            self.table.pick_victim(&mut self.rng, self.cfg.evict_samples, now, &tables.config)
        else {
            return false;
        };
        if class >= 4 {
            return false;
        }
        self.remove_flow(now, tables, s, if class == 0 { Removal::Expired } else { Removal::Evicted });
        true
    }

    fn remove_flow(&mut self, now: u64, tables: &TableSet, s: u32, why: Removal) {
        // A tombstone was counted (and logged) when it was revoked.
        let why = if self.table.get(s).is_some_and(Flow::revoked) { Removal::Revoked } else { why };
        if self.cfg.log_start_end && why != Removal::Revoked {
            let v = match self.table.get(s) {
                Some(f) if f.would_deny() => Verdict::WouldDeny,
                _ => Verdict::Pass,
            };
            let ev = self.flow_event(now, FlowEventKind::End, v, s, tables.generation);
            self.emit(ev);
        }
        if self.table.remove(s).is_none() {
            return;
        }
        match why {
            Removal::Expired => self.local.flows_expired += 1,
            Removal::Evicted => self.local.flows_evicted += 1,
            Removal::Closed => self.local.flows_closed += 1,
            Removal::Revoked => {}
        }
    }

    fn icmp_error(&mut self, now: u64, tables: &TableSet, info: &PacketInfo, q: &Quoted) -> Verdict {
        let (key, _) = FlowKey::new(q.src, q.sport, q.dst, q.dport, q.proto);
        let h = self.table.hash(&key);
        let Some(s) = self.table.find(&key, h) else { return Verdict::Drop(DropReason::IcmpErrorNoFlow) };
        let live = self.table.get(s).is_some_and(|f| !f.expired(now, &tables.config) && !f.revoked());
        if !live || info.dst != q.src {
            return Verdict::Drop(DropReason::IcmpErrorNoFlow);
        }
        if let Some(v) = self.revalidate(now, tables, s) {
            return v;
        }
        self.cur_decision = self.table.get(s).map(|f| f.decision.decision());
        match self.table.get(s) {
            Some(f) if f.would_deny() => Verdict::WouldDeny,
            Some(_) => Verdict::Pass,
            None => Verdict::Drop(DropReason::IcmpErrorNoFlow),
        }
    }

    fn sweep(&mut self, now: u64, tables: &TableSet, n: u32) {
        let slots = self.table.slots();
        if self.table.len() == 0 || slots == 0 {
            return;
        }
        for _ in 0..n {
            self.sweep_cursor += 1;
            if self.sweep_cursor >= slots {
                self.sweep_cursor = 0;
            }
            let s = self.sweep_cursor as u32;
            if self.table.get(s).is_some_and(|f| f.expired(now, &tables.config)) {
                self.remove_flow(now, tables, s, Removal::Expired);
            }
        }
    }

    fn emit(&mut self, ev: Option<FlowEvent>) {
        let (Some(q), Some(ev)) = (&self.sink, ev) else { return };
        if q.push(ev).is_ok() {
            self.local.events_emitted += 1;
        } else {
            self.local.events_dropped += 1;
        }
    }

    #[allow(clippy::too_many_arguments)] // everything a denied-flow record carries
    fn emit_denied(
        &mut self,
        now: u64,
        tables: &TableSet,
        info: &PacketInfo,
        j: &Judgement,
        hash: u64,
        len: u64,
        r: DropReason,
    ) {
        if self.sink.is_none() {
            return;
        }
        let mask = self.deny_cache.len() - 1;
        let e = &mut self.deny_cache[(hash as usize) & mask];
        if e.0 == hash && now < e.1 {
            return;
        }
        *e = (hash, now.saturating_add(self.cfg.deny_log_interval_ns));
        let ev = FlowEvent {
            ts_ns: now,
            kind: FlowEventKind::Denied,
            worker: self.id,
            src: info.src,
            dst: info.dst,
            proto: info.proto,
            sport: info.sport,
            dport: info.dport,
            verdict: Verdict::Drop(r),
            decision: j.decision,
            mode: j.mode,
            src_identity: j.src_identity,
            dst_identity: j.dst_identity,
            generation: tables.generation,
            packets: 1,
            bytes: len,
        };
        self.emit(Some(ev));
    }

    fn flow_event(
        &self,
        now: u64,
        kind: FlowEventKind,
        verdict: Verdict,
        s: u32,
        generation: u64,
    ) -> Option<FlowEvent> {
        self.sink.as_ref()?;
        let f = self.table.get(s)?;
        let sum = summary(&self.table.key_of(s), f, &self.table.cold(s));
        Some(FlowEvent {
            ts_ns: now,
            kind,
            worker: self.id,
            src: sum.src,
            dst: sum.dst,
            proto: sum.proto,
            sport: sum.sport,
            dport: sum.dport,
            verdict,
            decision: sum.decision,
            mode: sum.mode,
            src_identity: sum.src_identity,
            dst_identity: sum.dst_identity,
            generation,
            packets: sum.packets,
            bytes: sum.bytes,
        })
    }

    /// Hands every held fragment that may now be transmitted to `f` (frame bytes and verdict,
    /// `Pass` or `WouldDeny`), then frees its hold slot. Call after `process_batch`; counters
    /// are published at the next batch.
    pub fn drain_released(&mut self, mut f: impl FnMut(&[u8], Verdict)) {
        let local = &mut self.local;
        self.frag.drain(|bytes, v| {
            match v {
                Verdict::Pass => local.pass += 1,
                Verdict::WouldDeny => local.would_deny += 1,
                _ => {}
            }
            local.frag_released += 1;
            f(bytes, v);
        });
        self.local.frag_held = self.frag.held() as u64;
    }

    /// The policy decision behind each verdict of the last `process_batch` call, one per frame of
    /// its last chunk (pass batches of at most `max_batch` frames to get one per frame): the
    /// flow's (possibly revalidated) decision for a packet of a tracked flow or an ICMP error
    /// about one, the fresh judgement for a new or denied packet, `None` when no policy lookup
    /// decided (malformed, ARP / ND, ethertype, invalid TCP flags, non-first fragments). Used by
    /// `bulkhead replay` to name the deciding rule; fixed scratch, no allocation.
    pub fn last_decisions(&self) -> &[Option<Decision>] {
        &self.decisions[..self.decisions_len.min(self.decisions.len())]
    }

    /// Number of held fragments waiting to be drained.
    pub fn released_len(&self) -> usize {
        self.frag.released_len()
    }

    /// Idle-time upkeep with no packets: checks up to `budget` flow slots for expiry, expires
    /// stale fragments and publishes counters.
    pub fn maintain(&mut self, now_ns: u64, tables: &TableSet, budget: u32) {
        self.upkeep(now_ns, tables, budget);
    }

    /// The flows in the table matching `filter`, at most `limit` of them (flows past their
    /// timeout that the sweep has not reached yet may appear). Call on the worker thread
    /// between batches.
    pub fn flows(&self, limit: usize, filter: FlowFilter) -> impl Iterator<Item = FlowSummary> + '_ {
        self.table
            .iter_from(0)
            .filter(|(_, f)| !f.revoked())
            .map(|(s, f)| summary(&self.table.key_of(s), f, &self.table.cold(s)))
            .filter(move |s| filter.matches(s))
            .take(limit)
    }

    /// The published counters (share with readers).
    pub fn counters(&self) -> Arc<WorkerCounters> {
        Arc::clone(&self.counters)
    }

    /// The latency recorder (the I/O loop records into it; readers merge it).
    pub fn latency(&self) -> Arc<LatencyRecorder> {
        Arc::clone(&self.latency)
    }

    /// Sets (or clears) the flow-event sink.
    pub fn set_event_sink(&mut self, sink: Option<Arc<ArrayQueue<FlowEvent>>>) {
        self.sink = sink;
    }

    /// Flows in the table now.
    pub fn flow_count(&self) -> usize {
        self.table.len()
    }

    /// Bytes of memory the flow table holds (index + records + free list), fixed at start.
    pub fn flow_table_bytes(&self) -> usize {
        self.table.memory_bytes()
    }
}

fn deny_reason(d: Decision) -> DropReason {
    match d {
        Decision::Quarantined => DropReason::Quarantined,
        Decision::Deny { .. } => DropReason::RuleDeny,
        _ => DropReason::DefaultDeny,
    }
}

/// The opening tuple of a flow, as the policy judges it.
fn opener_query(key: &FlowKey, f: &Flow, c: &Cold) -> FlowQuery {
    let a = f.opener_is_a();
    let (src, sport) = key.endpoint(a);
    let (dst, dport) = key.endpoint(!a);
    if is_icmp(key.proto, key.v6) {
        FlowQuery { src, dst, proto: key.proto, sport: u16::from(c.q_type), dport: u16::from(c.q_code) }
    } else {
        FlowQuery { src, dst, proto: key.proto, sport, dport }
    }
}

fn summary(key: &FlowKey, f: &Flow, c: &Cold) -> FlowSummary {
    let a = f.opener_is_a();
    let (src, sport) = key.endpoint(a);
    let (dst, dport) = key.endpoint(!a);
    FlowSummary {
        src,
        dst,
        proto: key.proto,
        sport,
        dport,
        tcp_state: f.tcp_state_name(),
        replied: f.flags & fl::REPLIED != 0,
        would_deny: f.would_deny(),
        decision: f.decision.decision(),
        mode: f.decision.mode(),
        src_identity: c.src_id,
        dst_identity: c.dst_id,
        generation: f.generation,
        packets: u64::from(f.packets),
        bytes: f.bytes,
        last_seen_ns: f.last_seen,
    }
}

/// The drop reason of a revoked flow: quarantined, or revoked by the rules.
#[inline]
fn revoked_reason(d: Decision) -> DropReason {
    if d == Decision::Quarantined {
        DropReason::Quarantined
    } else {
        DropReason::Revoked
    }
}

/// Updates TCP state for a packet from endpoint `d` (0 = A, 1 = B) of an existing flow.
#[inline(always)] // once per TCP packet; as a call it cost ~10 instructions more
fn tcp_track(f: &mut Flow, d: usize, from_opener: bool, seg: &Seg) -> Result<(), DropReason> {
    let flags = seg.flags;
    let seq_bit = if d == 0 { fl::SEQ_A } else { fl::SEQ_B };
    if flags & RST != 0 {
        if !rst_acceptable(f, d, from_opener, seg) {
            return Err(DropReason::InvalidState);
        }
        f.state = st::CLOSED;
        return Ok(());
    }
    let syn = flags & SYN != 0;
    let ack = flags & ACK != 0;
    let fin = flags & FIN != 0;
    match f.state {
        st::SYN_SENT if !from_opener && syn && ack => f.state = st::SYN_RECV,
        st::SYN_RECV if from_opener && ack && !syn => f.state = st::ESTABLISHED,
        _ => {}
    }
    if fin && matches!(f.state, st::SYN_RECV | st::ESTABLISHED | st::FIN_WAIT) {
        f.flags |= if d == 0 { fl::FIN_A } else { fl::FIN_B };
        f.state = if f.flags & (fl::FIN_A | fl::FIN_B) == fl::FIN_A | fl::FIN_B {
            st::TIME_WAIT
        } else {
            st::FIN_WAIT
        };
    }
    let end = seg.seq.wrapping_add(seg.payload_len).wrapping_add(u32::from(syn)).wrapping_add(u32::from(fin));
    // A SYN (re)starts the sender's sequence space; otherwise keep the highest end seen.
    if syn || f.flags & seq_bit == 0 || seq_after(end, f.seq_end[d]) {
        f.seq_end[d] = end;
        f.flags |= seq_bit;
    }
    f.win[d] = seg.window;
    Ok(())
}

fn rst_acceptable(f: &Flow, d: usize, from_opener: bool, seg: &Seg) -> bool {
    let o = 1 - d;
    let other_bit = if o == 0 { fl::SEQ_A } else { fl::SEQ_B };
    if f.state == st::SYN_SENT && !from_opener {
        // A RST answering a SYN must acknowledge it.
        return seg.flags & ACK != 0 && (f.flags & other_bit == 0 || seg.ack == f.seq_end[o]);
    }
    let seq_bit = if d == 0 { fl::SEQ_A } else { fl::SEQ_B };
    if f.flags & seq_bit == 0 {
        return true; // nothing known about this sender's sequence space (loose pickup)
    }
    let w = if f.flags & other_bit != 0 { u32::from(f.win[o]) << 7 } else { 0 }.max(65_535);
    (seg.seq.wrapping_sub(f.seq_end[d]) as i32).unsigned_abs() <= w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_flag_table() {
        for ok in [
            SYN,
            SYN | ACK,
            ACK,
            ACK | 0x08,
            FIN | ACK,
            RST,
            RST | ACK,
            SYN | URG,
            ACK | URG,
            FIN | ACK | URG,
        ] {
            assert!(valid_tcp_flags(ok), "{ok:#x}");
        }
        for bad in [
            0,
            SYN | FIN,
            SYN | RST,
            FIN,
            FIN | 0x08 | URG,
            RST | FIN,
            RST | FIN | ACK,
            SYN | FIN | ACK,
            0x08,
        ] {
            assert!(!valid_tcp_flags(bad), "{bad:#x}");
        }
    }
}
