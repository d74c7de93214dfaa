//! The control plane's writer: reload and quarantine, each one new table-set generation.
//!
//! Every change is validate -> compile (generation + 1) -> publish, done while holding
//! [`State::writer_lock`], so two changes never race for a generation number and a half-built
//! table is never visible. When any step fails the running generation stays in force, the error
//! (positioned, from the policy loader) is logged, counted and returned.
//!
//! A reload goes through an [`IncrementalPolicy`]: when only identity rules changed (at most
//! [`RELOAD_MAX_DELTAS`] of them, the others in the same order), they are applied as incremental
//! updates, microseconds each, and published as one generation without copying the tables;
//! anything else (identities, ACL tiers, settings, quarantine objects) is a full rebuild. The
//! updater is built by the first reload (a full build) and kept; it costs a second copy of the
//! classifiers and the compile index (about 60 MB at 100k rules). A quarantine change publishes
//! a plain compile (the shortest time to contain) and drops the updater, which the next reload
//! rebuilds.
//!
//! Quarantine is a generation like any other: the runtime quarantine list (`bulkhead quarantine
//! add`) is merged into the loaded policy's own `Quarantine` objects and the whole policy is
//! recompiled, so workers revalidate established flows against it on their next packet and cut
//! the quarantined ones (DESIGN.md "Hot swap"). Runtime entries survive reloads (they are merged
//! into every new policy) and restarts: every change that took effect is written to the
//! quarantine state file ([`super::persist`]), which `bulkhead run` compiles into its first
//! generation. (A quarantine meant to be permanent still belongs in a `Quarantine` object of the
//! policy files, under review like the rest of the policy.)

use super::state::{
    unix_now, PolicyInfo, QuarantineEntry, QuarantineExceptionArg, QuarantineSource, QuarantineTarget,
    ReloadFailure, State,
};
use crate::compile::{compile, CompiledPolicy};
use crate::diag::Loc;
use crate::incremental::{Applied, IncrementalPolicy};
use crate::model::{Cidr, Policy, PortMatch, QuarantineExceptionSpec, ANY_PORT};
use bulkhead_tables::TableSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What a successful reload did.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReloadOutcome {
    pub generation: u64,
    pub path: PathBuf,
    pub identities: usize,
    pub rules: usize,
    pub acl_rules: usize,
    /// Load + compile + publish time, milliseconds.
    pub took_ms: f64,
    /// Runtime quarantine entries naming an identity the new policy no longer has.
    pub warnings: Vec<String>,
    /// How the tables were made: `incremental: ...` or `full build ...`.
    #[serde(default)]
    pub applied: String,
}

/// Rule changes a reload applies as incremental updates; more is a full rebuild.
pub const RELOAD_MAX_DELTAS: usize = 64;

/// Loads and validates the policy at `path`.
///
/// # Errors
/// The loader's positioned diagnostics, one per line.
pub fn load(path: &Path) -> Result<Policy, String> {
    crate::load::load_paths(&[path.to_path_buf()]).map_err(|d| d.to_string())
}

/// The policy with the runtime quarantine entries merged in.
pub fn with_runtime_quarantine(policy: &Policy, runtime: &[QuarantineEntry]) -> Policy {
    let mut p = policy.clone();
    let loc = Loc::file("control-socket");
    for e in runtime {
        match &e.target {
            QuarantineTarget::Identity(n) => p.quarantine.identities.push((n.clone(), loc.clone())),
            QuarantineTarget::Address { net, len } => {
                if let Some(c) = Cidr::new(*net, *len) {
                    p.quarantine.addresses.push((c, loc.clone()));
                }
            }
        }
        for x in &e.exceptions {
            let Some(peer) = Cidr::new(x.peer.0, x.peer.1) else { continue };
            let ports = if x.proto.is_none() && x.ports == ANY_PORT {
                Vec::new()
            } else {
                vec![PortMatch { proto: x.proto, sport: ANY_PORT, dport: x.ports }]
            };
            p.quarantine.exceptions.push(QuarantineExceptionSpec {
                name: format!("runtime/{}/{x}", e.target),
                loc: loc.clone(),
                peer,
                ports,
            });
        }
    }
    p
}

