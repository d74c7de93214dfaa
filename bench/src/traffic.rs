//! Synthetic traffic for the in-memory scenarios: TCP flows between 198.18.0.0/16 clients and
//! 198.19.0.0/16 servers, their handshakes, and minimum-size (64-byte on the wire: 60 bytes plus
//! the FCS the NIC strips) established-flow frames, packed in one contiguous buffer the way a
//! UMEM holds them.

use crate::policy::{CLIENT_NET, SERVER_NET};
use bulkhead_wire::builder::{tcp, Frame};
use std::net::Ipv4Addr;

/// Bytes of a minimum Ethernet frame without its FCS (64 on the wire).
pub const MIN_FRAME: usize = 60;

/// One TCP connection of the benchmark, as the client opened it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub client: Ipv4Addr,
    pub server: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    /// Initial sequence numbers of the client and the server.
    pub client_isn: u32,
    pub server_isn: u32,
}

impl Flow {
    /// The `i`-th distinct flow to `dport`: 65536 client addresses x source ports, 250 servers.
    pub fn nth(i: u64, dport: u16) -> Flow {
        let host = (i & 0xffff) as u32;
        let sport = 1024 + ((i >> 16) % 64_000) as u16;
        let server = SERVER_NET | (1 + (i % 250) as u32);
        let h = mix(i);
        Flow {
            client: Ipv4Addr::from(CLIENT_NET | host),
            server: Ipv4Addr::from(server),
            sport,
            dport,
            client_isn: h as u32,
            server_isn: (h >> 32) as u32,
        }
    }

    pub fn syn(&self) -> Vec<u8> {
        Frame::tcp(self.client, self.server, self.sport, self.dport, tcp::SYN)
            .seq(self.client_isn)
            .ack(0)
            .pad_to(MIN_FRAME)
            .build()
    }

    pub fn syn_ack(&self) -> Vec<u8> {
        Frame::tcp(self.server, self.client, self.dport, self.sport, tcp::SYN_ACK)
            .seq(self.server_isn)
            .ack(self.client_isn.wrapping_add(1))
            .pad_to(MIN_FRAME)
            .build()
    }

    /// The handshake's final ACK, and also every established client -> server frame (a pure
    /// ACK carrying no data: a valid duplicate ACK however often it repeats).
    pub fn ack(&self) -> Vec<u8> {
        Frame::tcp(self.client, self.server, self.sport, self.dport, tcp::ACK)
            .seq(self.client_isn.wrapping_add(1))
            .ack(self.server_isn.wrapping_add(1))
            .pad_to(MIN_FRAME)
            .build()
    }

    /// An established server -> client frame.
    pub fn reply(&self) -> Vec<u8> {
        Frame::tcp(self.server, self.client, self.dport, self.sport, tcp::ACK)
            .seq(self.server_isn.wrapping_add(1))
            .ack(self.client_isn.wrapping_add(1))
            .pad_to(MIN_FRAME)
            .build()
    }
}

/// Frames packed at a fixed stride in one buffer (like UMEM chunks), with their lengths.
#[derive(Clone, Debug, Default)]
pub struct FrameBuf {
    data: Vec<u8>,
    lens: Vec<u16>,
    stride: usize,
}

impl FrameBuf {
    /// A buffer for frames of at most `stride` bytes.
    pub fn with_stride(stride: usize, capacity: usize) -> Self {
        Self { data: Vec::with_capacity(stride * capacity), lens: Vec::with_capacity(capacity), stride }
    }

    /// Appends a frame (truncated to the stride).
    pub fn push(&mut self, frame: &[u8]) {
        let n = frame.len().min(self.stride);
        let start = self.data.len();
        self.data.resize(start + self.stride, 0);
        self.data[start..start + n].copy_from_slice(&frame[..n]);
        self.lens.push(n as u16);
    }

    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// One slice per frame, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.lens
            .iter()
            .enumerate()
            .map(|(i, &n)| &self.data[i * self.stride..i * self.stride + n as usize])
            .collect()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// A small deterministic PRNG (xorshift64*), for shuffles and spoofed addresses.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(mix(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0; multiply-shift, bias negligible for benchmark use).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// SplitMix64 finalizer: a well-spread 64-bit hash of `x`.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_wire::{parse, Parsed};

    #[test]
    fn flows_are_distinct_and_frames_minimum_size() {
        let a = Flow::nth(1, 80);
        let b = Flow::nth(1 + 65536, 80);
        assert_eq!(a.client, b.client);
        assert_ne!(a.sport, b.sport);
        for f in [a.syn(), a.syn_ack(), a.ack(), a.reply()] {
            assert_eq!(f.len(), MIN_FRAME);
        }
    }

    #[test]
    fn established_frame_parses_as_the_flow() {
        let f = Flow::nth(7, 80);
        match parse(&f.ack()) {
            Ok(Parsed::Ip(p)) => {
                assert_eq!(p.src, std::net::IpAddr::V4(f.client));
                assert_eq!(p.dport, 80);
                assert_eq!(p.tcp_flags, tcp::ACK);
                assert_eq!(p.tcp_seq, f.client_isn.wrapping_add(1));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn framebuf_keeps_lengths_and_order() {
        let mut b = FrameBuf::with_stride(64, 2);
        b.push(&[1; 60]);
        b.push(&[2; 70]);
        let s = b.slices();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0], &[1; 60][..]);
        assert_eq!(s[1].len(), 64, "truncated to the stride");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..1000).collect();
        Rng::new(1).shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }
}
