//! Minimal classic-pcap (libpcap) reader and writer, for regression inputs and replay.
//!
//! CONTRACT: [`PcapReader`] reads a whole capture held in memory: both byte orders, microsecond
//! (magic `a1b2c3d4`) and nanosecond (`a1b23c4d`) timestamps, any link type (the caller checks
//! [`PcapReader::linktype`]; Ethernet is [`LINKTYPE_ETHERNET`]). It never panics on a corrupt
//! file: a bad header or a record cut short is a [`PcapError`]. pcapng is not supported.
//! [`PcapWriter`] writes microsecond-resolution little-endian Ethernet captures that tcpdump and
//! Wireshark read. Not packet path: the writer goes through `std::io::Write`.

use std::fmt;
use std::io::{self, Write};

/// DLT_EN10MB.
pub const LINKTYPE_ETHERNET: u32 = 1;

/// Why a capture could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcapError {
    /// Shorter than the 24-byte global header.
    TruncatedHeader,
    /// Not a classic pcap magic number (pcapng, or not a capture at all).
    BadMagic(u32),
    /// A record header or its data runs past the end of the file (at this byte offset).
    TruncatedRecord(usize),
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::TruncatedHeader => write!(f, "pcap: file shorter than its global header"),
            PcapError::BadMagic(m) => write!(f, "pcap: bad magic {m:#010x} (pcapng is not supported)"),
            PcapError::TruncatedRecord(at) => write!(f, "pcap: record at byte {at} cut short"),
        }
    }
}

impl std::error::Error for PcapError {}

/// One captured packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Original length on the wire (may exceed `data.len()` when the capture was snapped).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: &'a [u8],
}

/// Iterates over the records of a capture in memory.
#[derive(Clone, Debug)]
pub struct PcapReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    big_endian: bool,
    nanos: bool,
    linktype: u32,
    failed: bool,
}

impl<'a> PcapReader<'a> {
    /// Checks the global header.
    ///
    /// # Errors
    /// [`PcapError::TruncatedHeader`] or [`PcapError::BadMagic`].
    pub fn new(bytes: &'a [u8]) -> Result<Self, PcapError> {
        let h = bytes.first_chunk::<24>().ok_or(PcapError::TruncatedHeader)?;
        let magic_le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let (big_endian, nanos) = match magic_le {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (false, true),
            0xd4c3_b2a1 => (true, false),
            0x4d3c_b2a1 => (true, true),
            other => return Err(PcapError::BadMagic(other)),
        };
        let mut r = PcapReader { bytes, pos: 24, big_endian, nanos, linktype: 0, failed: false };
        r.linktype = r.u32_at([h[20], h[21], h[22], h[23]]);
        Ok(r)
    }

    /// The capture's link type ([`LINKTYPE_ETHERNET`] for Ethernet).
    pub fn linktype(&self) -> u32 {
        self.linktype
    }

    fn u32_at(&self, b: [u8; 4]) -> u32 {
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }
}

impl<'a> Iterator for PcapReader<'a> {
    type Item = Result<Record<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos == self.bytes.len() {
            return None;
        }
        let at = self.pos;
        let rest = self.bytes.get(at..).unwrap_or_default();
        let Some(h) = rest.first_chunk::<16>() else {
            self.failed = true;
            return Some(Err(PcapError::TruncatedRecord(at)));
        };
        let secs = self.u32_at([h[0], h[1], h[2], h[3]]);
        let frac = self.u32_at([h[4], h[5], h[6], h[7]]);
        let incl = self.u32_at([h[8], h[9], h[10], h[11]]) as usize;
        let orig_len = self.u32_at([h[12], h[13], h[14], h[15]]);
        let Some(data) = rest.get(16..16usize.saturating_add(incl)) else {
            self.failed = true;
            return Some(Err(PcapError::TruncatedRecord(at)));
        };
        self.pos = at + 16 + incl;
        let frac_ns = if self.nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        Some(Ok(Record { ts_ns: u64::from(secs) * 1_000_000_000 + frac_ns, orig_len, data }))
    }
}

/// Writes a little-endian, microsecond-resolution pcap file.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header (snap length 65535, link type `linktype`).
    ///
    /// # Errors
    /// The underlying writer's.
    pub fn new(mut out: W, linktype: u32) -> io::Result<Self> {
        out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&65535u32.to_le_bytes())?;
        out.write_all(&linktype.to_le_bytes())?;
        Ok(PcapWriter { out })
    }

    /// Appends one packet captured at `ts_ns` (nanoseconds since the epoch; stored in µs).
    ///
    /// # Errors
    /// The underlying writer's; `InvalidInput` for a packet longer than 4 GiB.
    pub fn write(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let secs = (ts_ns / 1_000_000_000) as u32;
        let micros = ((ts_ns % 1_000_000_000) / 1000) as u32;
        for v in [secs, micros, len, len] {
            self.out.write_all(&v.to_le_bytes())?;
        }
        self.out.write_all(data)
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    /// The underlying writer's.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
        w.write(1_500_000_123_000, &[1, 2, 3]).unwrap();
        w.write(2_000_000_000, &[]).unwrap();
        let bytes = w.finish().unwrap();
        let r = PcapReader::new(&bytes).unwrap();
        assert_eq!(r.linktype(), LINKTYPE_ETHERNET);
        let recs: Vec<_> = r.map(Result::unwrap).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].ts_ns, recs[0].data), (1_500_000_123_000, &[1u8, 2, 3][..]));
        assert_eq!((recs[1].ts_ns, recs[1].data.len()), (2_000_000_000, 0));
    }

    #[test]
    fn big_endian_nanosecond_capture() {
        let mut b = 0xa1b2_3c4du32.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 1]);
        for v in [3u32, 7, 2, 2] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&[9, 9]);
        let recs: Vec<_> = PcapReader::new(&b).unwrap().map(Result::unwrap).collect();
        assert_eq!((recs[0].ts_ns, recs[0].data), (3_000_000_007, &[9u8, 9][..]));
    }

    #[test]
    fn rejects_short_header_and_bad_magic() {
        assert_eq!(PcapReader::new(&[0; 23]).unwrap_err(), PcapError::TruncatedHeader);
        let ng = [0x0a, 0x0d, 0x0d, 0x0a].repeat(6);
        assert!(matches!(PcapReader::new(&ng), Err(PcapError::BadMagic(_))));
    }

    #[test]
    fn truncated_record_is_an_error_then_stops() {
        let mut w = PcapWriter::new(Vec::new(), LINKTYPE_ETHERNET).unwrap();
        w.write(0, &[0; 10]).unwrap();
        let mut bytes = w.finish().unwrap();
        bytes.pop();
        let mut r = PcapReader::new(&bytes).unwrap();
        assert_eq!(r.next(), Some(Err(PcapError::TruncatedRecord(24))));
        assert_eq!(r.next(), None);
        // A record header cut short as well.
        let mut r = PcapReader::new(&bytes[..30]).unwrap();
        assert_eq!(r.next(), Some(Err(PcapError::TruncatedRecord(24))));
    }
}
