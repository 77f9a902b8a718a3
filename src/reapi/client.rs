/*!
The I/O of a REAPI run: one connection, a cache lookup, uploads, `Execute`
and downloads, on a tokio current-thread runtime made inside `run` and
dropped before it returns.

Why each dependency:
- `bazel-remote-apis`: the generated REAPI v2, ByteStream, longrunning and
  google.rpc messages and tonic client stubs (no protoc at build time).
- `tonic` (features `channel`, `tls-ring`, `tls-native-roots`): gRPC over
  HTTP/2, the channel only (no server), TLS with rustls on ring and the
  system's root certificates for `,tls` hosts.
- `prost`: encoding the messages (digests are of their bytes) and decoding
  the `Any` in a finished Operation.
- `tokio-stream`: the request stream of ByteStream `Write`.
- `sha2`: SHA-256 digests (in `action`); `tokio`: the runtime and timers.

Nothing here runs before `run` is called: no statics, no runtime, no TLS
set-up, so a client that only talks to distccd hosts does not pay for it.
*/

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream::{self as bs, byte_stream_client::ByteStreamClient};
use bazel_remote_apis::google::longrunning::{Operation, operation};
use prost::Message;
use re::action_cache_client::ActionCacheClient;
use re::capabilities_client::CapabilitiesClient;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use re::execution_client::ExecutionClient;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig};
use tonic::{Code, Request, Status};

use super::action::{self, Prepared, digest, show};
use super::{Endpoint, Fault, Job, Outcome};

/// The bound on a whole run when the job has no timeout.
const NO_TIMEOUT: Duration = Duration::from_secs(600);
/// Connecting is quick or it is not going to happen; a host that does not
/// answer a SYN should not cost the whole job's timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// REAPI's default when the server's capabilities give no batch limit.
const DEFAULT_BATCH: i64 = 4 << 20;
/// Our own cap on a batch, whatever the server allows: it bounds the
/// memory of one reply and keeps `MAX_MESSAGE` above any batch.
const MAX_BATCH: i64 = 16 << 20;
/// What a reply may be, with room over a batch for its framing.
const MAX_MESSAGE: usize = 32 << 20;
/// Room for a blob's digest and framing in a batch, per blob and per
/// request, so that a batch of blobs summing to the limit stays under it.
const PER_BLOB: i64 = 256;
const PER_BATCH: i64 = 4096;
/// ByteStream chunk size: well under every server's message limit.
const CHUNK: usize = 1 << 20;
/// Digests per FindMissingBlobs request (about 80 bytes each).
const FIND_BATCH: usize = 10_000;
/// A server that ends the Execute stream again and again without an
/// answer is not going to give one.
const MAX_REATTACH: u32 = 5;

pub(super) fn run(endpoint: &Endpoint, job: &Job) -> Result<Outcome, Fault> {
    let prepared = action::prepare(job).map_err(|e| Fault::Refused(format!("cannot make an action: {e}")))?;
    let auth = Auth::new(endpoint, &prepared.action_digest)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Fault::Unavailable(format!("cannot start a runtime: {e}")))?;
    let bound = if job.timeout.is_zero() {
        NO_TIMEOUT
    } else {
        job.timeout
    };
    let at = format!("{}:{}", endpoint.host, endpoint.port);
    rt.block_on(async {
        match tokio::time::timeout(bound, session(endpoint, auth, job, &prepared)).await {
            Ok(r) => r,
            Err(_) => Err(Fault::Deadline(format!(
                "{at}: no answer within {:.1}s",
                bound.as_secs_f64()
            ))),
        }
    })
}

/// Metadata on every call: the bearer token, and REAPI's RequestMetadata
/// (our name and the action, for the server's logs).
#[derive(Clone)]
struct Auth {
    bearer: Option<AsciiMetadataValue>,
    request: BinaryMetadataValue,
}

