/*!
The request and reply of one compilation, and decoders that say what they
need next (a header or a body of known length) so that the std and tokio
adapters share every rule and differ only in how they read.
*/

use super::lzo::{self, LzoError};
use super::token::{self, HEADER_LEN, ProtocolError, Tag};

/// How bulk bodies (DOTI, SERR, SOUT, DOTO) travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// LZO1X-1, as distcc's miniLZO.
    Lzo,
}

/// A protocol version as sent in `DIST` (doc/protocol-*.txt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// 1: the client preprocesses; bodies as they are.
    Plain,
    /// 2: as 1, bodies LZO-compressed (`,lzo`).
    Lzo,
    /// 3: pump mode (`,cpp,lzo`): the server preprocesses the source and
    /// headers the client sends. Recognised so it can be refused with a reply.
    Pump,
}

/// Every version: its number on the wire and its compression. One row each.
const VERSIONS: &[(Version, u32, Compression)] = &[
    (Version::Plain, 1, Compression::None),
    (Version::Lzo, 2, Compression::Lzo),
    (Version::Pump, 3, Compression::Lzo),
];

impl Version {
    fn row(self) -> &'static (Version, u32, Compression) {
        VERSIONS
            .iter()
            .find(|r| r.0 == self)
            .expect("every version has a row")
    }

    /// Every version, in order: what a server serves.
    pub fn all() -> impl Iterator<Item = Version> {
        VERSIONS.iter().map(|r| r.0)
    }

    pub fn new(number: u32) -> Option<Version> {
        VERSIONS.iter().find(|r| r.1 == number).map(|r| r.0)
    }

    /// What a host's options ask for: `,lzo` compresses, `,cpp` (which needs
    /// `,lzo`) is pump mode.
    pub fn for_host(compression: Compression, pump: bool) -> Version {
        match (compression, pump) {
            (Compression::Lzo, true) => Version::Pump,
            (Compression::Lzo, false) => Version::Lzo,
            (Compression::None, _) => Version::Plain,
        }
    }

    pub fn number(self) -> u32 {
        self.row().1
    }

    pub fn compression(self) -> Compression {
        self.row().2
    }
}

/// What a peer may make us read. Lengths are checked before anything of that
/// size is allocated, and bodies are read as they arrive, so a lying length
/// costs the liar bandwidth, not our memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_argc: u32,
    pub max_arg_len: u32,
    pub max_argv_bytes: u64,
    /// Largest body on the wire (compressed size for protocol 2).
    pub max_body: u32,
    /// Largest body after decompression; for protocol 3, all files together.
    pub max_plain: usize,
    /// Most `NFIL` entries (protocol 3).
    pub max_files: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_argc: 4096,
            max_arg_len: 64 << 10,
            max_argv_bytes: 1 << 20,
            max_body: 512 << 20,
            max_plain: 1 << 30,
            max_files: 1 << 16,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub version: Version,
    pub argv: Vec<Vec<u8>>,
    /// The preprocessed source, decompressed (protocols 1 and 2).
    pub doti: Vec<u8>,
    /// Protocol 3: the client's directory and the files it sends.
    pub pump: Option<PumpInput>,
}

