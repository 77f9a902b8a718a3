/*!
A `Job` as REAPI messages: the Command, the input root Directory tree and
the Action, each blob with its SHA-256 digest. Pure and deterministic.

REAPI digests the serialised messages, so two clients agree on an action
digest (and so share cache entries) only if they serialise the same
messages; the spec therefore fixes the order of every repeated field we
fill: environment variables by name, platform properties by name then
value, output paths, and each Directory's files and subdirectories by name
(by code point, which is UTF-8 byte order, which is `String`'s `Ord`).
prost writes fields in tag order and we use no maps, so equal messages
encode to equal bytes.
*/

use std::collections::BTreeMap;
use std::fmt;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::protobuf::Duration as PbDuration;
use prost::Message;
use sha2::{Digest as _, Sha256};

use super::Job;

/// What `prepare` makes of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The digest of `action`, the key of the action cache.
    pub action_digest: re::Digest,
    pub action: re::Action,
    pub command: re::Command,
    /// Every blob the server needs to run the action: the Action, the
    /// Command, each Directory and each input file's contents; one per
    /// digest, in digest order.
    pub blobs: Vec<(re::Digest, Vec<u8>)>,
}

/// Why a job cannot be an action. These are the caller's mistakes, not
/// the server's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalid {
    /// Not a relative, normalised, `/`-separated path.
    Path(String),
    /// Two inputs at one path, or a file where a directory must be.
    Clash(String),
    /// Two environment variables of one name.
    Env(String),
    /// No command line.
    NoArgv,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Path(p) => write!(f, "'{p}' is not a relative path inside the input root"),
            Invalid::Clash(p) => write!(f, "two inputs at '{p}'"),
            Invalid::Env(n) => write!(f, "environment variable {n} given twice"),
            Invalid::NoArgv => write!(f, "empty command line"),
        }
    }
}

/// The digest of `bytes`: lower-case hex SHA-256 and the size.
pub fn digest(bytes: &[u8]) -> re::Digest {
    let sum = Sha256::digest(bytes);
    let mut hash = String::with_capacity(64);
    for b in sum.iter() {
        hash.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        hash.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    re::Digest {
        hash,
        size_bytes: bytes.len() as i64,
    }
}

/// `hash/size`, as in resource names and logs.
pub fn show(d: &re::Digest) -> String {
    format!("{}/{}", d.hash, d.size_bytes)
}

/// The components of a relative, normalised path: no empty, `.` or `..`
/// component, no leading `/`. "" (the root) has none.
fn components(path: &str) -> Result<Vec<&str>, Invalid> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") || path.contains('\0') {
        return Err(Invalid::Path(path.to_owned()));
    }
    Ok(parts)
}

/// A directory of the input root while it is being built.
#[derive(Default)]
struct Tree {
    files: BTreeMap<String, re::FileNode>,
    dirs: BTreeMap<String, Tree>,
}

impl Tree {
    fn insert(&mut self, path: &str, node: re::FileNode) -> Result<(), Invalid> {
        let parts = components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(Invalid::Path(path.to_owned()));
        };
        let mut here = self;
        for d in dirs {
            if here.files.contains_key(*d) {
                return Err(Invalid::Clash(path.to_owned()));
            }
            here = here.dirs.entry((*d).to_owned()).or_default();
        }
        if here.dirs.contains_key(*name) || here.files.contains_key(*name) {
            return Err(Invalid::Clash(path.to_owned()));
        }
        here.files.insert(
            (*name).to_owned(),
            re::FileNode {
                name: (*name).to_owned(),
                ..node
            },
        );
        Ok(())
    }

    /// Serialises the tree bottom-up into `blobs` and returns the root's
    /// digest. BTreeMap iteration is the sorted order REAPI requires.
    fn seal(self, blobs: &mut BTreeMap<String, (re::Digest, Vec<u8>)>) -> re::Digest {
        let directories = self
            .dirs
            .into_iter()
            .map(|(name, sub)| re::DirectoryNode {
                name,
                digest: Some(sub.seal(blobs)),
            })
            .collect();
        let dir = re::Directory {
            files: self.files.into_values().collect(),
            directories,
            ..Default::default()
        };
        add(blobs, dir.encode_to_vec())
    }
}

fn add(blobs: &mut BTreeMap<String, (re::Digest, Vec<u8>)>, bytes: Vec<u8>) -> re::Digest {
    let d = digest(&bytes);
    blobs.entry(d.hash.clone()).or_insert_with(|| (d.clone(), bytes));
    d
}