impl Auth {
    fn new(endpoint: &Endpoint, action: &re::Digest) -> Result<Auth, Fault> {
        let bearer = match &endpoint.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Fault::Permission(format!("cannot read token file {}: {e}", path.display()))
                })?;
                let token = text.trim();
                let value = AsciiMetadataValue::try_from(format!("Bearer {token}"))
                    .ok()
                    .filter(|_| !token.is_empty())
                    .ok_or_else(|| Fault::Permission(format!("{}: not a usable token", path.display())))?;
                Some(value)
            }
        };
        let md = re::RequestMetadata {
            tool_details: Some(re::ToolDetails {
                tool_name: "distcc-rs".into(),
                tool_version: env!("CARGO_PKG_VERSION").into(),
            }),
            action_id: action.hash.clone(),
            ..Default::default()
        };
        Ok(Auth {
            bearer,
            request: BinaryMetadataValue::from_bytes(&md.encode_to_vec()),
        })
    }
}

impl Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        let md = req.metadata_mut();
        if let Some(b) = &self.bearer {
            md.insert("authorization", b.clone());
        }
        md.insert_bin(
            "build.bazel.remote.execution.v2.requestmetadata-bin",
            self.request.clone(),
        );
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Auth>;

/// One connection and the stubs on it.
struct Session<'a> {
    instance: &'a str,
    cas: ContentAddressableStorageClient<Svc>,
    bytestream: ByteStreamClient<Svc>,
    channel: Channel,
    auth: Auth,
    /// From GetCapabilities, asked once and only when needed.
    batch_limit: Option<i64>,
}

fn uri(endpoint: &Endpoint) -> String {
    let scheme = if endpoint.tls { "https" } else { "http" };
    let host = &endpoint.host;
    if host.contains(':') && !host.starts_with('[') {
        format!("{scheme}://[{host}]:{}", endpoint.port)
    } else {
        format!("{scheme}://{host}:{}", endpoint.port)
    }
}

/// An error and its causes on one line: tonic's own Display is only
/// "transport error".
fn causes(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        // hyper and tonic repeat their cause in their own message.
        let text = c.to_string();
        if !s.contains(&text) {
            let _ = write!(s, ": {text}");
        }
        next = c.source();
    }
    s
}

/// A gRPC status as a fault, `what` saying which call.
fn fault(what: &str, s: &Status) -> Fault {
    from_code(what, s.code(), s.message())
}

fn from_code(what: &str, code: Code, message: &str) -> Fault {
    let m = if message.is_empty() {
        format!("{what}: {}", code.description())
    } else {
        format!("{what}: {message}")
    };
    match code {
        // Try again later or elsewhere: the server is down, shutting
        // down, or too busy to queue the work.
        Code::Unavailable | Code::Cancelled | Code::Aborted | Code::ResourceExhausted => {
            Fault::Unavailable(m)
        }
        Code::DeadlineExceeded => Fault::Deadline(m),
        Code::PermissionDenied | Code::Unauthenticated => Fault::Permission(m),
        // The server or the bytes between us went wrong (tonic reports a
        // reply it cannot decode as INTERNAL).
        Code::Unknown | Code::Internal | Code::DataLoss => Fault::Protocol(m),
        _ => Fault::Refused(m),
    }
}

fn from_rpc(what: &str, s: &bazel_remote_apis::google::rpc::Status) -> Fault {
    from_code(what, Code::from_i32(s.code), &s.message)
}