/// What a protocol-3 (pump mode) request carries instead of DOTI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PumpInput {
    /// `CDIR`: the client's working directory, absolute.
    pub cwd: Vec<u8>,
    /// `NFIL` entries, in order: the client's absolute path, and the file's
    /// contents (decompressed) or a symlink's target. The bytes are the
    /// peer's: checking them is the server's job.
    pub entries: Vec<(Vec<u8>, PumpEntry)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PumpEntry {
    File(Vec<u8>),
    Link(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub version: Version,
    /// A raw Unix wait status (`exit << 8`, or the signal number).
    pub status: u32,
    pub stderr: Vec<u8>,
    pub stdout: Vec<u8>,
    pub object: Vec<u8>,
    /// Protocol 3, after a successful compile: the dependency file, with
    /// the client's paths (distcc 3.4 always sends it then).
    pub dotd: Option<Vec<u8>>,
}

/// A bulk body as it goes on the wire: compressed if the version says so.
/// The client writes the header and the body separately, to not copy a
/// large source; `put_bulk` appends both.
pub fn bulk(version: Version, tag: Tag, plain: &[u8]) -> ([u8; HEADER_LEN], std::borrow::Cow<'_, [u8]>) {
    let body = match version.compression() {
        Compression::Lzo => std::borrow::Cow::Owned(lzo::compress(plain)),
        Compression::None => std::borrow::Cow::Borrowed(plain),
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    token::encode(tag, body.len() as u32, &mut header);
    (header.try_into().expect("a header is 12 bytes"), body)
}

fn put_bulk(version: Version, tag: Tag, plain: &[u8], out: &mut Vec<u8>) {
    let (header, body) = bulk(version, tag, plain);
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
}

fn get_bulk(version: Version, body: Vec<u8>, limits: &Limits) -> Result<Vec<u8>, ProtocolError> {
    if version.compression() == Compression::Lzo {
        lzo::decompress(&body, limits.max_plain).map_err(|e| match e {
            LzoError::TooLarge { limit } => ProtocolError::TooLarge {
                what: "decompressed body",
                size: limit as u64 + 1,
                limit: limit as u64,
            },
            LzoError::Malformed(m) => ProtocolError::Lzo(m),
        })
    } else if body.len() > limits.max_plain {
        Err(ProtocolError::TooLarge {
            what: "body",
            size: body.len() as u64,
            limit: limits.max_plain as u64,
        })
    } else {
        Ok(body)
    }
}

impl Request {
    /// The exact bytes a distcc client sends (the headers before DOTI can go
    /// out while the preprocessor still runs: see `encode_head`).
    pub fn encode(&self) -> Vec<u8> {
        let Some(pump) = &self.pump else {
            let mut out = encode_head(self.version, &self.argv);
            put_bulk(self.version, Tag::Doti, &self.doti, &mut out);
            return out;
        };
        let wire: Vec<(Vec<u8>, PumpEntry)> = pump
            .entries
            .iter()
            .map(|(name, e)| {
                let e = match e {
                    PumpEntry::File(bytes) => {
                        PumpEntry::File(bulk(self.version, Tag::File, bytes).1.into_owned())
                    }
                    link => link.clone(),
                };
                (name.clone(), e)
            })
            .collect();
        encode_pump(self.version, &pump.cwd, &self.argv, &wire)
    }
}

/// A protocol-3 request with each FILE body already as it goes on the wire
/// (the include server compresses once per build; the client copies).
pub fn encode_pump(version: Version, cwd: &[u8], argv: &[Vec<u8>], wire: &[(Vec<u8>, PumpEntry)]) -> Vec<u8> {
    let size: usize = wire
        .iter()
        .map(|(n, e)| {
            n.len()
                + 2 * HEADER_LEN
                + match e {
                    PumpEntry::File(b) | PumpEntry::Link(b) => b.len(),
                }
        })
        .sum();
    let mut out = Vec::with_capacity(size + 4096);
    token::encode(Tag::Dist, version.number(), &mut out);
    token::encode_body(Tag::Cdir, cwd, &mut out);
    token::encode(Tag::Argc, argv.len() as u32, &mut out);
    for a in argv {
        token::encode_body(Tag::Argv, a, &mut out);
    }
    token::encode(Tag::Nfil, wire.len() as u32, &mut out);
    for (name, entry) in wire {
        token::encode_body(Tag::Name, name, &mut out);
        match entry {
            PumpEntry::File(body) => token::encode_body(Tag::File, body, &mut out),
            PumpEntry::Link(target) => token::encode_body(Tag::Link, target, &mut out),
        }
    }
    out
}

/// `DIST`, `ARGC` and every `ARGV`.
pub fn encode_head(version: Version, argv: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    token::encode(Tag::Dist, version.number(), &mut out);
    token::encode(Tag::Argc, argv.len() as u32, &mut out);
    for a in argv {
        token::encode_body(Tag::Argv, a, &mut out);
    }
    out
}

impl Reply {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        token::encode(Tag::Done, self.version.number(), &mut out);
        token::encode(Tag::Stat, self.status, &mut out);
        put_bulk(self.version, Tag::Serr, &self.stderr, &mut out);
        put_bulk(self.version, Tag::Sout, &self.stdout, &mut out);
        // distcc sends an object only for a successful compile.
        let object: &[u8] = if self.status == 0 { &self.object } else { &[] };
        put_bulk(self.version, Tag::Doto, object, &mut out);
        if self.version == Version::Pump && self.status == 0 {
            put_bulk(
                self.version,
                Tag::Dotd,
                self.dotd.as_deref().unwrap_or_default(),
                &mut out,
            );
        }
        out
    }
}

/// Why reading a message failed: the stream, or what came on it. Shared by
/// the std (`blocking`) and tokio (`nonblocking`) adapters.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    Protocol(ProtocolError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Protocol(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<ProtocolError> for ReadError {
    fn from(e: ProtocolError) -> Self {
        ReadError::Protocol(e)
    }
}