/// Output paths as REAPI wants them: sorted, no duplicates.
fn outputs(job: &Job) -> Result<Vec<String>, Invalid> {
    let mut out = Vec::with_capacity(job.outputs.len());
    for o in &job.outputs {
        if components(o)?.is_empty() {
            return Err(Invalid::Path(o.clone()));
        }
        out.push(o.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn properties(pairs: &[(String, String)]) -> Option<re::Platform> {
    if pairs.is_empty() {
        return None;
    }
    let mut sorted = pairs.to_vec();
    sorted.sort();
    sorted.dedup();
    Some(re::Platform {
        properties: sorted
            .into_iter()
            .map(|(name, value)| re::platform::Property { name, value })
            .collect(),
    })
}

/// The Command for `job`.
// `output_files` and `Command.platform` are deprecated, but filled on
// purpose (see below).
#[allow(deprecated)]
pub fn command(job: &Job) -> Result<re::Command, Invalid> {
    if job.argv.is_empty() {
        return Err(Invalid::NoArgv);
    }
    components(&job.working_dir)?;
    let mut env = job.env.clone();
    env.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = env.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Invalid::Env(w[0].0.clone()));
    }
    let outputs = outputs(job)?;
    Ok(re::Command {
        arguments: job.argv.clone(),
        environment_variables: env
            .into_iter()
            .map(|(name, value)| re::command::EnvironmentVariable { name, value })
            .collect(),
        // Both spellings: output_paths (v2.1) for new servers and workers,
        // which then ignore output_files; output_files for older ones.
        output_files: outputs.clone(),
        output_paths: outputs,
        // Deprecated in the Command since v2.2, but workers before it read
        // the platform only here; the scheduler reads the Action's.
        platform: properties(&job.platform),
        working_directory: job.working_dir.clone(),
        ..Default::default()
    })
}

/// The action for `job`, with every blob it needs.
pub fn prepare(job: &Job) -> Result<Prepared, Invalid> {
    let command = command(job)?;
    let mut blobs = BTreeMap::new();
    let mut root = Tree::default();
    for input in &job.inputs {
        let d = add(&mut blobs, input.bytes.clone());
        root.insert(
            &input.path,
            re::FileNode {
                digest: Some(d),
                is_executable: input.executable,
                ..Default::default()
            },
        )?;
    }
    let input_root_digest = root.seal(&mut blobs);
    let command_digest = add(&mut blobs, command.encode_to_vec());
    let timeout = (!job.timeout.is_zero()).then(|| PbDuration {
        seconds: job.timeout.as_secs() as i64,
        nanos: job.timeout.subsec_nanos() as i32,
    });
    let action = re::Action {
        command_digest: Some(command_digest),
        input_root_digest: Some(input_root_digest),
        timeout,
        do_not_cache: job.do_not_cache,
        salt: job.salt.clone(),
        platform: properties(&job.platform),
    };
    let action_digest = add(&mut blobs, action.encode_to_vec());
    Ok(Prepared {
        action_digest,
        action,
        command,
        blobs: blobs.into_values().collect(),
    })
}

#[cfg(test)]
#[allow(deprecated)] // the tests read Command.platform, as old workers do
mod tests {
    use super::*;
    use crate::reapi::Input;
    use std::time::Duration;

    /// An edit of `gcc_job()`.
    type Change = fn(&mut Job);

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    fn input(path: &str, bytes: &[u8], executable: bool) -> Input {
        Input {
            path: path.to_owned(),
            bytes: bytes.to_vec(),
            executable,
        }
    }

    /// The job of the golden digests below (see `golden.py` in the test).
    fn gcc_job() -> Job {
        Job {
            argv: s(&["gcc", "-c", "x.i", "-o", "x.o"]),
            env: pairs(&[("PATH", "/usr/bin:/bin"), ("LANG", "C")]),
            working_dir: String::new(),
            inputs: vec![input("x.i", b"int x;\n", false)],
            outputs: s(&["x.o"]),
            platform: pairs(&[("OSFamily", "linux"), ("ISA", "x86-64")]),
            salt: b"gcc 12".to_vec(),
            timeout: Duration::from_secs(300),
            do_not_cache: false,
        }
    }

    #[test]
    fn digests_of_known_bytes() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                b"abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (bytes, hash) in cases {
            let d = digest(bytes);
            assert_eq!(d.hash, *hash);
            assert_eq!(d.size_bytes, bytes.len() as i64);
        }
        assert_eq!(show(&digest(b"abc")), format!("{}/3", cases[1].1));
    }

    /// Checked independently: the same messages built with BuildGrid's
    /// generated Python protobuf classes (`buildgrid._protos`) and hashed
    /// with hashlib give these digests. The script:
    ///
    /// ```python
    /// from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re
    /// import hashlib
    /// def d(m):
    ///     b = m.SerializeToString(); return re.Digest(hash=hashlib.sha256(b).hexdigest(), size_bytes=len(b))
    /// plat = re.Platform(properties=[re.Platform.Property(name="ISA", value="x86-64"),
    ///                                re.Platform.Property(name="OSFamily", value="linux")])
    /// cmd = re.Command(arguments=["gcc", "-c", "x.i", "-o", "x.o"],
    ///     environment_variables=[re.Command.EnvironmentVariable(name="LANG", value="C"),
    ///                            re.Command.EnvironmentVariable(name="PATH", value="/usr/bin:/bin")],
    ///     output_files=["x.o"], output_paths=["x.o"], platform=plat)
    /// src = b"int x;\n"
    /// root = re.Directory(files=[re.FileNode(name="x.i", digest=re.Digest(
    ///     hash=hashlib.sha256(src).hexdigest(), size_bytes=len(src)))])
    /// act = re.Action(command_digest=d(cmd), input_root_digest=d(root), salt=b"gcc 12", platform=plat)
    /// act.timeout.FromSeconds(300)
    /// print(d(cmd), d(root), d(act))
    /// ```
    #[test]
    fn golden_digests_match_an_independent_encoder() {
        let p = prepare(&gcc_job()).unwrap();
        assert_eq!(
            show(p.action.command_digest.as_ref().unwrap()),
            "78e46fb9b5f67ff498c3b317228c344540124e4bd2a532edb65a9d9c64b3ae5d/103"
        );
        assert_eq!(
            show(p.action.input_root_digest.as_ref().unwrap()),
            "c4dddb0da5dcf0c80706563cd77dc41b2188d42cebb343653a1fac25aa3bda25/77"
        );
        assert_eq!(
            show(&p.action_digest),
            "fd9e301f27efcf77f2b2bef1cf95de178bbfdf56e8ec6128ef5e53624d214ea3/189"
        );
    }

    #[test]
    fn the_order_given_does_not_change_the_action() {
        let base = prepare(&gcc_job()).unwrap();
        let mut j = gcc_job();
        j.env.reverse();
        j.platform.reverse();
        j.outputs = s(&["x.o", "x.o"]);
        assert_eq!(prepare(&j).unwrap(), base);

        // Inputs in any order make the same tree.
        let files = [
            input("b/z.h", b"z", false),
            input("a.i", b"a", false),
            input("b/c/d.h", b"d", false),
            input("b/a.h", b"a", true),
        ];
        let mut j1 = gcc_job();
        j1.inputs = files.to_vec();
        let mut j2 = gcc_job();
        j2.inputs = files.iter().rev().cloned().collect();
        assert_eq!(prepare(&j1).unwrap(), prepare(&j2).unwrap());
    }

    #[test]
    fn commands_are_sorted_as_reapi_requires() {
        let mut j = gcc_job();
        j.env = pairs(&[("Z", "1"), ("A", "2"), ("M", "3"), ("a", "4")]);
        j.outputs = s(&["x.o", "deps/x.d", "x.o", "a.o"]);
        j.platform = pairs(&[("b", "2"), ("b", "1"), ("a", "9")]);
        let c = command(&j).unwrap();
        let names: Vec<&str> = c.environment_variables.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["A", "M", "Z", "a"]);
        assert_eq!(c.output_paths, ["a.o", "deps/x.d", "x.o"]);
        assert_eq!(c.output_files, c.output_paths);
        let props: Vec<(&str, &str)> = c
            .platform
            .as_ref()
            .unwrap()
            .properties
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_str()))
            .collect();
        assert_eq!(props, [("a", "9"), ("b", "1"), ("b", "2")]);
        // The argv is the one thing whose order means something.
        assert_eq!(c.arguments, j.argv);
    }

    /// Finds the Directory blob of `d` among `p`'s blobs.
    fn directory(p: &Prepared, d: &re::Digest) -> re::Directory {
        let (_, bytes) = p.blobs.iter().find(|(b, _)| b == d).expect("directory blob");
        re::Directory::decode(bytes.as_slice()).unwrap()
    }

    #[test]
    fn the_input_root_is_a_tree_of_sorted_directories() {
        let mut j = gcc_job();
        j.inputs = vec![
            input("src/b.h", b"b", false),
            input("x.i", b"int x;\n", false),
            input("src/a.h", b"a", false),
            input("src/sub/c.h", b"a", false),
            input("tool", b"#!/bin/sh\n", true),
            input("B.i", b"B", false),
        ];
        let p = prepare(&j).unwrap();
        let root = directory(&p, p.action.input_root_digest.as_ref().unwrap());
        let files: Vec<(&str, bool)> = root
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.is_executable))
            .collect();
        assert_eq!(files, [("B.i", false), ("tool", true), ("x.i", false)]);
        assert_eq!(root.directories.len(), 1);
        assert_eq!(root.directories[0].name, "src");
        let src = directory(&p, root.directories[0].digest.as_ref().unwrap());
        let names: Vec<&str> = src.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.h", "b.h"]);
        let sub = directory(&p, src.directories[0].digest.as_ref().unwrap());
        assert_eq!(sub.files[0].name, "c.h");
        // a.h and sub/c.h have the same contents: one blob for both.
        assert_eq!(src.files[0].digest, sub.files[0].digest);
        let hashes: Vec<&str> = p.blobs.iter().map(|(d, _)| d.hash.as_str()).collect();
        let mut sorted = hashes.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(hashes, sorted, "one blob per digest, in digest order");
        // Every blob is what its digest says.
        for (d, bytes) in &p.blobs {
            assert_eq!(&digest(bytes), d);
        }
        // Action, Command, 3 directories, 5 distinct file contents.
        assert_eq!(p.blobs.len(), 2 + 3 + 5);
    }

    #[test]
    fn what_changes_the_action_digest() {
        let base = prepare(&gcc_job()).unwrap().action_digest;
        let changes: &[(&str, Change)] = &[
            ("salt", |j| j.salt = b"gcc 13".to_vec()),
            ("argv", |j| j.argv.push("-O2".into())),
            ("env", |j| j.env.push(("TZ".into(), "UTC".into()))),
            ("input bytes", |j| j.inputs[0].bytes.push(b' ')),
            ("input mode", |j| j.inputs[0].executable = true),
            ("platform", |j| j.platform.push(("pool".into(), "big".into()))),
            ("timeout", |j| j.timeout = Duration::from_secs(60)),
            ("do_not_cache", |j| j.do_not_cache = true),
            ("working dir", |j| j.working_dir = "w".into()),
        ];
        for (what, change) in changes {
            let mut j = gcc_job();
            change(&mut j);
            assert_ne!(prepare(&j).unwrap().action_digest, base, "{what}");
        }
    }

    #[test]
    fn timeouts_and_empty_fields() {
        let mut j = gcc_job();
        j.timeout = Duration::from_millis(1500);
        let t = prepare(&j).unwrap().action.timeout.unwrap();
        assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
        j.timeout = Duration::ZERO;
        j.platform.clear();
        j.inputs.clear();
        let p = prepare(&j).unwrap();
        assert_eq!(p.action.timeout, None, "zero: the server's default");
        assert_eq!(p.action.platform, None);
        assert_eq!(p.command.platform, None);
        // The empty input root is the empty Directory: the digest of "".
        assert_eq!(p.action.input_root_digest, Some(digest(b"")));
    }

    #[test]
    fn bad_jobs() {
        let cases: &[(Change, Invalid)] = &[
            (|j| j.argv.clear(), Invalid::NoArgv),
            (
                |j| j.inputs[0].path = "/abs/x.i".into(),
                Invalid::Path("/abs/x.i".into()),
            ),
            (
                |j| j.inputs[0].path = "../x.i".into(),
                Invalid::Path("../x.i".into()),
            ),
            (
                |j| j.inputs[0].path = "a/./x.i".into(),
                Invalid::Path("a/./x.i".into()),
            ),
            (
                |j| j.inputs[0].path = "a//x.i".into(),
                Invalid::Path("a//x.i".into()),
            ),
            (|j| j.inputs[0].path = "a/".into(), Invalid::Path("a/".into())),
            (|j| j.inputs[0].path = String::new(), Invalid::Path(String::new())),
            (
                |j| j.outputs[0] = "/tmp/x.o".into(),
                Invalid::Path("/tmp/x.o".into()),
            ),
            (|j| j.outputs[0] = String::new(), Invalid::Path(String::new())),
            (|j| j.working_dir = "../w".into(), Invalid::Path("../w".into())),
            (
                |j| j.env.push(("PATH".into(), "/x".into())),
                Invalid::Env("PATH".into()),
            ),
            (
                |j| j.inputs.push(input("x.i", b"", false)),
                Invalid::Clash("x.i".into()),
            ),
            (
                |j| j.inputs.push(input("x.i/y.h", b"", false)),
                Invalid::Clash("x.i/y.h".into()),
            ),
            (
                |j| {
                    j.inputs.push(input("d/y.h", b"", false));
                    j.inputs.push(input("d", b"", false));
                },
                Invalid::Clash("d".into()),
            ),
        ];
        for (i, (change, want)) in cases.iter().enumerate() {
            let mut j = gcc_job();
            change(&mut j);
            assert_eq!(prepare(&j).err().as_ref(), Some(want), "case {i}");
        }
    }
}