async fn session(endpoint: &Endpoint, auth: Auth, job: &Job, prepared: &Prepared) -> Result<Outcome, Fault> {
    let at = format!("{}:{}", endpoint.host, endpoint.port);
    let mut ep = Channel::from_shared(uri(endpoint))
        .map_err(|e| Fault::Refused(format!("{at}: not a usable address: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if endpoint.tls {
        let tls = ClientTlsConfig::new()
            .with_native_roots()
            .domain_name(endpoint.host.clone());
        ep = ep
            .tls_config(tls)
            .map_err(|e| Fault::Refused(format!("{at}: TLS: {}", causes(&e))))?;
    }
    let channel = ep
        .connect()
        .await
        .map_err(|e| Fault::Unavailable(format!("{at}: {}", causes(&e))))?;
    let mut s = Session {
        instance: &endpoint.instance,
        cas: ContentAddressableStorageClient::with_interceptor(channel.clone(), auth.clone())
            .max_decoding_message_size(MAX_MESSAGE),
        bytestream: ByteStreamClient::with_interceptor(channel.clone(), auth.clone())
            .max_decoding_message_size(MAX_MESSAGE),
        channel,
        auth,
        batch_limit: None,
    };
    let outputs = &prepared.command.output_paths;
    let mut skip_cache_lookup = false;
    if !job.do_not_cache {
        match s.lookup(&prepared.action_digest, outputs).await? {
            None => {}
            // A failure in the cache may be the worker's (no compiler
            // there, a job killed for memory): run it again rather than
            // replay it for ever, as Bazel does.
            Some(hit) if hit.exit_code != 0 => skip_cache_lookup = true,
            Some(hit) => match s.outcome(job, hit, &prepared.action_digest, true).await? {
                Some(o) => return Ok(o),
                // The entry names blobs the CAS has dropped: run it again,
                // and let the fresh result replace the entry.
                None => skip_cache_lookup = true,
            },
        }
    }
    s.upload(&prepared.blobs).await?;
    let (result, cached) = s
        .execute(&prepared.action_digest, outputs, skip_cache_lookup)
        .await?;
    s.outcome(job, result, &prepared.action_digest, cached)
        .await?
        .ok_or_else(|| {
            Fault::Protocol(format!(
                "{}: an output of the finished action is not in the CAS",
                show(&prepared.action_digest)
            ))
        })
}

impl Session<'_> {
    /// The action cache's entry, if any.
    async fn lookup(
        &mut self,
        action: &re::Digest,
        outputs: &[String],
    ) -> Result<Option<re::ActionResult>, Fault> {
        let mut ac = ActionCacheClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE);
        let req = re::GetActionResultRequest {
            instance_name: self.instance.to_owned(),
            action_digest: Some(action.clone()),
            inline_stdout: true,
            inline_stderr: true,
            inline_output_files: outputs.to_vec(),
            ..Default::default()
        };
        match ac.get_action_result(req).await {
            Ok(r) => Ok(Some(r.into_inner())),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(fault("GetActionResult", &s)),
        }
    }

    /// The server's batch limit, asked once.
    async fn batch_limit(&mut self) -> Result<i64, Fault> {
        if let Some(l) = self.batch_limit {
            return Ok(l);
        }
        let mut caps = CapabilitiesClient::with_interceptor(self.channel.clone(), self.auth.clone());
        let req = re::GetCapabilitiesRequest {
            instance_name: self.instance.to_owned(),
        };
        let server = match caps.get_capabilities(req).await {
            Ok(r) => r
                .into_inner()
                .cache_capabilities
                .map_or(0, |c| c.max_batch_total_size_bytes),
            // A server without the service still has REAPI's default.
            Err(s) if s.code() == Code::Unimplemented => 0,
            Err(s) => return Err(fault("GetCapabilities", &s)),
        };
        let limit = if server <= 0 {
            DEFAULT_BATCH
        } else {
            server.min(MAX_BATCH)
        };
        self.batch_limit = Some(limit);
        Ok(limit)
    }

    /// Uploads the blobs the CAS does not have.
    async fn upload(&mut self, blobs: &[(re::Digest, Vec<u8>)]) -> Result<(), Fault> {
        // The empty blob is always present (REAPI): never asked, never sent.
        let blobs: Vec<&(re::Digest, Vec<u8>)> = blobs.iter().filter(|(d, _)| d.size_bytes > 0).collect();
        let mut missing = std::collections::HashSet::new();
        for chunk in blobs.chunks(FIND_BATCH) {
            let req = re::FindMissingBlobsRequest {
                instance_name: self.instance.to_owned(),
                blob_digests: chunk.iter().map(|(d, _)| d.clone()).collect(),
                ..Default::default()
            };
            let r = self
                .cas
                .find_missing_blobs(req)
                .await
                .map_err(|s| fault("FindMissingBlobs", &s))?;
            missing.extend(r.into_inner().missing_blob_digests.into_iter().map(|d| d.hash));
        }
        if missing.is_empty() {
            return Ok(());
        }
        let limit = self.batch_limit().await?;
        let mut batch = Vec::new();
        let mut size = PER_BATCH;
        for (d, bytes) in blobs.into_iter().filter(|(d, _)| missing.contains(&d.hash)) {
            let cost = d.size_bytes + PER_BLOB;
            if cost + PER_BATCH > limit {
                self.write(d, bytes).await?;
                continue;
            }
            if size + cost > limit {
                self.batch_update(std::mem::take(&mut batch)).await?;
                size = PER_BATCH;
            }
            size += cost;
            batch.push(re::batch_update_blobs_request::Request {
                digest: Some(d.clone()),
                data: bytes.clone(),
                ..Default::default()
            });
        }
        if !batch.is_empty() {
            self.batch_update(batch).await?;
        }
        Ok(())
    }

    async fn batch_update(
        &mut self,
        requests: Vec<re::batch_update_blobs_request::Request>,
    ) -> Result<(), Fault> {
        let req = re::BatchUpdateBlobsRequest {
            instance_name: self.instance.to_owned(),
            requests,
            ..Default::default()
        };
        let r = self
            .cas
            .batch_update_blobs(req)
            .await
            .map_err(|s| fault("BatchUpdateBlobs", &s))?;
        for one in r.into_inner().responses {
            if let Some(st) = one.status.filter(|st| st.code != 0) {
                let name = one.digest.as_ref().map_or_else(String::new, show);
                return Err(from_rpc(&format!("BatchUpdateBlobs {name}"), &st));
            }
        }
        Ok(())
    }

    /// A ByteStream Write of one blob too big for a batch.
    async fn write(&mut self, d: &re::Digest, bytes: &[u8]) -> Result<(), Fault> {
        let resource = format!(
            "{}uploads/{}/blobs/{}",
            prefix(self.instance),
            upload_id(d),
            show(d)
        );
        let mut requests = Vec::with_capacity(bytes.len() / CHUNK + 1);
        let mut offset = 0;
        for (i, chunk) in bytes.chunks(CHUNK).enumerate() {
            requests.push(bs::WriteRequest {
                // The name goes in the first message only.
                resource_name: if i == 0 { resource.clone() } else { String::new() },
                write_offset: offset as i64,
                finish_write: offset + chunk.len() == bytes.len(),
                data: chunk.to_vec(),
            });
            offset += chunk.len();
        }
        let r = self
            .bytestream
            .write(tokio_stream::iter(requests))
            .await
            .map_err(|s| fault(&format!("ByteStream.Write {}", show(d)), &s))?;
        let committed = r.into_inner().committed_size;
        // A server that already has the blob may stop early and say so
        // with the full size; anything else is a short write.
        if committed != d.size_bytes {
            return Err(Fault::Protocol(format!(
                "ByteStream.Write {}: committed {committed} bytes",
                show(d)
            )));
        }
        Ok(())
    }

    /// Executes the action and waits for its ActionResult.
    async fn execute(
        &mut self,
        action: &re::Digest,
        outputs: &[String],
        skip_cache_lookup: bool,
    ) -> Result<(re::ActionResult, bool), Fault> {
        let mut exec = ExecutionClient::with_interceptor(self.channel.clone(), self.auth.clone())
            .max_decoding_message_size(MAX_MESSAGE);
        let req = re::ExecuteRequest {
            instance_name: self.instance.to_owned(),
            skip_cache_lookup,
            action_digest: Some(action.clone()),
            inline_stdout: true,
            inline_stderr: true,
            inline_output_files: outputs.to_vec(),
            ..Default::default()
        };
        let mut stream = exec
            .execute(req)
            .await
            .map_err(|s| fault("Execute", &s))?
            .into_inner();
        let mut name = String::new();
        let mut reattached = 0;
        loop {
            match stream.message().await {
                Ok(Some(op)) if op.done => return finished(op),
                Ok(Some(op)) => name = op.name,
                // The stream ended, or broke, before the answer: the
                // operation goes on on the server; wait for it by name.
                Ok(None) | Err(_) if !name.is_empty() && reattached < MAX_REATTACH => {
                    reattached += 1;
                    let req = re::WaitExecutionRequest { name: name.clone() };
                    stream = exec
                        .wait_execution(req)
                        .await
                        .map_err(|s| fault("WaitExecution", &s))?
                        .into_inner();
                }
                Ok(None) => {
                    return Err(Fault::Protocol(
                        "Execute: the stream ended before the operation was done".into(),
                    ));
                }
                Err(s) => return Err(fault("Execute", &s)),
            }
        }
    }

    /// The Outcome of `result`, downloading what was not inline; `None` if
    /// a blob it names is not in the CAS.
    async fn outcome(
        &mut self,
        job: &Job,
        result: re::ActionResult,
        action: &re::Digest,
        cached: bool,
    ) -> Result<Option<Outcome>, Fault> {
        let stdout = Part::of(result.stdout_raw, result.stdout_digest)?;
        let stderr = Part::of(result.stderr_raw, result.stderr_digest)?;
        let mut files = result.output_files;
        let mut outputs = Vec::new();
        for name in &job.outputs {
            if let Some(i) = files.iter().position(|f| &f.path == name) {
                let f = files.swap_remove(i);
                let d = f
                    .digest
                    .ok_or_else(|| Fault::Protocol(format!("output {name} has no digest")))?;
                outputs.push((name.clone(), Part::of(f.contents, Some(d))?));
            }
        }
        let parts = [&stdout, &stderr]
            .into_iter()
            .chain(outputs.iter().map(|(_, p)| p));
        let digests = parts
            .filter_map(|p| match p {
                Part::Fetch(d) => Some(d.clone()),
                Part::Here(_) => None,
            })
            .collect();
        let Some(fetched) = self.fetch(digests).await? else {
            return Ok(None);
        };
        let bytes = |p: Part| match p {
            Part::Here(b) => b,
            // Cloned, not taken: one blob may be two outputs.
            Part::Fetch(d) => fetched.get(&d.hash).cloned().unwrap_or_default(),
        };
        Ok(Some(Outcome {
            exit_code: result.exit_code,
            stdout: bytes(stdout),
            stderr: bytes(stderr),
            outputs: outputs.into_iter().map(|(n, p)| (n, bytes(p))).collect(),
            cached,
            action_digest: show(action),
        }))
    }

    /// The blobs of `digests` by hash, each checked against its digest;
    /// `None` if one is not in the CAS.
    async fn fetch(
        &mut self,
        mut digests: Vec<re::Digest>,
    ) -> Result<Option<std::collections::HashMap<String, Vec<u8>>>, Fault> {
        let mut got = std::collections::HashMap::new();
        digests.sort_by(|a, b| a.hash.cmp(&b.hash));
        digests.dedup();
        if digests.is_empty() {
            return Ok(Some(got));
        }
        let limit = self.batch_limit().await?;
        let mut batch = Vec::new();
        let mut size = PER_BATCH;
        for d in digests {
            let cost = d.size_bytes + PER_BLOB;
            if cost + PER_BATCH > limit {
                let Some(b) = self.read(&d).await? else {
                    return Ok(None);
                };
                got.insert(d.hash, b);
                continue;
            }
            if size + cost > limit {
                if !self.batch_read(std::mem::take(&mut batch), &mut got).await? {
                    return Ok(None);
                }
                size = PER_BATCH;
            }
            size += cost;
            batch.push(d);
        }
        if !batch.is_empty() && !self.batch_read(batch, &mut got).await? {
            return Ok(None);
        }
        Ok(Some(got))
    }

    /// False if a blob is not in the CAS.
    async fn batch_read(
        &mut self,
        digests: Vec<re::Digest>,
        got: &mut std::collections::HashMap<String, Vec<u8>>,
    ) -> Result<bool, Fault> {
        let want = digests.len();
        let req = re::BatchReadBlobsRequest {
            instance_name: self.instance.to_owned(),
            digests,
            ..Default::default()
        };
        let r = self
            .cas
            .batch_read_blobs(req)
            .await
            .map_err(|s| fault("BatchReadBlobs", &s))?;
        let responses = r.into_inner().responses;
        if responses.len() != want {
            return Err(Fault::Protocol(format!(
                "BatchReadBlobs: {} answers for {want} blobs",
                responses.len()
            )));
        }
        for one in responses {
            let d = one
                .digest
                .ok_or_else(|| Fault::Protocol("BatchReadBlobs: an answer without a digest".into()))?;
            match one.status {
                Some(st) if st.code == Code::NotFound as i32 => return Ok(false),
                Some(st) if st.code != 0 => {
                    return Err(from_rpc(&format!("BatchReadBlobs {}", show(&d)), &st));
                }
                _ => {}
            }
            check(&d, &one.data)?;
            got.insert(d.hash, one.data);
        }
        Ok(true)
    }

    /// A ByteStream Read of one big blob; `None` if it is not in the CAS.
    async fn read(&mut self, d: &re::Digest) -> Result<Option<Vec<u8>>, Fault> {
        let req = bs::ReadRequest {
            resource_name: format!("{}blobs/{}", prefix(self.instance), show(d)),
            read_offset: 0,
            read_limit: 0,
        };
        let what = format!("ByteStream.Read {}", show(d));
        let mut stream = match self.bytestream.read(req).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::NotFound => return Ok(None),
            Err(s) => return Err(fault(&what, &s)),
        };
        let mut bytes = Vec::with_capacity(usize::try_from(d.size_bytes).unwrap_or(0));
        loop {
            match stream.message().await {
                Ok(Some(m)) => bytes.extend_from_slice(&m.data),
                Ok(None) => break,
                Err(s) if s.code() == Code::NotFound => return Ok(None),
                Err(s) => return Err(fault(&what, &s)),
            }
        }
        check(d, &bytes)?;
        Ok(Some(bytes))
    }
}