/// What a decoder wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Header,
    /// A header, or the end of the stream (distcc 3.4's client tolerates
    /// a protocol-3 reply without its DOTD).
    HeaderOrEnd,
    Body {
        len: u32,
        what: &'static str,
    },
    Done,
}

/// One side of a conversation, decoded step by step.
pub trait Decoder {
    type Output;
    fn need(&self) -> Need;
    fn header(&mut self, h: &[u8; HEADER_LEN]) -> Result<(), ProtocolError>;
    fn body(&mut self, b: Vec<u8>) -> Result<(), ProtocolError>;
    /// Call once `need()` is `Done`.
    fn finish(self) -> Self::Output;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReqState {
    Dist,
    Cdir,
    CdirBody,
    Argc,
    Argv,
    ArgvBody,
    Doti,
    DotiBody(u32),
    Nfil,
    Name,
    NameBody,
    Entry,
    FileBody,
    LinkBody,
    Done,
}

pub struct RequestDecoder {
    limits: Limits,
    state: ReqState,
    version: Version,
    argc: u32,
    argv: Vec<Vec<u8>>,
    argv_bytes: u64,
    pending: u32,
    doti: Vec<u8>,
    /// Whether protocol 3 is read (else refused at `DIST`).
    accept_pump: bool,
    pump: Option<PumpInput>,
    nfil: u32,
    name: Vec<u8>,
    pump_bytes: usize,
}

impl RequestDecoder {
    /// A decoder that also reads protocol 3 (pump mode).
    pub fn with_pump(limits: Limits) -> Self {
        RequestDecoder {
            accept_pump: true,
            ..RequestDecoder::new(limits)
        }
    }

    /// A decoder that refuses protocol 3 at its `DIST`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            state: ReqState::Dist,
            version: Version::Plain,
            argc: 0,
            argv: Vec::new(),
            argv_bytes: 0,
            pending: 0,
            doti: Vec::new(),
            accept_pump: false,
            pump: None,
            nfil: 0,
            name: Vec::new(),
            pump_bytes: 0,
        }
    }

    /// The version, once `DIST` has been read (so a refusal can answer in it).
    pub fn version(&self) -> Option<Version> {
        (self.state != ReqState::Dist).then_some(self.version)
    }

    /// Lowers the most the source may decompress to (the daemon's memory
    /// budget can be smaller than `--max-input-mb` when it is busy).
    pub fn cap_plain(&mut self, max: usize) {
        self.limits.max_plain = self.limits.max_plain.min(max);
    }

    /// Bytes of source held so far, decompressed: DOTI, or protocol 3's files.
    pub fn plain_bytes(&self) -> usize {
        self.doti.len() + self.pump_bytes
    }

    /// The words read so far (for log lines about a request that failed later).
    pub fn argv(&self) -> &[Vec<u8>] {
        &self.argv
    }
}

fn too_large(what: &'static str, size: u64, limit: u64) -> Result<(), ProtocolError> {
    if size > limit {
        Err(ProtocolError::TooLarge { what, size, limit })
    } else {
        Ok(())
    }
}

impl Decoder for RequestDecoder {
    type Output = Request;

    fn need(&self) -> Need {
        match self.state {
            ReqState::ArgvBody => Need::Body {
                len: self.pending,
                what: "ARGV",
            },
            ReqState::DotiBody(len) => Need::Body { len, what: "DOTI" },
            ReqState::CdirBody => Need::Body {
                len: self.pending,
                what: "CDIR",
            },
            ReqState::NameBody => Need::Body {
                len: self.pending,
                what: "NAME",
            },
            ReqState::FileBody => Need::Body {
                len: self.pending,
                what: "FILE",
            },
            ReqState::LinkBody => Need::Body {
                len: self.pending,
                what: "LINK",
            },
            ReqState::Done => Need::Done,
            _ => Need::Header,
        }
    }

