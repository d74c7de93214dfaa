//! Property tests: the IdentityMap agrees with the naive longest-prefix scan, IPv4 and IPv6,
//! including duplicate prefixes (the later insert wins), host bits, /0 and full-length prefixes.

use bulkhead_tables::lpm::reference_lookup;
use bulkhead_tables::{IdentityId, IdentityMapBuilder};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 addresses clustered so that prefixes nest and overlap across the 16/24 strides.
fn v4() -> impl Strategy<Value = u32> {
    (
        prop::sample::select(vec![0u32, 0x0A00_0000, 0x0A01_0200, 0xC612_0000, 0xFFFF_FFFF]),
        any::<u32>(),
        0u32..=32,
    )
        .prop_map(|(base, noise, bits)| if bits == 0 { base } else { base ^ (noise >> (32 - bits)) })
}

fn v6() -> impl Strategy<Value = u128> {
    (
        prop::sample::select(vec![0u128, 0x2001_0db8 << 96, (0x2001_0db8_0000_0001u128) << 64, u128::MAX]),
        any::<u128>(),
        0u32..=128,
    )
        .prop_map(|(base, noise, bits)| if bits == 0 { base } else { base ^ (noise >> (128 - bits)) })
}

fn entry() -> impl Strategy<Value = (IpAddr, u8, IdentityId)> {
    prop_oneof![
        (v4(), 0u8..=32, 1u32..70_000).prop_map(|(a, l, id)| (IpAddr::V4(Ipv4Addr::from(a)), l, id)),
        (v6(), prop_oneof![Just(0u8), Just(32), Just(48), Just(64), Just(128), 0u8..=128], 1u32..70_000)
            .prop_map(|(a, l, id)| (IpAddr::V6(Ipv6Addr::from(a)), l, id)),
    ]
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        v6().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

/// Addresses at and just around the edges of every prefix.
fn edges(entries: &[(IpAddr, u8, IdentityId)]) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for &(p, l, _) in entries {
        match p {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                let m = if l == 0 { 0 } else { u32::MAX << (32 - u32::from(l.min(32))) };
                for x in [a & m, (a & m) | !m, (a & m).wrapping_sub(1), ((a & m) | !m).wrapping_add(1)] {
                    out.push(IpAddr::V4(Ipv4Addr::from(x)));
                }
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                let m = if l == 0 { 0 } else { u128::MAX << (128 - u32::from(l.min(128))) };
                for x in [a & m, (a & m) | !m, (a & m).wrapping_sub(1), ((a & m) | !m).wrapping_add(1)] {
                    out.push(IpAddr::V6(Ipv6Addr::from(x)));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn identity_map_matches_reference(
        entries in prop::collection::vec(entry(), 0..80),
        probes in prop::collection::vec(addr(), 0..100),
    ) {
        let mut b = IdentityMapBuilder::new();
        for &(p, l, id) in &entries {
            b.insert(p, l, id);
        }
        let m = b.build();
        for a in edges(&entries).into_iter().chain(probes) {
            prop_assert_eq!(m.lookup(a), reference_lookup(&entries, a), "addr {}", a);
        }
    }
}