/// Compiles `policy` plus the runtime quarantine at `generation`.
///
/// # Errors
/// The compiler's diagnostics (policy too large for the table format).
pub fn compile_with(
    policy: &Policy,
    runtime: &[QuarantineEntry],
    generation: u64,
) -> Result<CompiledPolicy, String> {
    compile(&with_runtime_quarantine(policy, runtime), generation).map_err(|d| d.to_string())
}

/// The `PolicyInfo` of a compiled policy.
pub fn policy_info(path: &Path, policy: &Policy, generation: u64, cause: &str) -> PolicyInfo {
    PolicyInfo {
        path: path.to_path_buf(),
        generation,
        loaded_at_unix: unix_now(),
        loaded_mono_ns: bulkhead_xdp::monotonic_ns(),
        identities: policy.identities.len(),
        rules: policy.rules.len(),
        acl_rules: policy.acl_tiers.iter().map(|t| t.rules.len()).sum(),
        cause: cause.to_string(),
    }
}

/// Entries that come from the policy files' `Quarantine` objects.
fn policy_entries(policy: &Policy, generation: u64) -> Vec<QuarantineEntry> {
    let entry = |target| QuarantineEntry {
        target,
        exceptions: Vec::new(),
        source: QuarantineSource::Policy,
        added_at_unix: 0,
        added_mono_ns: 0,
        generation,
        time_to_contain_ns: None,
        restored: false,
    };
    let mut v: Vec<QuarantineEntry> = policy
        .quarantine
        .identities
        .iter()
        .map(|(n, _)| entry(QuarantineTarget::Identity(n.clone())))
        .collect();
    v.extend(
        policy
            .quarantine
            .addresses
            .iter()
            .map(|(c, _)| entry(QuarantineTarget::Address { net: c.addr, len: c.len })),
    );
    v
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    policy: Policy,
    runtime: Vec<QuarantineEntry>,
    /// The updater that made the running generation, if a reload made it (see the module docs).
    inc: Option<IncrementalPolicy>,
    /// Why there is no updater (said by the next reload's full build).
    no_inc_because: &'static str,
}

impl Inner {
    /// Drops the updater (its tables no longer make the running generation, or a reload failed
    /// half-way); the next reload builds it again and says `why`.
    fn drop_updater(&mut self, why: &'static str) {
        self.inc = None;
        self.no_inc_because = why;
    }

    /// The next generation's tables for `full` (the policy with the runtime quarantine merged),
    /// whether they continue the running generation's lineage (an incremental update), and how
    /// they were made. On error the updater is dropped: the next reload starts afresh.
    fn reload_tables(
        &mut self,
        full: Policy,
        generation: u64,
    ) -> Result<(Arc<TableSet>, bool, String), String> {
        let usable = self.inc.as_ref().is_some_and(|i| i.generation() + 1 == generation);
        let Some(inc) = self.inc.as_mut().filter(|_| usable) else {
            self.inc = None; // free the stale copy before building the next one
            let inc = IncrementalPolicy::new(full, generation).map_err(|d| d.to_string())?;
            let t = inc.current();
            self.inc = Some(inc);
            return Ok((t, false, format!("full build ({})", self.no_inc_because)));
        };
        let applied = match inc.update_to(full, RELOAD_MAX_DELTAS) {
            Ok(Applied::Unchanged) => inc.bump(),
            Ok(a) => a,
            Err(d) => {
                self.drop_updater("the last reload failed");
                return Err(d.to_string());
            }
        };
        let t = inc.current();
        Ok(match applied {
            Applied::Delta { entries_added, entries_removed, copied, .. } => (
                t,
                true,
                format!(
                    "incremental: {entries_added} classifier {} added, {entries_removed} removed{}",
                    if entries_added == 1 { "entry" } else { "entries" },
                    if copied { " (tables copied: a reader held the spare)" } else { "" }
                ),
            ),
            Applied::Rebuilt { reason, .. } => (t, false, format!("full build ({reason})")),
            Applied::Unchanged => (t, false, "unchanged".to_string()),
        })
    }
}