    fn header(&mut self, h: &[u8; HEADER_LEN]) -> Result<(), ProtocolError> {
        match self.state {
            ReqState::Dist => {
                let v = token::expect(h, Tag::Dist)?;
                let version = Version::new(v).ok_or(ProtocolError::UnsupportedVersion(v))?;
                self.version = version;
                self.state = ReqState::Argc;
                if version == Version::Pump {
                    if !self.accept_pump {
                        // Answered with a refusal that says why.
                        return Err(ProtocolError::UnsupportedVersion(3));
                    }
                    self.state = ReqState::Cdir;
                }
            }
            ReqState::Cdir => {
                let len = token::expect(h, Tag::Cdir)?;
                too_large("CDIR", len.into(), self.limits.max_arg_len.into())?;
                self.pending = len;
                self.state = ReqState::CdirBody;
            }
            ReqState::Nfil => {
                let n = token::expect(h, Tag::Nfil)?;
                too_large("NFIL", n.into(), self.limits.max_files.into())?;
                self.nfil = n;
                self.state = if n == 0 { ReqState::Done } else { ReqState::Name };
            }
            ReqState::Name => {
                let len = token::expect(h, Tag::Name)?;
                too_large("NAME", len.into(), self.limits.max_arg_len.into())?;
                self.pending = len;
                self.state = ReqState::NameBody;
            }
            ReqState::Entry => {
                let t = token::decode(h)?;
                let state = match t.tag {
                    Tag::File => ReqState::FileBody,
                    Tag::Link => ReqState::LinkBody,
                    got => {
                        return Err(ProtocolError::Unexpected {
                            expected: Tag::File,
                            got,
                        });
                    }
                };
                let limit = if state == ReqState::FileBody {
                    self.limits.max_body
                } else {
                    self.limits.max_arg_len
                };
                too_large(
                    if state == ReqState::FileBody {
                        "FILE"
                    } else {
                        "LINK"
                    },
                    t.val.into(),
                    limit.into(),
                )?;
                self.pending = t.val;
                self.state = state;
            }
            ReqState::Argc => {
                let n = token::expect(h, Tag::Argc)?;
                too_large("ARGC", n.into(), self.limits.max_argc.into())?;
                if n == 0 {
                    return Err(ProtocolError::TooLarge {
                        what: "ARGC (must be at least 1)",
                        size: 0,
                        limit: 0,
                    });
                }
                self.argc = n;
                self.state = ReqState::Argv;
            }
            ReqState::Argv => {
                let len = token::expect(h, Tag::Argv)?;
                too_large("ARGV word", len.into(), self.limits.max_arg_len.into())?;
                self.argv_bytes += u64::from(len);
                too_large("total ARGV", self.argv_bytes, self.limits.max_argv_bytes)?;
                self.pending = len;
                self.state = ReqState::ArgvBody;
            }
            ReqState::Doti => {
                let len = token::expect(h, Tag::Doti)?;
                too_large("DOTI", len.into(), self.limits.max_body.into())?;
                self.state = if len == 0 {
                    ReqState::Done
                } else {
                    ReqState::DotiBody(len)
                };
            }
            ReqState::ArgvBody
            | ReqState::DotiBody(_)
            | ReqState::CdirBody
            | ReqState::NameBody
            | ReqState::FileBody
            | ReqState::LinkBody
            | ReqState::Done => {
                unreachable!("adapter read a header when a body or nothing was needed")
            }
        }
        Ok(())
    }

    fn body(&mut self, b: Vec<u8>) -> Result<(), ProtocolError> {
        match self.state {
            ReqState::ArgvBody => {
                self.argv.push(b);
                self.state = match (self.argv.len() as u32 == self.argc, &self.pump) {
                    (false, _) => ReqState::Argv,
                    (true, None) => ReqState::Doti,
                    (true, Some(_)) => ReqState::Nfil,
                };
            }
            ReqState::CdirBody => {
                self.pump = Some(PumpInput {
                    cwd: b,
                    entries: Vec::new(),
                });
                self.state = ReqState::Argc;
            }
            ReqState::NameBody => {
                self.name = b;
                self.state = ReqState::Entry;
            }
            ReqState::FileBody | ReqState::LinkBody => {
                let entry = if self.state == ReqState::FileBody {
                    // All files together within the plain limit, as one source.
                    let room = Limits {
                        max_plain: self.limits.max_plain.saturating_sub(self.pump_bytes),
                        ..self.limits.clone()
                    };
                    let bytes = if b.is_empty() {
                        b
                    } else {
                        get_bulk(self.version, b, &room)?
                    };
                    self.pump_bytes += bytes.len();
                    PumpEntry::File(bytes)
                } else {
                    PumpEntry::Link(b)
                };
                let pump = self.pump.as_mut().expect("protocol 3 has its CDIR");
                pump.entries.push((std::mem::take(&mut self.name), entry));
                self.state = if pump.entries.len() as u32 == self.nfil {
                    ReqState::Done
                } else {
                    ReqState::Name
                };
            }
            ReqState::DotiBody(_) => {
                self.doti = get_bulk(self.version, b, &self.limits)?;
                self.state = ReqState::Done;
            }
            _ => unreachable!("adapter read a body when a header was needed"),
        }
        Ok(())
    }