/// A file of a result: inline in the reply, or to be fetched.
enum Part {
    Here(Vec<u8>),
    Fetch(re::Digest),
}

impl Part {
    /// Inline bytes are used when there are some, or when the digest says
    /// the file is empty (an empty inline field may just mean "not
    /// inlined"); they are checked against the digest when there is one.
    fn of(inline: Vec<u8>, d: Option<re::Digest>) -> Result<Part, Fault> {
        match d {
            Some(d) if inline.is_empty() && d.size_bytes > 0 => Ok(Part::Fetch(d)),
            Some(d) => check(&d, &inline).map(|()| Part::Here(inline)),
            None => Ok(Part::Here(inline)),
        }
    }
}

/// The ActionResult of a finished Operation.
fn finished(op: Operation) -> Result<(re::ActionResult, bool), Fault> {
    let any = match op.result {
        Some(operation::Result::Response(any)) => any,
        Some(operation::Result::Error(st)) => return Err(from_rpc("Execute", &st)),
        None => {
            return Err(Fault::Protocol(
                "Execute: a done operation without a result".into(),
            ));
        }
    };
    if !any
        .type_url
        .ends_with("/build.bazel.remote.execution.v2.ExecuteResponse")
    {
        return Err(Fault::Protocol(format!(
            "Execute: the answer is a {}",
            any.type_url
        )));
    }
    let resp = re::ExecuteResponse::decode(any.value.as_slice())
        .map_err(|e| Fault::Protocol(format!("Execute: {e}")))?;
    if let Some(st) = resp.status.as_ref().filter(|st| st.code != 0) {
        let detail = if resp.message.is_empty() {
            st.message.clone()
        } else {
            format!("{} ({})", st.message, resp.message)
        };
        let st = bazel_remote_apis::google::rpc::Status {
            message: detail,
            ..st.clone()
        };
        return Err(from_rpc("Execute", &st));
    }
    let result = resp
        .result
        .ok_or_else(|| Fault::Protocol("Execute: a response without a result".into()))?;
    Ok((result, resp.cached_result))
}

