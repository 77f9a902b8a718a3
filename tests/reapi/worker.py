#!/usr/bin/env python3
"""A TEST worker (bot) for BuildGrid, used only by distcc-rs's REAPI tests.

BuildGrid ships no worker (none in any wheel up to 0.9.1; upstream's
buildbox-worker/-run/-casd are C++ and not packaged anywhere we install
from), so the tests bring this one. It runs on the test host, next to the
server started by tests/reapi/cluster.py, as the same user as the cluster
(root in CI), and speaks BuildGrid's Remote Workers API
(google.devtools.remoteworkers.v1test2.Bots):

  CreateBotSession once, then UpdateBotSession in a long-poll loop. Each
  ACTIVE lease carries the Action (BuildGrid 0.9.1) or the Action's Digest
  (0.4.4). The worker fetches the Command and the input root from CAS, runs
  argv in a fresh temporary directory (working_directory inside it) with
  exactly the Command's environment variables and nothing else, uploads the
  declared outputs (output_paths, or output_files/output_directories),
  stdout and stderr to CAS, and hands back Any(ActionResult) with the exit
  code and the lease COMPLETED.

Every executed action is appended to the file given by --executed, one line
"HASH/SIZE" (the Action's digest) per action, written before the result is
returned, so a test can tell "ran on the worker" from "served from the
action cache". When the payload is the Action itself its digest is the
SHA-256 of its serialisation here, which equals the client's digest for any
client that serialises canonically (fields in number order, as protobuf and
prost do).

It needs BuildGrid's generated protos (buildgrid._protos) and grpcio, so it
runs under the BuildGrid venv's Python that scripts/setup makes.
"""

import argparse
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid

import grpc
from google.protobuf import any_pb2, timestamp_pb2

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
from buildgrid._protos.google.bytestream import bytestream_pb2, bytestream_pb2_grpc
from buildgrid._protos.google.devtools.remoteworkers.v1test2 import bots_pb2, bots_pb2_grpc
from buildgrid._protos.google.rpc import code_pb2

# Blobs up to this size go through Batch{Read,Update}Blobs, bigger through ByteStream.
BATCH_LIMIT = 1 << 20
CHUNK = 1 << 20


def log(*a):
    print("worker:", *a, file=sys.stderr, flush=True)


class Cas:
    def __init__(self, channel, instance):
        self.instance = instance
        self.cas = re_grpc.ContentAddressableStorageStub(channel)
        self.bs = bytestream_pb2_grpc.ByteStreamStub(channel)

    def _resource(self, d):
        name = f"blobs/{d.hash}/{d.size_bytes}"
        return f"{self.instance}/{name}" if self.instance else name

    def read(self, d):
        if d.size_bytes == 0:
            return b""
        if d.size_bytes <= BATCH_LIMIT:
            resp = self.cas.BatchReadBlobs(
                re_pb2.BatchReadBlobsRequest(instance_name=self.instance, digests=[d])
            )
            r = resp.responses[0]
            if r.status.code != code_pb2.OK:
                raise RuntimeError(f"blob {d.hash}/{d.size_bytes}: {r.status.message}")
            return r.data
        data = b"".join(
            c.data for c in self.bs.Read(bytestream_pb2.ReadRequest(resource_name=self._resource(d)))
        )
        return data

    def write(self, data):
        d = digest_of(data)
        if d.size_bytes == 0:
            return d
        if d.size_bytes <= BATCH_LIMIT:
            resp = self.cas.BatchUpdateBlobs(
                re_pb2.BatchUpdateBlobsRequest(
                    instance_name=self.instance,
                    requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=d, data=data)],
                )
            )
            r = resp.responses[0]
            if r.status.code != code_pb2.OK:
                raise RuntimeError(f"upload {d.hash}: {r.status.message}")
            return d
        name = f"uploads/{uuid.uuid4()}/blobs/{d.hash}/{d.size_bytes}"
        if self.instance:
            name = f"{self.instance}/{name}"

        def reqs():
            off = 0
            while True:
                chunk = data[off : off + CHUNK]
                yield bytestream_pb2.WriteRequest(
                    resource_name=name if off == 0 else "",
                    write_offset=off,
                    data=chunk,
                    finish_write=off + len(chunk) >= len(data),
                )
                off += len(chunk)
                if off >= len(data):
                    return

        self.bs.Write(reqs())
        return d


def digest_of(data):
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def materialize(cas, dir_digest, path):
    """Writes the Directory tree `dir_digest` at `path` (which exists)."""
    d = re_pb2.Directory()
    d.ParseFromString(cas.read(dir_digest))
    for f in d.files:
        p = os.path.join(path, f.name)
        with open(p, "wb") as fh:
            fh.write(cas.read(f.digest))
        os.chmod(p, 0o755 if f.is_executable else 0o644)
    for s in d.symlinks:
        os.symlink(s.target, os.path.join(path, s.name))
    for sub in d.directories:
        p = os.path.join(path, sub.name)
        os.mkdir(p)
        materialize(cas, sub.digest, p)