/// Serializes reloads and quarantine changes against one [`State`].
#[derive(Debug)]
pub struct Controller {
    state: Arc<State>,
    inner: Mutex<Inner>,
    /// Where runtime quarantines are kept across restarts (`None`: not kept).
    state_file: Option<PathBuf>,
}

impl Controller {
    /// Wraps a state whose current generation was compiled from `policy` (loaded from `path`).
    pub fn new(state: Arc<State>, path: PathBuf, policy: Policy) -> Self {
        Self::with_runtime(state, path, policy, Vec::new(), None)
    }

    /// [`Controller::new`] for a state whose current generation was compiled from `policy` plus
    /// the runtime quarantine `runtime` (read back from `state_file`, which every later change
    /// rewrites).
    pub fn with_runtime(
        state: Arc<State>,
        path: PathBuf,
        policy: Policy,
        mut runtime: Vec<QuarantineEntry>,
        state_file: Option<PathBuf>,
    ) -> Self {
        let generation = state.current().generation;
        for e in &mut runtime {
            e.generation = generation;
        }
        let inner = Inner {
            path,
            policy,
            runtime,
            inc: None,
            no_inc_because: "first reload: the incremental updater is built now",
        };
        let c = Self { state, inner: Mutex::new(inner), state_file };
        c.publish_entries(&super::state::lock(&c.inner), generation);
        c
    }

    /// Rewrites the quarantine state file with the current runtime entries (and the times to
    /// contain measured since the last change); at a clean stop.
    pub fn save_quarantine_state(&self) {
        let _w = self.state.writer_lock();
        let mut inner = super::state::lock(&self.inner);
        if inner.runtime.is_empty() && self.state_file.as_ref().is_none_or(|p| !p.exists()) {
            return; // nothing to keep, and no file to empty
        }
        self.sync_runtime_from_state(&mut inner);
        self.persist(&inner);
    }

