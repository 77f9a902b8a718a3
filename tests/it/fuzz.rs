//! Randomised input for every parser that takes bytes from outside: the
//! protocol decoders, argument classification and the server's check, the
//! host grammar, DISTCC_ARGS and distccd's options, the preprocessed-text
//! scan, and state records. A stable-Rust stand-in for cargo-fuzz (no
//! nightly toolchain here): mutation of valid inputs plus token soups, a
//! fixed seed per run so failures reproduce, bounded by time.
//! `DISTCC_RS_FUZZ_SECS` sets the seconds per target (default 2);
//! `DISTCC_RS_FUZZ_SEED` the seed.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use distcc::args::{classify, server};
use distcc::client::hosts;
use distcc::daemon::{confd, options};
use distcc::monitor::state;
use distcc::protocol::blocking::read_message;
use distcc::protocol::message::{ReplyDecoder, RequestDecoder};
use distcc::protocol::{Limits, Reply, Version};

/// xorshift64*: tiny, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const TOKENS: &[&[u8]] = &[
    b"DIST",
    b"ARGC",
    b"ARGV",
    b"DOTI",
    b"DONE",
    b"STAT",
    b"SERR",
    b"SOUT",
    b"DOTO",
    b"CDIR",
    b"NFIL",
    b"NAME",
    b"FILE",
    b"LINK",
    b"DOTD",
    b"00000000",
    b"00000001",
    b"00000002",
    b"00000003",
    b"ffffffff",
    b"7fffffff",
    b"0000000b",
    b"gcc",
    b"-c",
    b"x.c",
    b"-o",
    b"\x11\x00\x00",
    b"\x18int x;\n\x11\x00\x00",
];

/// A valid input with a few random edits: flips, inserts, deletes, splices of tokens.
pub fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.insert(at, rng.next() as u8),
            2 if at < v.len() => {
                let n = rng.below(v.len() - at).min(16);
                v.drain(at..at + n);
            }
            3 => {
                let t: &[u8] = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            _ => v.truncate(at),
        }
    }
    v
}

/// Random sequences of protocol tokens and hex values.
pub fn token_soup(rng: &mut Rng) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..rng.below(12) {
        let t: &[u8] = TOKENS[rng.below(TOKENS.len())];
        v.extend_from_slice(t);
        if rng.below(3) == 0 {
            v.extend_from_slice(format!("{:08x}", rng.next() as u32 % 64).as_bytes());
        }
    }
    v
}

fn random_word(rng: &mut Rng) -> String {
    const WORDS: &[&str] = &[
        "gcc",
        "clang",
        "-c",
        "-S",
        "-E",
        "-o",
        "x.o",
        "a.c",
        "b.cc",
        "-x",
        "c",
        "c++",
        "-MD",
        "-MF",
        "-MT",
        "-MQ",
        "-Wp,-MD,d",
        "-I",
        "/inc",
        "-include",
        "-DX=1",
        "-g",
        "-gdwarf-4",
        "-march=native",
        "-fplugin=p.so",
        "@rsp",
        "-O2",
        "-Wa,-al",
        "-Xclang",
        "-load",
        "--sysroot=/",
        "-isysroot",
        "-save-temps",
        "-fprofile-use",
        "conftest.c",
        "-",
        "x.i",
        "-B",
        "-wrapper",
        "=",
        "",
        "-fdump-tree-all=/x",
        "-mllvm",
        "-target",
        "--target=x",
    ];
    if rng.below(5) == 0 {
        let n = rng.below(12);
        (0..n)
            .map(|_| char::from(b" -=/.,@:acgx#\"'\\\t"[rng.below(17)]))
            .collect()
    } else {
        rng.pick(WORDS).to_string()
    }
}

