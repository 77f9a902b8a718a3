/*!
Packets: a 4-byte ASCII tag, then 8 hex digits of a 32-bit value, then an
optional body whose length is that value.
*/

use std::fmt;

/// Every packet header is exactly this long.
pub const HEADER_LEN: usize = 12;

/// The tags of protocols 1–3. Protocol 3 tags are known so that a pump-mode
/// request can be recognised and refused with a reason instead of a derailment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Dist,
    Argc,
    Argv,
    Doti,
    Done,
    Stat,
    Serr,
    Sout,
    Doto,
    Cdir,
    Nfil,
    Name,
    File,
    Link,
    Dotd,
}

impl Tag {
    pub const fn bytes(self) -> &'static [u8; 4] {
        match self {
            Tag::Dist => b"DIST",
            Tag::Argc => b"ARGC",
            Tag::Argv => b"ARGV",
            Tag::Doti => b"DOTI",
            Tag::Done => b"DONE",
            Tag::Stat => b"STAT",
            Tag::Serr => b"SERR",
            Tag::Sout => b"SOUT",
            Tag::Doto => b"DOTO",
            Tag::Cdir => b"CDIR",
            Tag::Nfil => b"NFIL",
            Tag::Name => b"NAME",
            Tag::File => b"FILE",
            Tag::Link => b"LINK",
            Tag::Dotd => b"DOTD",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Tag> {
        const ALL: [Tag; 15] = [
            Tag::Dist,
            Tag::Argc,
            Tag::Argv,
            Tag::Doti,
            Tag::Done,
            Tag::Stat,
            Tag::Serr,
            Tag::Sout,
            Tag::Doto,
            Tag::Cdir,
            Tag::Nfil,
            Tag::Name,
            Tag::File,
            Tag::Link,
            Tag::Dotd,
        ];
        ALL.into_iter().find(|t| t.bytes() == b)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(self.bytes()).unwrap_or("????"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub tag: Tag,
    pub val: u32,
}

/// Why a byte stream is not a valid distcc conversation. Each variant says
/// enough for a log line that an administrator can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// The header is not 4 known letters and 8 hex digits.
    BadHeader([u8; HEADER_LEN]),
    /// A valid token, but not the one the conversation needs next.
    Unexpected {
        expected: Tag,
        got: Tag,
    },
    UnsupportedVersion(u32),
    /// A length or count beyond what this side accepts.
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// The peer closed the connection in the middle of a message.
    Truncated(&'static str),
    Lzo(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadHeader(h) => {
                write!(f, "not a distcc packet header: {:?}", String::from_utf8_lossy(h))
            }
            ProtocolError::Unexpected { expected, got } => {
                write!(f, "protocol derailment: expected {expected}, got {got}")
            }
            ProtocolError::UnsupportedVersion(v) => {
                write!(f, "unsupported protocol version {v}")
            }
            ProtocolError::TooLarge { what, size, limit } => {
                write!(f, "{what} of {size} exceeds the limit of {limit}")
            }
            ProtocolError::Truncated(what) => write!(f, "connection closed while reading {what}"),
            ProtocolError::Lzo(e) => write!(f, "bad LZO data: {e}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Appends a header. distcc writes lowercase hex; so do we.
pub fn encode(tag: Tag, val: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(tag.bytes());
    out.extend_from_slice(format!("{val:08x}").as_bytes());
}

/// Appends a header and its body (the body's length is the value).
pub fn encode_body(tag: Tag, body: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(body.len()).expect("distcc bodies are limited to 4 GiB");
    encode(tag, len, out);
    out.extend_from_slice(body);
}

/// Reads a header. Uppercase hex is accepted, as distcc's `strtoul` does;
/// anything but 8 hex digits (a sign, a space, `0x`) is not.
pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Token, ProtocolError> {
    let tag = Tag::from_bytes(&h[..4]).ok_or(ProtocolError::BadHeader(*h))?;
    let mut val: u32 = 0;
    for &c in &h[4..] {
        let d = (c as char).to_digit(16).ok_or(ProtocolError::BadHeader(*h))?;
        val = (val << 4) | d;
    }
    Ok(Token { tag, val })
}

/// Reads a header that must carry `expected`.
pub fn expect(h: &[u8; HEADER_LEN], expected: Tag) -> Result<u32, ProtocolError> {
    let t = decode(h)?;
    if t.tag != expected {
        return Err(ProtocolError::Unexpected { expected, got: t.tag });
    }
    Ok(t.val)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> [u8; HEADER_LEN] {
        s.as_bytes().try_into().unwrap()
    }

    #[test]
    fn encodes_lowercase_hex() {
        let mut out = Vec::new();
        encode(Tag::Doto, 0x350, &mut out);
        assert_eq!(out, b"DOTO00000350");
        out.clear();
        encode(Tag::Serr, 0xdeadbeef, &mut out);
        assert_eq!(out, b"SERRdeadbeef");
    }

    #[test]
    fn decode_table() {
        type Case = (&'static str, Result<(Tag, u32), ()>);
        let cases: &[Case] = &[
            ("DIST00000001", Ok((Tag::Dist, 1))),
            ("DOTI0000000b", Ok((Tag::Doti, 11))),
            ("DOTI0000000B", Ok((Tag::Doti, 11))),
            ("STATffffffff", Ok((Tag::Stat, u32::MAX))),
            ("DIST0000000g", Err(())),
            ("DIST-0000001", Err(())),
            ("DIST 0000001", Err(())),
            ("DIST0x000001", Err(())),
            ("XXXX00000001", Err(())),
            ("dist00000001", Err(())),
        ];
        for (input, want) in cases {
            let got = decode(&h(input)).map(|t| (t.tag, t.val)).map_err(|_| ());
            assert_eq!(&got, want, "{input}");
        }
    }

    #[test]
    fn expect_reports_derailment() {
        assert_eq!(
            expect(&h("DOTI00000000"), Tag::Argv),
            Err(ProtocolError::Unexpected {
                expected: Tag::Argv,
                got: Tag::Doti
            })
        );
    }
}