    fn finish(self) -> Request {
        debug_assert_eq!(self.state, ReqState::Done);
        Request {
            version: self.version,
            argv: self.argv,
            doti: self.doti,
            pump: self.pump,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyState {
    Done,
    Stat,
    Serr,
    Sout,
    Doto,
    Dotd,
    Body(Tag, u32),
    Finished,
}

pub struct ReplyDecoder {
    limits: Limits,
    version: Version,
    state: ReplyState,
    reply: Reply,
}

impl ReplyDecoder {
    pub fn new(version: Version, limits: Limits) -> Self {
        ReplyDecoder {
            limits,
            version,
            state: ReplyState::Done,
            reply: Reply {
                version,
                status: 0,
                stderr: vec![],
                stdout: vec![],
                object: vec![],
                dotd: None,
            },
        }
    }
}

impl ReplyDecoder {
    /// Protocol 3 sends DOTD after a successful compile's DOTO.
    fn after_doto(&self) -> ReplyState {
        if self.version == Version::Pump && self.reply.status == 0 {
            ReplyState::Dotd
        } else {
            ReplyState::Finished
        }
    }
}

impl Decoder for ReplyDecoder {
    type Output = Reply;

    fn need(&self) -> Need {
        match self.state {
            ReplyState::Body(tag, len) => Need::Body {
                len,
                what: match tag {
                    Tag::Serr => "SERR",
                    Tag::Sout => "SOUT",
                    Tag::Dotd => "DOTD",
                    _ => "DOTO",
                },
            },
            ReplyState::Finished => Need::Done,
            ReplyState::Dotd => Need::HeaderOrEnd,
            _ => Need::Header,
        }
    }

    fn header(&mut self, h: &[u8; HEADER_LEN]) -> Result<(), ProtocolError> {
        let (tag, next) = match self.state {
            ReplyState::Done => {
                let v = token::expect(h, Tag::Done)?;
                if v != self.version.number() {
                    return Err(ProtocolError::UnsupportedVersion(v));
                }
                self.state = ReplyState::Stat;
                return Ok(());
            }
            ReplyState::Stat => {
                self.reply.status = token::expect(h, Tag::Stat)?;
                self.state = ReplyState::Serr;
                return Ok(());
            }
            ReplyState::Serr => (Tag::Serr, ReplyState::Sout),
            ReplyState::Sout => (Tag::Sout, ReplyState::Doto),
            ReplyState::Doto => (Tag::Doto, self.after_doto()),
            ReplyState::Dotd => (Tag::Dotd, ReplyState::Finished),
            ReplyState::Body(..) | ReplyState::Finished => {
                unreachable!("adapter read a header when a body or nothing was needed")
            }
        };
        let len = token::expect(h, tag)?;
        too_large("reply body", len.into(), self.limits.max_body.into())?;
        if tag == Tag::Dotd && len == 0 {
            self.reply.dotd = Some(Vec::new());
        }
        self.state = if len == 0 {
            next
        } else {
            ReplyState::Body(tag, len)
        };
        Ok(())
    }

    fn body(&mut self, b: Vec<u8>) -> Result<(), ProtocolError> {
        let ReplyState::Body(tag, _) = self.state else {
            unreachable!("adapter read a body when a header was needed")
        };
        let plain = get_bulk(self.version, b, &self.limits)?;
        self.state = match tag {
            Tag::Serr => {
                self.reply.stderr = plain;
                ReplyState::Sout
            }
            Tag::Sout => {
                self.reply.stdout = plain;
                ReplyState::Doto
            }
            Tag::Dotd => {
                self.reply.dotd = Some(plain);
                ReplyState::Finished
            }
            _ => {
                self.reply.object = plain;
                self.after_doto()
            }
        };
        Ok(())
    }

    fn finish(self) -> Reply {
        self.reply
    }
}

#[cfg(test)]
mod tests {
    use super::super::blocking::read_message;
    use super::*;

    fn capture(name: &str) -> Vec<u8> {
        let p = format!("{}/tests/data/pump-capture/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    fn decode_all(bytes: &[u8], mut dec: RequestDecoder) -> Result<Request, ProtocolError> {
        let mut at = 0;
        loop {
            match dec.need() {
                Need::Header | Need::HeaderOrEnd => {
                    let h: &[u8; HEADER_LEN] = bytes
                        .get(at..at + HEADER_LEN)
                        .ok_or(ProtocolError::Truncated("a header"))?
                        .try_into()
                        .unwrap();
                    at += HEADER_LEN;
                    dec.header(h)?;
                }
                Need::Body { len, what } => {
                    let b = bytes
                        .get(at..at + len as usize)
                        .ok_or(ProtocolError::Truncated(what))?;
                    at += len as usize;
                    dec.body(b.to_vec())?;
                }
                Need::Done => {
                    assert_eq!(at, bytes.len(), "the whole capture is one request");
                    return Ok(dec.finish());
                }
            }
        }
    }

    #[test]
    fn distcc_34_pump_requests_decode_and_encode_back() {
        let bytes = capture("ok-md.c2s.bin");
        let req = decode_all(&bytes, RequestDecoder::with_pump(Limits::default())).unwrap();
        assert_eq!(req.version, Version::Pump);
        let pump = req
            .pump
            .as_ref()
            .expect("a protocol-3 request has CDIR and files");
        assert_eq!(pump.cwd, b"/tmp/pumptest");
        assert_eq!(req.argv.len(), 15);
        assert_eq!(req.argv[0], b"x86_64-linux-gnu-gcc");
        assert_eq!(&req.argv[13..], [b"-MT".to_vec(), b"src/main.o".to_vec()]);
        assert!(req.doti.is_empty());
        let files = pump
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, PumpEntry::File(_)))
            .count();
        let links: Vec<_> = pump
            .entries
            .iter()
            .filter_map(|(n, e)| match e {
                PumpEntry::Link(t) => Some((n.clone(), t.clone())),
                PumpEntry::File(_) => None,
            })
            .collect();
        assert_eq!((pump.entries.len(), files, links.len()), (17, 14, 3));
        assert!(
            links.contains(&(
                b"/usr/include".to_vec(),
                [&b"../"[..]; 22]
                    .concat()
                    .into_iter()
                    .chain(*b"usr/include")
                    .collect()
            ))
        );
        let (name, main) = &pump.entries[0];
        assert_eq!(name, b"/tmp/pumptest/src/main.c");
        let PumpEntry::File(main) = main else {
            panic!("main.c is a file")
        };
        assert!(main.starts_with(b"#include <stdio.h>\n#include \"foo.h\"\n"));
        // Our encoder gives the same request back, byte for byte: lzo1x_1 is
        // deterministic, and distcc 3.4 sends an empty file as no body.
        assert_eq!(req.encode(), bytes);
        // Every capture decodes; a decoder without pump mode refuses at DIST.
        for name in ["ok-nodeps.c2s.bin", "fail.c2s.bin"] {
            let r = decode_all(&capture(name), RequestDecoder::with_pump(Limits::default())).unwrap();
            assert_eq!(r.encode(), capture(name), "{name}");
        }
        assert_eq!(
            decode_all(&bytes, RequestDecoder::new(Limits::default())).unwrap_err(),
            ProtocolError::UnsupportedVersion(3)
        );
    }

    #[test]
    fn distcc_34_pump_replies_decode_and_encode_back() {
        fn reply(name: &str) -> Reply {
            let bytes = capture(name);
            let mut dec = ReplyDecoder::new(Version::Pump, Limits::default());
            let mut at = 0;
            loop {
                match dec.need() {
                    Need::HeaderOrEnd if at == bytes.len() => break,
                    Need::Header | Need::HeaderOrEnd => {
                        dec.header(bytes[at..at + HEADER_LEN].try_into().unwrap())
                            .unwrap();
                        at += HEADER_LEN;
                    }
                    Need::Body { len, .. } => {
                        dec.body(bytes[at..at + len as usize].to_vec()).unwrap();
                        at += len as usize;
                    }
                    Need::Done => break,
                }
            }
            assert_eq!(at, bytes.len(), "{name}: the whole capture is one reply");
            let r = dec.finish();
            assert_eq!(r.encode(), bytes, "{name}: encoded back byte for byte");
            r
        }
        let ok = reply("ok-md.s2c.bin");
        assert_eq!(ok.status, 0);
        assert!(ok.object.starts_with(b"\x7fELF"));
        let dotd = String::from_utf8(ok.dotd.expect("DOTD after a successful compile")).unwrap();
        assert!(
            dotd.starts_with("src/main.o: src/main.c /usr/include/stdc-predef.h"),
            "{dotd}"
        );
        assert!(!dotd.contains("distccd_"), "the server's root is gone: {dotd}");
        assert!(reply("ok-nodeps.s2c.bin").dotd.is_some(), "DOTD even without -MD");
        let fail = reply("fail.s2c.bin");
        assert_eq!(
            (fail.status, fail.dotd),
            (0x100, None),
            "no DOTD after a failed compile"
        );
    }

    #[test]
    fn pump_requests_are_bounded() {
        let base = decode_all(
            &capture("ok-md.c2s.bin"),
            RequestDecoder::with_pump(Limits::default()),
        )
        .unwrap();
        let bytes = base.encode();
        // Fewer files allowed than sent; all files together past the plain limit.
        let few = Limits {
            max_files: 16,
            ..Limits::default()
        };
        let e = decode_all(&bytes, RequestDecoder::with_pump(few)).unwrap_err();
        assert!(matches!(e, ProtocolError::TooLarge { what: "NFIL", .. }), "{e}");
        let small = Limits {
            max_plain: 400,
            ..Limits::default()
        };
        let e = decode_all(&bytes, RequestDecoder::with_pump(small)).unwrap_err();
        assert!(matches!(e, ProtocolError::TooLarge { .. }), "{e}");
        // Something other than FILE or LINK after a NAME.
        let mut bad = bytes.clone();
        let at = bad.windows(4).position(|w| w == b"FILE").unwrap();
        bad[at..at + 4].copy_from_slice(b"DOTI");
        let e = decode_all(&bad, RequestDecoder::with_pump(Limits::default())).unwrap_err();
        assert!(matches!(e, ProtocolError::Unexpected { .. }), "{e}");
    }

    #[test]
    fn versions_round_trip_their_numbers_and_say_their_compression() {
        let cases = [
            (1, Version::Plain, Compression::None),
            (2, Version::Lzo, Compression::Lzo),
            (3, Version::Pump, Compression::Lzo),
        ];
        for (n, v, c) in cases {
            assert_eq!(Version::new(n), Some(v));
            assert_eq!((v.number(), v.compression()), (n, c));
        }
        for n in [0, 4, u32::MAX] {
            assert_eq!(Version::new(n), None, "{n}");
        }
        assert_eq!(Version::for_host(Compression::None, false), Version::Plain);
        assert_eq!(Version::for_host(Compression::Lzo, false), Version::Lzo);
        assert_eq!(Version::for_host(Compression::Lzo, true), Version::Pump);
    }

    #[test]
    fn a_bulk_body_is_its_header_and_its_bytes_compressed_as_the_version_says() {
        let plain = vec![b'x'; 4096];
        for v in [Version::Plain, Version::Lzo] {
            let (h, body) = bulk(v, Tag::Doti, &plain);
            let mut out = Vec::new();
            put_bulk(v, Tag::Doti, &plain, &mut out);
            assert_eq!(out, [&h[..], &body[..]].concat());
            assert_eq!(body.len() < plain.len(), v == Version::Lzo, "{v:?}");
        }
    }

    fn argv(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    /// distcc-3.4.md §1.9, captured between real distcc 3.4 peers.
    const WORKED_V1: &[u8] = b"DIST00000001ARGC00000005ARGV00000003gccARGV00000002-cARGV00000003x.iARGV00000002-oARGV00000003x.oDOTI00000007int x;\n";

    #[test]
    fn request_v1_golden_bytes() {
        let req = Request {
            version: Version::Plain,
            argv: argv(&["gcc", "-c", "x.i", "-o", "x.o"]),
            doti: b"int x;\n".to_vec(),
            pump: None,
        };
        let bytes = req.encode();
        assert_eq!(bytes.len(), 116);
        assert_eq!(bytes, WORKED_V1);
        assert_eq!(
            read_message(&mut &bytes[..], RequestDecoder::new(Limits::default())).unwrap(),
            req
        );
    }

    #[test]
    fn request_v2_golden_bytes() {
        let req = Request {
            version: Version::Lzo,
            argv: argv(&["gcc", "-c", "x.i", "-o", "x.o"]),
            doti: b"int x;\n".to_vec(),
            pump: None,
        };
        let mut want = WORKED_V1[..WORKED_V1.len() - 19].to_vec();
        want[11] = b'2';
        want.extend_from_slice(b"DOTI0000000b\x18int x;\n\x11\x00\x00");
        assert_eq!(req.encode(), want);
        assert_eq!(
            read_message(&mut &want[..], RequestDecoder::new(Limits::default())).unwrap(),
            req
        );
        // Empty input: zero length, no body, even compressed.
        let empty = Request { doti: vec![], ..req };
        assert!(empty.encode().ends_with(b"x.oDOTI00000000"));
    }

    #[test]
    fn reply_golden_bytes() {
        let failed = Reply {
            version: Version::Plain,
            status: 0x100,
            stderr: b"y.i:1:9: error: expected expression\n".to_vec(),
            stdout: vec![],
            object: b"ignored on failure".to_vec(),
            dotd: None,
        };
        let bytes = failed.encode();
        assert_eq!(
            bytes,
            b"DONE00000001STAT00000100SERR00000024y.i:1:9: error: expected expression\nSOUT00000000DOTO00000000"
        );
        let back = read_message(
            &mut &bytes[..],
            ReplyDecoder::new(Version::Plain, Limits::default()),
        )
        .unwrap();
        assert_eq!(
            back,
            Reply {
                object: vec![],
                dotd: None,
                ..failed
            }
        );

        let ok = Reply {
            version: Version::Lzo,
            status: 0,
            stderr: vec![],
            stdout: vec![],
            object: vec![0x7f; 900],
            dotd: None,
        };
        let bytes = ok.encode();
        assert!(bytes.starts_with(b"DONE00000002STAT00000000SERR00000000SOUT00000000DOTO"));
        assert_eq!(
            read_message(
                &mut &bytes[..],
                ReplyDecoder::new(Version::Lzo, Limits::default())
            )
            .unwrap(),
            ok
        );
    }

    #[test]
    fn hostile_requests_are_refused_with_a_reason() {
        let small = Limits {
            max_argc: 8,
            max_arg_len: 16,
            max_argv_bytes: 40,
            max_body: 64,
            max_plain: 1024,
            max_files: 4,
        };
        let cases: &[(&[u8], &str)] = &[
            (b"DIST00000004", "unsupported protocol version 4"),
            (b"DIST00000000", "unsupported protocol version 0"),
            (b"DIST00000003CDIR00000001/", "unsupported protocol version 3"),
            (b"GET / HTTP/1.1\r\n", "not a distcc packet header"),
            (
                b"DIST00000001ARGCffffffff",
                "ARGC of 4294967295 exceeds the limit of 8",
            ),
            (b"DIST00000001ARGC00000000", "ARGC (must be at least 1)"),
            (
                b"DIST00000001ARGC00000001ARGV7fffffff",
                "ARGV word of 2147483647 exceeds",
            ),
            (b"DIST00000001ARGC00000001DOTI00000000", "expected ARGV, got DOTI"),
            (
                b"DIST00000001ARGC00000001ARGV00000003gccDOTIffffffff",
                "DOTI of 4294967295 exceeds",
            ),
            (
                b"DIST00000001ARGC00000001ARGV00000003gccDOTI00000010int",
                "connection closed while reading DOTI",
            ),
            (
                b"DIST00000002ARGC00000001ARGV00000003gccDOTI00000004\xff\xff\xff\xff",
                "bad LZO data",
            ),
            (
                b"DIST00000001ARGC00000002ARGV00000003gcc",
                "connection closed while reading a header",
            ),
        ];
        for (bytes, want) in cases {
            let err = read_message(&mut &bytes[..], RequestDecoder::new(small.clone())).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{:?}: {err}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut many = b"DIST00000001ARGC00000005".to_vec();
        for _ in 0..5 {
            many.extend_from_slice(b"ARGV0000000aaaaaaaaaaa");
        }
        let err = read_message(&mut &many[..], RequestDecoder::new(small.clone())).unwrap_err();
        assert!(
            err.to_string()
                .contains("total ARGV of 50 exceeds the limit of 40"),
            "{err}"
        );

        // An LZO bomb: 1 KiB limit, 1 MiB of zeros inside.
        let bomb = Request {
            version: Version::Lzo,
            argv: argv(&["gcc"]),
            doti: vec![0; 1 << 20],
            pump: None,
        }
        .encode();
        let roomy = Limits {
            max_body: 1 << 20,
            ..small
        };
        let err = read_message(&mut &bomb[..], RequestDecoder::new(roomy)).unwrap_err();
        assert!(err.to_string().contains("decompressed body"), "{err}");
    }
}