fn budget() -> Duration {
    let secs = std::env::var("DISTCC_RS_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

fn seed() -> u64 {
    std::env::var("DISTCC_RS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00d1_57cc)
}

/// Runs `one` until the time budget is spent; a panic fails the test and
/// names the seed and iteration to reproduce it.
fn run(name: &str, mut one: impl FnMut(&mut Rng)) {
    let seed = seed();
    let mut rng = Rng::new(seed);
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget() {
        let before = rng.0;
        if catch_unwind(AssertUnwindSafe(|| one(&mut rng))).is_err() {
            panic!("{name}: panic at iteration {n} (seed {seed}, rng state {before})");
        }
        n += 1;
    }
    eprintln!(
        "fuzz {name}: {n} inputs in {:.1}s, no failure",
        t.elapsed().as_secs_f64()
    );
    assert!(n > 100, "{name}: too few executions ({n})");
}

#[test]
fn fuzz_protocol_decoders() {
    let req = distcc::protocol::Request {
        version: Version::Lzo,
        argv: vec![b"gcc".to_vec(), b"-c".to_vec(), b"x.c".to_vec()],
        doti: b"int x;\n".to_vec(),
        pump: None,
    }
    .encode();
    let rep = Reply {
        version: Version::Lzo,
        status: 0,
        stderr: b"w".to_vec(),
        stdout: vec![],
        object: vec![7; 100],
        dotd: None,
    }
    .encode();
    let small = Limits {
        max_argc: 64,
        max_arg_len: 1024,
        max_argv_bytes: 8192,
        max_body: 1 << 16,
        max_plain: 1 << 18,
        max_files: 64,
    };
    run("protocol", |rng| {
        let input = match rng.below(3) {
            0 => mutate(rng, &req),
            1 => mutate(rng, &rep),
            _ => token_soup(rng),
        };
        if let Ok(r) = read_message(&mut &input[..], RequestDecoder::new(small.clone())) {
            // Whatever decodes must encode back to something that decodes the same.
            let again = read_message(&mut &r.encode()[..], RequestDecoder::new(small.clone())).unwrap();
            assert_eq!(again, r);
        }
        for v in [Version::Plain, Version::Lzo] {
            let _ = read_message(&mut &input[..], ReplyDecoder::new(v, small.clone()));
        }
    });
}

#[test]
fn fuzz_argument_rules() {
    run("arguments", |rng| {
        let n = 1 + rng.below(10);
        let argv: Vec<String> = (0..n).map(|_| random_word(rng)).collect();
        if let classify::Verdict::Remote(job) = classify::classify(&argv) {
            // A job the client would send is one its own rules can describe.
            assert!(!job.server_argv.is_empty() && !job.cpp_argv.is_empty());
            assert!(job.server_argv.iter().any(|w| w == "-c" || w == "-S"), "{argv:?}");
        }
        if let Ok(job) = server::rewrite(&argv, |_| "in.i".into(), "out.o", &[]) {
            // Whatever the server runs writes only its own output, and no flag
            // (as opposed to another flag's value) loads code or reads a file.
            assert!(
                !job.argv.iter().skip(1).any(|w| w.starts_with('@')),
                "{argv:?} -> {:?}",
                job.argv
            );
            let mut outs = Vec::new();
            let mut words = job.argv.iter().skip(1);
            while let Some(w) = words.next() {
                assert!(
                    !w.starts_with("-fplugin") && !w.starts_with("-B"),
                    "{argv:?} -> {:?}",
                    job.argv
                );
                if let Some(distcc::args::table::Match::NeedsNext(_)) = distcc::args::table::lookup(w) {
                    let value = words.next();
                    if w == "-o" {
                        outs.extend(value);
                    }
                }
            }
            assert_eq!(outs, ["out.o"], "{argv:?} -> {:?}", job.argv);
        }
        let text: Vec<u8> = mutate(rng, b"# 1 \"x.c\"\n#pragma once\nint x;\n");
        let _ = server::check_preprocessed(&text);
    });
}

#[test]
fn fuzz_host_grammar() {
    run("hosts", |rng| {
        let seed =
            b"localhost/2 red:3632/4,lzo [::1]:3700 @blue:/usr/bin/distccd,lzo --randomize # c\n".to_vec();
        let text = String::from_utf8_lossy(&mutate(rng, &seed)).into_owned();
        match hosts::parse(&text) {
            Ok(list) => {
                // The mapped list is itself a valid host list.
                let mapped = hosts::with_port(&list, 3692);
                hosts::parse(&mapped).unwrap_or_else(|e| panic!("{text:?} -> {mapped:?}: {e}"));
            }
            Err(e) => {
                assert!(e.offset <= text.len(), "{text:?}: offset {}", e.offset);
                let _ = e.to_string();
            }
        }
    });
}

#[test]
fn fuzz_daemon_configuration() {
    run("conf.d and options", |rng| {
        let seed = b"# c\nDISTCC_ARGS=\"--allow 127.0.0.1 --log-file '/a b' --jobs 4\"\nX=1\n".to_vec();
        let text = String::from_utf8_lossy(&mutate(rng, &seed)).into_owned();
        if let Ok(args) = confd::distcc_args(&text) {
            let _ = options::parse(&args, 2);
        }
        let n = rng.below(6);
        let args: Vec<String> = (0..n)
            .map(|_| {
                rng.pick(&[
                    "--allow",
                    "1.2.3.4/8",
                    "-a::1",
                    "--port=0",
                    "-j",
                    "7",
                    "--jobs=x",
                    "--listen",
                    "::",
                    "-W",
                    "--x",
                ])
                .to_string()
            })
            .collect();
        let _ = options::parse(&args, 2);
    });
}

#[test]
fn fuzz_state_records() {
    let good = state::encode(&state::State {
        pid: 1,
        file: "a.c".into(),
        host: "h".into(),
        slot: 0,
        phase: state::Phase::Send,
    });
    run("state records", |rng| {
        let b = mutate(rng, &good);
        if let Ok(s) = state::decode(&b) {
            let _ = distcc::monitor::text::render(&[s]);
        }
    });
}
