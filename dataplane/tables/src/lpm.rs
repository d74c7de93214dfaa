//! Address -> identity longest-prefix match, IPv4 and IPv6.
//!
//! CONTRACT (owned by the LPM work; the engine and compiler rely only on this):
//! - [`IdentityMapBuilder::insert`] adds `prefix/len -> identity`; a later insert of the same
//!   prefix replaces the earlier one. `build` produces an immutable [`IdentityMap`].
//! - [`IdentityMap::lookup`] returns the identity of the longest matching prefix, or
//!   [`crate::WORLD`] when none covers the address. It allocates nothing.
//! - Must scale to at least 1M prefixes and 64k identities.
//!
//! This placeholder is a naive scan; it doubles as the reference evaluator.

use crate::{IdentityId, WORLD};
use std::net::IpAddr;

#[derive(Debug, Default, Clone)]
pub struct IdentityMapBuilder {
    entries: Vec<(IpAddr, u8, IdentityId)>,
}

impl IdentityMapBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, prefix: IpAddr, len: u8, id: IdentityId) {
        self.entries.retain(|&(p, l, _)| !(p == prefix && l == len));
        self.entries.push((prefix, len, id));
    }

    pub fn build(self) -> IdentityMap {
        IdentityMap { entries: self.entries }
    }
}

#[derive(Debug, Clone)]
pub struct IdentityMap {
    entries: Vec<(IpAddr, u8, IdentityId)>,
}

impl IdentityMap {
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> IdentityId {
        let mut best: Option<(u8, IdentityId)> = None;
        for &(p, l, id) in &self.entries {
            if crate::prefix_contains(p, l, addr) && best.is_none_or(|(bl, _)| l > bl) {
                best = Some((l, id));
            }
        }
        best.map_or(WORLD, |(_, id)| id)
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
