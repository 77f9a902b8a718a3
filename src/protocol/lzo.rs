/*!
LZO1X as distcc uses it: a raw stream, no header, no length, no checksum.

Compression is `lzo1x` level 3, which is byte-for-byte miniLZO's
`lzo1x_1_compress` (what distcc 3.4 sends). Decompression uses the `lzo`
crate because it reports "output buffer too small" separately from
"malformed", which the grow-and-retry below needs.

distcc grows its buffer without bound; a few kilobytes of crafted input can
then claim gigabytes. Here every caller passes a hard ceiling.
*/

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LzoError {
    /// The stream would decompress to more than the ceiling allows.
    TooLarge { limit: usize },
    /// Truncated, trailing garbage, a back-reference before the start, …
    Malformed(String),
}

impl fmt::Display for LzoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LzoError::TooLarge { limit } => {
                write!(f, "decompresses to more than {limit} bytes")
            }
            LzoError::Malformed(e) => f.write_str(e),
        }
    }
}

/// Compresses `data`; empty input gives empty output, because distcc sends an
/// empty file as a zero-length body without running the compressor.
pub fn compress(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    lzo1x::compress(data, lzo1x::CompressLevel::new(3))
}

/// Decompresses a whole stream into at most `limit` bytes.
pub fn decompress(src: &[u8], limit: usize) -> Result<Vec<u8>, LzoError> {
    if src.is_empty() {
        return Ok(Vec::new());
    }
    // distcc's own first guess; most streams fit at once.
    // (`clamp` would panic for a limit under 256: a nearly spent budget.)
    let mut cap = src.len().saturating_mul(8).max(256).min(limit.max(1));
    loop {
        let mut out = vec![0u8; cap];
        match lzo::decompress_into(src, &mut out) {
            Ok(n) => {
                out.truncate(n);
                return Ok(out);
            }
            Err(lzo::Error::OutputOverrun) if cap < limit => {
                cap = cap.saturating_mul(2).min(limit);
            }
            Err(lzo::Error::OutputOverrun) => return Err(LzoError::TooLarge { limit }),
            Err(e) => return Err(LzoError::Malformed(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiny_literal_matches_distcc_on_the_wire() {
        // distcc-3.4.md §1.4: `int x;\n` as captured between real distcc peers.
        let z = compress(b"int x;\n");
        assert_eq!(z, [0x18, b'i', b'n', b't', b' ', b'x', b';', b'\n', 0x11, 0, 0]);
        assert_eq!(decompress(&z, 1 << 20).unwrap(), b"int x;\n");
    }

    #[test]
    fn a_limit_below_the_first_guess_is_a_limit_not_a_panic() {
        let z = compress(b"int x;\n");
        for limit in [1, 7, 26, 255] {
            let r = decompress(&z, limit);
            assert_eq!(r.is_ok(), limit >= 7, "{limit}: {r:?}");
        }
        assert!(matches!(
            decompress(&compress(&[b'a'; 300]), 26),
            Err(LzoError::TooLarge { limit: 26 })
        ));
    }

    #[test]
    fn empty_is_empty_both_ways() {
        assert!(compress(b"").is_empty());
        assert_eq!(decompress(b"", 0).unwrap(), b"");
    }

    #[test]
    fn round_trips_text_and_binary() {
        let mut text = Vec::new();
        for i in 0..20_000 {
            text.extend_from_slice(format!("static int v{i} = {};\n", i * 7).as_bytes());
        }
        let bin: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for data in [text, bin, vec![0u8; 1 << 20]] {
            let z = compress(&data);
            assert_eq!(decompress(&z, data.len()).unwrap(), data);
        }
    }

    #[test]
    fn a_bomb_is_refused_at_the_ceiling() {
        // 64 MiB of zeros compresses to a few hundred KiB; with a 1 MiB
        // ceiling it must be refused, not grown into.
        let bomb = compress(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 512 << 10, "{}", bomb.len());
        assert_eq!(
            decompress(&bomb, 1 << 20),
            Err(LzoError::TooLarge { limit: 1 << 20 })
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_malformed() {
        let mut z = compress(b"int x;\n");
        z.push(0);
        assert!(matches!(decompress(&z, 1 << 20), Err(LzoError::Malformed(_))));
        let cut = &compress(b"hello hello hello hello hello")[..5];
        assert!(matches!(decompress(cut, 1 << 20), Err(LzoError::Malformed(_))));
        assert!(matches!(
            decompress(&[0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(LzoError::Malformed(_))
        ));
    }
}