def tree_of(cas, path):
    """Uploads the files under `path` and returns (Tree, its root Directory)."""
    children = []

    def walk(p):
        d = re_pb2.Directory()
        for name in sorted(os.listdir(p)):
            full = os.path.join(p, name)
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                d.symlinks.add(name=name, target=os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                sub = walk(full)
                children.append(sub)
                d.directories.add(name=name, digest=digest_of(sub.SerializeToString()))
            elif stat.S_ISREG(st.st_mode):
                with open(full, "rb") as fh:
                    dg = cas.write(fh.read())
                d.files.add(name=name, digest=dg, is_executable=bool(st.st_mode & 0o100))
        return d

    root = walk(path)
    return re_pb2.Tree(root=root, children=children)


def now_ts():
    t = timestamp_pb2.Timestamp()
    t.GetCurrentTime()
    return t


def execute(cas, action, action_digest, args):
    """Runs one Action; returns (ActionResult, google.rpc status code, message)."""
    result = re_pb2.ActionResult()
    md = result.execution_metadata
    md.worker = args.bot_id
    md.worker_start_timestamp.CopyFrom(now_ts())
    command = re_pb2.Command()
    command.ParseFromString(cas.read(action.command_digest))
    top = tempfile.mkdtemp(prefix="reapi-action-", dir=args.work_root)
    try:
        root = os.path.join(top, "root")
        os.mkdir(root)
        md.input_fetch_start_timestamp.CopyFrom(now_ts())
        materialize(cas, action.input_root_digest, root)
        md.input_fetch_completed_timestamp.CopyFrom(now_ts())
        cwd = os.path.normpath(os.path.join(root, command.working_directory))
        if not (cwd == root or cwd.startswith(root + os.sep)):
            return result, code_pb2.INVALID_ARGUMENT, "working_directory leaves the input root"
        os.makedirs(cwd, exist_ok=True)
        if command.output_paths:
            outputs = [(p, None) for p in command.output_paths]
        else:
            outputs = [(p, False) for p in command.output_files] + [
                (p, True) for p in command.output_directories
            ]
        # The worker creates the parent directories of every output (REAPI).
        for p, _ in outputs:
            parent = os.path.dirname(os.path.join(cwd, p))
            os.makedirs(parent, exist_ok=True)
        # Exactly the Command's environment; nothing of ours leaks in.
        env = {e.name: e.value for e in command.environment_variables}
        timeout = None
        if action.HasField("timeout"):
            timeout = action.timeout.ToTimedelta().total_seconds() or None
        md.execution_start_timestamp.CopyFrom(now_ts())
        try:
            proc = subprocess.run(
                list(command.arguments),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
            )
            out, err, rc = proc.stdout, proc.stderr, proc.returncode
            status, message = code_pb2.OK, ""
        except subprocess.TimeoutExpired as e:
            out, err, rc = e.stdout or b"", e.stderr or b"", -1
            status, message = code_pb2.DEADLINE_EXCEEDED, f"timed out after {timeout}s"
        except OSError as e:
            # argv[0] not found or not executable: the action's fault, told as a failed run.
            out, err, rc = b"", f"worker: cannot run {command.arguments[:1]}: {e}\n".encode(), 127
            status, message = code_pb2.OK, ""
        md.execution_completed_timestamp.CopyFrom(now_ts())
        # A signal death (negative returncode in Python) is told as 128+N, as a shell does.
        result.exit_code = rc if rc >= 0 else 128 - rc
        md.output_upload_start_timestamp.CopyFrom(now_ts())
        result.stdout_digest.CopyFrom(cas.write(out))
        result.stderr_digest.CopyFrom(cas.write(err))
        for p, is_dir in outputs:
            full = os.path.join(cwd, p)
            if not os.path.lexists(full):
                continue
            if os.path.islink(full) and is_dir is None:
                result.output_symlinks.add(path=p, target=os.readlink(full))
            elif os.path.isdir(full) and is_dir is not False:
                tree = tree_of(cas, full)
                result.output_directories.add(path=p, tree_digest=cas.write(tree.SerializeToString()))
            elif os.path.isfile(full) and is_dir is not True:
                with open(full, "rb") as fh:
                    dg = cas.write(fh.read())
                result.output_files.add(
                    path=p, digest=dg, is_executable=bool(os.stat(full).st_mode & 0o100)
                )
        md.output_upload_completed_timestamp.CopyFrom(now_ts())
        md.worker_completed_timestamp.CopyFrom(now_ts())
        # Counted before the result goes back, so a client that saw the result sees the line.
        with open(args.executed, "a") as fh:
            fh.write(f"{action_digest.hash}/{action_digest.size_bytes}\n")
            fh.flush()
            os.fsync(fh.fileno())
        return result, status, message
    finally:
        shutil.rmtree(top, ignore_errors=True)


def run_lease(cas, lease, args):
    payload = lease.payload
    if payload.Is(re_pb2.Action.DESCRIPTOR):  # BuildGrid 0.9.1: the Action itself
        action = re_pb2.Action()
        payload.Unpack(action)
        action_digest = digest_of(action.SerializeToString(deterministic=True))
    elif payload.Is(re_pb2.Digest.DESCRIPTOR):  # BuildGrid 0.4.4: the Action's digest
        action_digest = re_pb2.Digest()
        payload.Unpack(action_digest)
        action = re_pb2.Action()
        action.ParseFromString(cas.read(action_digest))
    else:
        raise RuntimeError(f"unknown lease payload {payload.type_url}")
    t0 = time.monotonic()
    result, status, message = execute(cas, action, action_digest, args)
    log(f"ran {action_digest.hash[:12]} exit={result.exit_code} in {time.monotonic() - t0:.3f}s")
    lease.result.Pack(result)
    lease.status.code = status
    lease.status.message = message
    lease.state = bots_pb2.LeaseState.COMPLETED


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remote", required=True, help="server address, e.g. 127.0.0.1:50051")
    ap.add_argument("--instance", default="", help="REAPI instance name")
    ap.add_argument("--executed", required=True, help="file to append one line per executed action to")
    ap.add_argument("--bot-id", default=f"distcc-rs-test-worker-{os.getpid()}")
    ap.add_argument("--work-root", default=None, help="where action directories are made (default: TMPDIR)")
    ap.add_argument("--property", action="append", metavar="KEY=VALUE",
                    help="a platform property this worker offers (repeatable); "
                    "default OSFamily=linux and ISA=<this machine's, Bazel-style>")
    args = ap.parse_args()
    if args.property is None:
        isa = {"x86_64": "x86-64", "aarch64": "aarch64"}.get(platform.machine(), platform.machine())
        args.property = ["OSFamily=linux", f"ISA={isa}"]
    open(args.executed, "a").close()

    channel = grpc.insecure_channel(args.remote)
    bots = bots_pb2_grpc.BotsStub(channel)
    cas = Cas(channel, args.instance)

    session = bots_pb2.BotSession(bot_id=args.bot_id, status=bots_pb2.BotStatus.OK)
    # The primary device's properties are what BuildGrid matches an Action's platform
    # against (OSFamily and ISA are its default match keys): a job asking for a
    # property no bot offers waits in the queue for ever.
    device = session.worker.devices.add(handle=args.bot_id)
    for kv in args.property:
        k, _, v = kv.partition("=")
        device.properties.add(key=k, value=v)
    deadline = time.monotonic() + 60
    while True:
        try:
            session = bots.CreateBotSession(
                bots_pb2.CreateBotSessionRequest(parent=args.instance, bot_session=session),
                # Under BuildGrid's NETWORK_TIMEOUT (3 s) the server registers the bot and
                # answers at once instead of long-polling; the work comes by UpdateBotSession.
                timeout=3,
            )
            break
        except grpc.RpcError as e:
            if time.monotonic() > deadline:
                raise
            log(f"CreateBotSession: {e.code()}; retrying")
            time.sleep(0.1)
    # The cluster script waits for this line before it says READY.
    print(f"BOT-READY {session.name}", flush=True)

    failures = 0
    while True:
        for lease in session.leases:
            if lease.state == bots_pb2.LeaseState.PENDING:
                lease.state = bots_pb2.LeaseState.ACTIVE  # accept; older servers want this
            elif lease.state == bots_pb2.LeaseState.ACTIVE:
                try:
                    run_lease(cas, lease, args)
                except Exception as e:  # a broken action must not kill the worker
                    log(f"lease {lease.id}: {e!r}")
                    lease.status.code = code_pb2.INTERNAL
                    lease.status.message = str(e)
                    lease.state = bots_pb2.LeaseState.COMPLETED
        try:
            # Long poll: the server holds the call until there is work or the deadline nears.
            session = bots.UpdateBotSession(
                bots_pb2.UpdateBotSessionRequest(name=session.name, bot_session=session), timeout=10
            )
            failures = 0
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                continue
            failures += 1
            if failures > 50:  # the server is gone for good (about 10 s): stop
                log(f"UpdateBotSession keeps failing ({e.code()}); exiting")
                return 1
            time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