    /// Rewrites the quarantine state file after a change took effect. A write failure is logged
    /// and returned to the operator as a warning: the change itself stays in force.
    fn persist(&self, inner: &Inner) -> Option<String> {
        let path = self.state_file.as_ref()?;
        match super::persist::save(path, &inner.runtime) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!("{e}; the quarantine change is in force but will not survive a restart");
                Some(e)
            }
        }
    }

    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The policy path reloads read by default.
    pub fn policy_path(&self) -> PathBuf {
        super::state::lock(&self.inner).path.clone()
    }

    fn publish_entries(&self, inner: &Inner, generation: u64) {
        let mut all = policy_entries(&inner.policy, generation);
        all.extend(inner.runtime.iter().cloned());
        self.state.set_quarantine_entries(all);
    }

    /// Keeps the time to contain already measured for runtime entries (the state's copy is the
    /// one the flow-event drain completes).
    fn sync_runtime_from_state(&self, inner: &mut Inner) {
        let current = self.state.quarantine_entries();
        for e in inner.runtime.iter_mut() {
            if let Some(s) =
                current.iter().find(|s| s.source == QuarantineSource::Runtime && s.target == e.target)
            {
                if s.added_mono_ns == e.added_mono_ns {
                    e.time_to_contain_ns = s.time_to_contain_ns;
                }
            }
        }
    }

    /// Reloads the policy from `path` (default: the current path), like SIGHUP.
    ///
    /// # Errors
    /// The load or compile error; the running generation stays in force.
    pub fn reload(&self, path: Option<PathBuf>) -> Result<ReloadOutcome, String> {
        let _w = self.state.writer_lock();
        let mut inner = super::state::lock(&self.inner);
        let path = path.unwrap_or_else(|| inner.path.clone());
        let t0 = Instant::now();
        let res = (|| -> Result<(Policy, PolicyInfo, String), String> {
            let policy = load(&path)?;
            if policy.rules.is_empty() && policy.acl_tiers.iter().all(|t| t.rules.is_empty()) {
                // Valid, but it would default-deny every new flow and cut every established
                // one: far more often an empty or wrong path than an intent. Start the daemon
                // with such a policy to mean it.
                return Err(format!(
                    "{}: the policy has no rules or ACL lines: it would deny all traffic; refusing to reload it (the running policy stays)",
                    path.display()
                ));
            }
            let generation = self.state.current().generation + 1;
            self.sync_runtime_from_state(&mut inner);
            let full = with_runtime_quarantine(&policy, &inner.runtime);
            let (tables, lineage, applied) = inner.reload_tables(full, generation)?;
            let info = policy_info(&path, &policy, tables.generation, "reload");
            self.state.publish_arc(tables, info.clone(), lineage).map_err(|e| {
                inner.drop_updater("the last reload failed");
                format!("generation {} does not follow {}", e.offered, e.current)
            })?;
            Ok((policy, info, applied))
        })();
        match res {
            Ok((policy, info, applied)) => {
                let warnings: Vec<String> = inner
                    .runtime
                    .iter()
                    .filter_map(|e| match &e.target {
                        QuarantineTarget::Identity(n) if policy.identity(n).is_none() => Some(format!(
                            "quarantined identity `{n}` is not in the new policy: its quarantine matches nothing"
                        )),
                        _ => None,
                    })
                    .collect();
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                inner.policy = policy;
                inner.path = path.clone();
                self.publish_entries(&inner, info.generation);
                self.state.reloads.ok.fetch_add(1, Ordering::Relaxed);
                let out = ReloadOutcome {
                    generation: info.generation,
                    path,
                    identities: info.identities,
                    rules: info.rules,
                    acl_rules: info.acl_rules,
                    took_ms: t0.elapsed().as_secs_f64() * 1e3,
                    warnings,
                    applied,
                };
                tracing::info!(generation = out.generation, path = %out.path.display(), took_ms = out.took_ms, applied = %out.applied, "policy reloaded");
                Ok(out)
            }
            Err(e) => {
                self.state.reloads.failed.fetch_add(1, Ordering::Relaxed);
                *super::state::lock(&self.state.reloads.last_failure) =
                    Some(ReloadFailure { at_unix: unix_now(), path: path.clone(), error: e.clone() });
                tracing::error!(path = %path.display(), generation = self.state.current().generation, "reload rejected, the running policy stays in force:\n{e}");
                Err(e)
            }
        }
    }

    /// Puts `target` in quarantine (with `exceptions`), publishing a new generation.
    /// `received_mono_ns` is when the command arrived (the start of its time to contain).
    ///
    /// # Errors
    /// An unknown identity, or a compile / publish failure (nothing changes).
    pub fn quarantine_add(
        &self,
        target: QuarantineTarget,
        exceptions: Vec<QuarantineExceptionArg>,
        received_mono_ns: u64,
    ) -> Result<QuarantineEntry, String> {
        let _w = self.state.writer_lock();
        let mut inner = super::state::lock(&self.inner);
        if let QuarantineTarget::Identity(n) = &target {
            if inner.policy.identity(n).is_none() {
                return Err(format!(
                    "unknown identity `{n}`: no Identity object of the running policy has this name (give an address or CIDR, or an identity name)"
                ));
            }
        }
        self.sync_runtime_from_state(&mut inner);
        let previous = inner.runtime.iter().position(|e| e.target == target).map(|i| inner.runtime.remove(i));
        let entry = QuarantineEntry {
            target: target.clone(),
            exceptions,
            source: QuarantineSource::Runtime,
            added_at_unix: unix_now() as u64,
            added_mono_ns: received_mono_ns,
            generation: 0,
            time_to_contain_ns: None,
            restored: false,
        };
        inner.runtime.push(entry);
        let res = self.publish_quarantine_change(&mut inner);
        match res {
            Ok(g) => {
                let e = inner.runtime.last_mut().expect("pushed above");
                e.generation = g;
                let out = e.clone();
                self.publish_entries(&inner, g);
                self.persist(&inner);
                tracing::warn!(target = %out.target, generation = g, exceptions = out.exceptions.len(), "quarantine added");
                Ok(out)
            }
            Err(e) => {
                inner.runtime.pop();
                if let Some(p) = previous {
                    inner.runtime.push(p);
                }
                tracing::error!(target = %target, "quarantine not applied: {e}");
                Err(e)
            }
        }
    }

    /// Compiles the policy with the current runtime quarantines as the next generation and
    /// publishes it (the one path both quarantine verbs take). Called with the writer lock held.
    fn publish_quarantine_change(&self, inner: &mut Inner) -> Result<u64, String> {
        inner.drop_updater("a quarantine changed since the last reload");
        let generation = self.state.current().generation + 1;
        compile_with(&inner.policy, &inner.runtime, generation).and_then(|c| {
            let info = policy_info(&inner.path, &inner.policy, generation, "quarantine");
            self.state
                .publish(c.tables, info)
                .map_err(|e| format!("generation {} does not follow {}", e.offered, e.current))
        })
    }

    /// Lifts the runtime quarantine of `target`, publishing a new generation.
    ///
    /// # Errors
    /// When `target` has no runtime quarantine (quarantines from the policy files are lifted by
    /// editing the files and reloading), or on a compile / publish failure.
    pub fn quarantine_remove(&self, target: &QuarantineTarget) -> Result<u64, String> {
        let _w = self.state.writer_lock();
        let mut inner = super::state::lock(&self.inner);
        self.sync_runtime_from_state(&mut inner);
        let Some(i) = inner.runtime.iter().position(|e| &e.target == target) else {
            let in_policy = policy_entries(&inner.policy, 0).iter().any(|e| &e.target == target);
            return Err(if in_policy {
                format!("`{target}` is quarantined by a Quarantine object of the policy files: edit them and reload")
            } else {
                format!("`{target}` is not quarantined")
            });
        };
        let removed = inner.runtime.remove(i);
        let res = self.publish_quarantine_change(&mut inner);
        match res {
            Ok(g) => {
                self.publish_entries(&inner, g);
                self.persist(&inner);
                tracing::warn!(target = %target, generation = g, "quarantine lifted");
                Ok(g)
            }
            Err(e) => {
                inner.runtime.insert(i, removed);
                Err(e)
            }
        }
    }

    /// Waits for the time to contain of `target`'s quarantine, at most `timeout`.
    pub fn wait_contained(&self, target: &QuarantineTarget, timeout: Duration) -> Option<u64> {
        self.state.wait_time_to_contain(target, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::state::{FlowRequests, RunInfo, WorkerHandle};
    use bulkhead_engine::{LatencyRecorder, WorkerCounters};
    use bulkhead_tables::{Decision, FlowQuery, TableHandle};
    use std::io::Write;

    const POLICY: &str = r#"
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: web}
spec:
  labels: {app: web, zone: prod}
  addresses: [198.19.1.10/32]
---
apiVersion: bulkhead.io/v1
kind: Identity
metadata: {name: corp}
spec:
  labels: {app: laptop, zone: corp}
  addresses: [198.18.1.0/24]
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: corp-to-web}
spec:
  rules:
    - name: corp-http
      from: [{matchLabels: {zone: corp}}]
      to: [{matchLabels: {app: web}}]
      ports: [{protocol: tcp, port: 80}]
      action: allow
    - name: corp-forensics-ssh
      from: [{matchLabels: {zone: corp}}]
      to: [{cidr: 198.19.9.9/32}]
      ports: [{protocol: tcp, port: 22}]
      action: allow