/// Bytes from the server must be what their digest says.
fn check(d: &re::Digest, bytes: &[u8]) -> Result<(), Fault> {
    if digest(bytes) != *d {
        return Err(Fault::Protocol(format!(
            "blob {} arrived as {} bytes that do not match it",
            show(d),
            bytes.len()
        )));
    }
    Ok(())
}

/// The instance part of a resource name: "" or `NAME/`.
fn prefix(instance: &str) -> String {
    if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    }
}

/// A fresh UUID (version 4 in form) for an upload's resource name: it only
/// has to differ between concurrent uploads, so it is a hash of what makes
/// this one unique rather than a random-number dependency.
fn upload_id(d: &re::Digest) -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_nanos());
    let seed = format!(
        "{}:{nanos}:{}:{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed),
        d.hash
    );
    let h = digest(seed.as_bytes()).hash;
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reapi::Input;
    use std::net::{TcpListener, TcpStream};
    use std::time::Instant;

    fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            instance: String::new(),
            tls: false,
            token_file: None,
        }
    }

    fn job(timeout: Duration) -> Job {
        Job {
            argv: vec!["gcc".into(), "-c".into(), "x.i".into(), "-o".into(), "x.o".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            working_dir: String::new(),
            inputs: vec![Input {
                path: "x.i".into(),
                bytes: b"int x;\n".to_vec(),
                executable: false,
            }],
            outputs: vec!["x.o".into()],
            platform: vec![],
            salt: vec![],
            timeout,
            do_not_cache: false,
        }
    }

    /// A port nothing listens on: bound, then closed.
    fn closed_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[test]
    fn a_closed_port_is_unavailable_at_once() {
        let started = Instant::now();
        let r = run(&endpoint(closed_port()), &job(Duration::from_secs(30)));
        assert!(matches!(r, Err(Fault::Unavailable(_))), "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let shown = r.unwrap_err().to_string();
        assert!(
            shown.starts_with("REAPI server unavailable: 127.0.0.1:"),
            "{shown}"
        );
    }

    #[test]
    fn a_server_that_never_answers_is_a_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        // Accepts, reads nothing, says nothing, until the test ends.
        let holder = std::thread::spawn(move || {
            let (conn, _): (TcpStream, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(conn);
        });
        let started = Instant::now();
        let r = run(&endpoint(port), &job(Duration::from_millis(700)));
        let took = started.elapsed();
        assert!(matches!(r, Err(Fault::Deadline(_))), "{r:?}");
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(2),
            "{took:?}"
        );
        holder.join().unwrap();
    }

    #[test]
    fn an_unreadable_token_is_a_permission_fault_before_any_connection() {
        let mut e = endpoint(closed_port());
        e.token_file = Some("/nonexistent/distcc-rs/token".into());
        let r = run(&e, &job(Duration::from_secs(5)));
        assert!(matches!(r, Err(Fault::Permission(_))), "{r:?}");
    }

    #[test]
    fn a_bad_job_is_refused_before_any_connection() {
        let mut j = job(Duration::from_secs(5));
        j.inputs[0].path = "/etc/passwd".into();
        let r = run(&endpoint(closed_port()), &j);
        assert!(matches!(r, Err(Fault::Refused(_))), "{r:?}");
    }

    #[test]
    fn every_call_carries_the_token_and_our_name() {
        let dir = std::env::temp_dir().join(format!("reapi-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  s3cret.token\n").unwrap();
        let mut e = endpoint(1);
        e.token_file = Some(file.clone());
        let d = digest(b"action");
        let mut auth = Auth::new(&e, &d).unwrap();
        let req = auth.call(Request::new(())).unwrap();
        let md = req.metadata();
        assert_eq!(md.get("authorization").unwrap(), "Bearer s3cret.token");
        let bin = md
            .get_bin("build.bazel.remote.execution.v2.requestmetadata-bin")
            .unwrap()
            .to_bytes()
            .unwrap();
        let rm = re::RequestMetadata::decode(bin.as_ref()).unwrap();
        assert_eq!(rm.action_id, d.hash);
        assert_eq!(rm.tool_details.unwrap().tool_name, "distcc-rs");
        // No token file: no authorization header.
        let mut anon = Auth::new(&endpoint(1), &d).unwrap();
        assert!(
            anon.call(Request::new(()))
                .unwrap()
                .metadata()
                .get("authorization")
                .is_none()
        );
        // An empty token, or one that cannot be a header, is refused.
        for bad in ["\n", "a\nb"] {
            std::fs::write(&file, bad).unwrap();
            assert!(matches!(Auth::new(&e, &d), Err(Fault::Permission(_))), "{bad:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grpc_codes_map_to_faults() {
        let cases = [
            (Code::Unavailable, "Unavailable"),
            (Code::Cancelled, "Unavailable"),
            (Code::ResourceExhausted, "Unavailable"),
            (Code::DeadlineExceeded, "Deadline"),
            (Code::PermissionDenied, "Permission"),
            (Code::Unauthenticated, "Permission"),
            (Code::FailedPrecondition, "Refused"),
            (Code::InvalidArgument, "Refused"),
            (Code::NotFound, "Refused"),
            (Code::Unimplemented, "Refused"),
            (Code::Internal, "Protocol"),
            (Code::Unknown, "Protocol"),
        ];
        for (code, want) in cases {
            let f = from_code("Execute", code, "why");
            let got = format!("{f:?}");
            assert!(got.starts_with(want), "{code:?}: {got}");
            assert!(got.contains("Execute: why"), "{got}");
        }
        // No message: the code's own description.
        let f = from_code("GetCapabilities", Code::Unimplemented, "");
        assert!(
            f.to_string()
                .contains("GetCapabilities: Operation is not implemented"),
            "{f}"
        );
    }

    #[test]
    fn finished_operations() {
        let any = |r: &re::ExecuteResponse| bazel_remote_apis::google::protobuf::Any {
            type_url: "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse".into(),
            value: r.encode_to_vec(),
        };
        let done = |result| Operation {
            name: "op".into(),
            done: true,
            result: Some(result),
            ..Default::default()
        };
        let ok = re::ExecuteResponse {
            result: Some(re::ActionResult {
                exit_code: 1,
                ..Default::default()
            }),
            cached_result: true,
            ..Default::default()
        };
        // A compile that failed is a result, not a fault.
        let (r, cached) = finished(done(operation::Result::Response(any(&ok)))).unwrap();
        assert_eq!((r.exit_code, cached), (1, true));
        let timed_out = re::ExecuteResponse {
            status: Some(bazel_remote_apis::google::rpc::Status {
                code: Code::DeadlineExceeded as i32,
                message: "killed after 300s".into(),
                ..Default::default()
            }),
            ..ok.clone()
        };
        assert!(matches!(
            finished(done(operation::Result::Response(any(&timed_out)))),
            Err(Fault::Deadline(m)) if m.contains("killed after 300s")
        ));
        let refused = operation::Result::Error(bazel_remote_apis::google::rpc::Status {
            code: Code::FailedPrecondition as i32,
            message: "missing blob".into(),
            ..Default::default()
        });
        assert!(matches!(finished(done(refused)), Err(Fault::Refused(_))));
        let mut wrong = any(&ok);
        wrong.type_url = "type.googleapis.com/google.protobuf.Empty".into();
        assert!(matches!(
            finished(done(operation::Result::Response(wrong))),
            Err(Fault::Protocol(_))
        ));
        let garbage = bazel_remote_apis::google::protobuf::Any {
            type_url: any(&ok).type_url,
            value: vec![0xff, 0xff, 0xff],
        };
        assert!(matches!(
            finished(done(operation::Result::Response(garbage))),
            Err(Fault::Protocol(_))
        ));
        let empty = Operation {
            done: true,
            ..Default::default()
        };
        assert!(matches!(finished(empty), Err(Fault::Protocol(_))));
    }

    #[test]
    fn names_and_addresses() {
        assert_eq!(prefix(""), "");
        assert_eq!(prefix("main"), "main/");
        let mut e = endpoint(8980);
        assert_eq!(uri(&e), "http://127.0.0.1:8980");
        e.tls = true;
        e.host = "::1".into();
        assert_eq!(uri(&e), "https://[::1]:8980");
        let d = digest(b"abc");
        let (a, b) = (upload_id(&d), upload_id(&d));
        assert_ne!(a, b);
        let parts: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
        assert!(a.as_bytes()[14] == b'4' && a.as_bytes()[19] == b'8', "{a}");
    }
}