"#;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn write_policy(text: &str) -> Tmp {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "bulkhead-ctl-{}-{}.yaml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::File::create(&p).unwrap().write_all(text.as_bytes()).unwrap();
        Tmp(p)
    }

    fn controller(path: &Path) -> Controller {
        let policy = load(path).expect("test policy loads");
        let compiled = compile_with(&policy, &[], 1).unwrap();
        let handle = Arc::new(TableHandle::new(compiled.tables));
        let w = WorkerHandle {
            id: 0,
            counters: Arc::new(WorkerCounters::new(0)),
            latency: Arc::new(LatencyRecorder::new()),
            io: None,
            flows: Arc::new(FlowRequests::default()),
        };
        let state =
            Arc::new(State::new(handle, policy_info(path, &policy, 1, "start"), RunInfo::default(), vec![w]));
        Controller::new(state, path.to_path_buf(), policy)
    }

    fn q(src: &str, dst: &str, dport: u16) -> FlowQuery {
        FlowQuery { src: src.parse().unwrap(), dst: dst.parse().unwrap(), proto: 6, sport: 40000, dport }
    }

    #[test]
    fn reload_publishes_the_next_generation_or_keeps_the_running_one() {
        let f = write_policy(POLICY);
        let c = controller(&f.0);
        let out = c.reload(None).unwrap();
        assert_eq!(out.generation, 2);
        assert_eq!(c.state().current().generation, 2);
        assert_eq!(c.state().policy().cause, "reload");

        let broken =
            write_policy("apiVersion: bulkhead.io/v1\nkind: Identity\nmetadata: { name: x }\nspec: [\n");
        let err = c.reload(Some(broken.0.clone())).unwrap_err();
        assert!(err.contains(&broken.0.display().to_string()), "positioned error: {err}");
        assert_eq!(c.state().current().generation, 2, "the running policy stays");
        assert_eq!(c.policy_path(), f.0, "a failed reload does not change the default path");
        assert_eq!(c.state().reloads.failed.load(Ordering::Relaxed), 1);
        assert!(c.state().reloads.last_failure.lock().unwrap().is_some());
    }

    /// The first reload builds the updater; the next ones apply rule changes incrementally, as
    /// one generation each, and the flow-log naming of older generations of the lineage holds.
    #[test]
    fn reloads_after_the_first_are_incremental() {
        let f = write_policy(POLICY);
        let c = controller(&f.0);
        let https = q("198.18.1.10", "198.19.1.10", 443);
        let out = c.reload(None).unwrap();
        assert_eq!(out.generation, 2);
        assert!(out.applied.starts_with("full build (first reload"), "{}", out.applied);
        let out = c.reload(None).unwrap();
        assert_eq!(out.generation, 3);
        assert!(out.applied.starts_with("incremental: 0 classifier entries added"), "{}", out.applied);

        // Two rule changes: port 80 becomes 443, and a new deny. One generation.
        let edited = POLICY.replace("port: 80}", "port: 443}")
            + "    - name: no-ssh\n      from: [{matchLabels: {zone: corp}}]\n      to: [{matchLabels: {app: web}}]\n      ports: [{protocol: tcp, port: 22}]\n      action: deny\n";
        std::fs::write(&f.0, edited).unwrap();
        let out = c.reload(None).unwrap();
        assert_eq!(out.generation, 4);
        assert!(
            out.applied.starts_with("incremental: 2 classifier entries added, 1 removed"),
            "{}",
            out.applied
        );
        let t = c.state().current();
        assert_eq!(t.generation, 4);
        let d = t.judge(&https).decision;
        assert!(matches!(d, Decision::Allow { .. }));
        assert_eq!(t.rule_name(d), Some("corp-to-web/corp-http"));
        assert!(matches!(t.judge(&q("198.18.1.10", "198.19.1.10", 80)).decision, Decision::DefaultDeny));
        assert!(matches!(t.judge(&q("198.18.1.10", "198.19.1.10", 22)).decision, Decision::Deny { .. }));
        // Generation 2's rule ids still name their rules in the lineage's newest set.
        let old = c.state().tables_for(2);
        assert_eq!(old.generation, 4);
        assert_eq!(old.rule_name(Decision::Allow { tier: 0, rule: 0 }), Some("corp-to-web/corp-http"));

        // An identity change is a full build; a quarantine drops the updater.
        std::fs::write(&f.0, POLICY.replace("198.19.1.10/32", "198.19.1.11/32")).unwrap();
        assert!(c.reload(None).unwrap().applied.starts_with("full build ("));
        c.quarantine_add("corp".parse().unwrap(), vec![], 5).unwrap();
        let out = c.reload(None).unwrap();
        assert_eq!(out.generation, 7);
        assert_eq!(out.applied, "full build (a quarantine changed since the last reload)");
        assert_eq!(
            c.state().current().judge(&q("198.18.1.10", "198.19.1.11", 80)).decision,
            Decision::Quarantined
        );
    }

    #[test]
    fn reload_refuses_a_policy_without_rules() {
        let f = write_policy(POLICY);
        let c = controller(&f.0);
        let empty = write_policy("# nothing here yet\n");
        let err = c.reload(Some(empty.0.clone())).unwrap_err();
        assert!(err.contains("no rules or ACL lines") && err.contains("running policy stays"), "{err}");
        assert_eq!(c.state().current().generation, 1);
        assert_eq!(c.policy_path(), f.0);
    }

    #[test]
    fn quarantine_add_and_remove_change_verdicts_in_new_generations() {
        let f = write_policy(POLICY);
        let c = controller(&f.0);
        let allowed = q("198.18.1.10", "198.19.1.10", 80);
        assert!(matches!(c.state().current().judge(&allowed).decision, Decision::Allow { .. }));

        let exc: QuarantineExceptionArg = "198.19.9.9/32:tcp/22".parse().unwrap();
        let e = c.quarantine_add("corp".parse().unwrap(), vec![exc], 5).unwrap();
        assert_eq!(e.generation, 2);
        let t = c.state().current();
        assert_eq!(t.judge(&allowed).decision, Decision::Quarantined);
        assert_eq!(t.judge(&q("198.18.1.10", "198.19.9.9", 22)).decision, Decision::QuarantineException);
        assert_eq!(t.judge(&q("198.18.1.10", "198.19.9.9", 23)).decision, Decision::Quarantined);
        assert_eq!(c.state().quarantine_entries().len(), 1);

        // A reload keeps the runtime quarantine.
        c.reload(None).unwrap();
        assert_eq!(c.state().current().judge(&allowed).decision, Decision::Quarantined);

        assert!(c
            .quarantine_add("nosuch".parse().unwrap(), vec![], 6)
            .unwrap_err()
            .contains("unknown identity"));
        assert!(c
            .quarantine_remove(&"198.18.1.99".parse().unwrap())
            .unwrap_err()
            .contains("not quarantined"));
        let g = c.quarantine_remove(&"corp".parse().unwrap()).unwrap();
        assert_eq!(g, 4);
        assert!(matches!(c.state().current().judge(&allowed).decision, Decision::Allow { .. }));
        assert!(c.state().quarantine_entries().is_empty());

        let a = c.quarantine_add("198.19.1.10".parse().unwrap(), vec![], 7).unwrap();
        assert_eq!(a.generation, 5);
        assert_eq!(c.state().current().judge(&allowed).decision, Decision::Quarantined);
    }
}
