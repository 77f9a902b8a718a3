#!/usr/bin/env python3
"""Smoke check of a running test cluster (tests/reapi/cluster.py), as a REAPI client.

Runs on the test host under the BuildGrid venv's Python (it uses BuildGrid's
generated protos and grpcio, not BuildGrid's client code), against
127.0.0.1:PORT, and proves the cluster really executes:

  1. uploads x.c, its input root and a Command/Action `gcc -c x.c -o x.o`
     (FindMissingBlobs, then BatchUpdateBlobs), Executes it with
     skip_cache_lookup, waits for the Operation, downloads x.o and compares
     it byte for byte with a local `gcc -c` of the same file in a directory of
     the same name;
  2. checks the worker's count grew by one and logged this Action's digest;
  3. GetActionResult for the same Action: a hit with the same x.o digest, and
     Execute again without skip_cache_lookup: cached_result, no new execution;
  4. runs `/usr/bin/env` with environment {DISTCC_RS_SMOKE=1}: stdout must be
     exactly that one variable (the worker adds nothing).

Prints `key=value` lines (uncached_secs, cached_lookup_secs, ...) and
finally `SMOKE OK`; exits non-zero with a message on any failure.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import grpc

from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc

SOURCE = b"""\
#include <stdio.h>
static const char *const greeting = "hello from the REAPI smoke test";
int smoke_square(int x) { return x * x; }
int main(void) { printf("%s %d\\n", greeting, smoke_square(7)); return 0; }
"""


def digest(data):
    return re_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def key(d):
    return f"{d.hash}/{d.size_bytes}"


class Client:
    def __init__(self, addr, instance=""):
        self.instance = instance
        ch = grpc.insecure_channel(addr)
        self.cas = re_grpc.ContentAddressableStorageStub(ch)
        self.ac = re_grpc.ActionCacheStub(ch)
        self.exe = re_grpc.ExecutionStub(ch)

    def upload(self, blobs):
        """blobs: list of bytes. FindMissingBlobs, then one BatchUpdateBlobs."""
        by = {key(digest(b)): b for b in blobs}
        missing = self.cas.FindMissingBlobs(
            re_pb2.FindMissingBlobsRequest(instance_name=self.instance, blob_digests=[digest(b) for b in by.values()])
        ).missing_blob_digests
        if missing:
            resp = self.cas.BatchUpdateBlobs(
                re_pb2.BatchUpdateBlobsRequest(
                    instance_name=self.instance,
                    requests=[re_pb2.BatchUpdateBlobsRequest.Request(digest=d, data=by[key(d)]) for d in missing],
                )
            )
            for r in resp.responses:
                if r.status.code != 0:
                    raise SystemExit(f"upload failed: {r.status}")

    def read(self, d):
        if d.size_bytes == 0:
            return b""
        r = self.cas.BatchReadBlobs(re_pb2.BatchReadBlobsRequest(instance_name=self.instance, digests=[d])).responses[0]
        if r.status.code != 0:
            raise SystemExit(f"read {key(d)} failed: {r.status}")
        return r.data

    def action(self, argv, env, outputs, files):
        """files: {name: bytes} in the input root. Uploads everything; returns the Action's digest."""
        root = re_pb2.Directory()
        for name in sorted(files):
            root.files.add(name=name, digest=digest(files[name]))
        cmd = re_pb2.Command(
            arguments=argv,
            environment_variables=[re_pb2.Command.EnvironmentVariable(name=k, value=v) for k, v in sorted(env.items())],
            output_paths=outputs,
            # Older servers/workers read output_files; send both, as REAPI 2.1 clients may.
            output_files=outputs,
        )
        cmd.platform.properties.add(name="OSFamily", value="linux")
        cmd_b, root_b = cmd.SerializeToString(), root.SerializeToString()
        act = re_pb2.Action(command_digest=digest(cmd_b), input_root_digest=digest(root_b))
        act.platform.CopyFrom(cmd.platform)
        act_b = act.SerializeToString()
        self.upload(list(files.values()) + [cmd_b, root_b, act_b])
        return digest(act_b)

    def execute(self, action_digest, skip_cache_lookup):
        resp = re_pb2.ExecuteResponse()
        for op in self.exe.Execute(
            re_pb2.ExecuteRequest(
                instance_name=self.instance, action_digest=action_digest, skip_cache_lookup=skip_cache_lookup
            ),
            timeout=60,
        ):
            if op.done:
                if op.HasField("error"):
                    raise SystemExit(f"Execute failed: {op.error}")
                op.response.Unpack(resp)
                if resp.status.code != 0:
                    raise SystemExit(f"Execute failed: {resp.status}")
                return resp
        raise SystemExit("Execute stream ended without a result")


def executed_lines(path):
    with open(path) as fh:
        return [line.strip() for line in fh if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--executed", required=True, help="the worker's executed-actions file")
    ap.add_argument("--compiler", default="gcc")
    args = ap.parse_args()
    c = Client(f"127.0.0.1:{args.port}")
    ok = True

    # The local reference build, in a directory whose contents match the input root.
    ref = tempfile.mkdtemp(prefix="reapi-smoke-")
    try:
        with open(os.path.join(ref, "x.c"), "wb") as fh:
            fh.write(SOURCE)
        t = time.monotonic()
        subprocess.run([args.compiler, "-c", "x.c", "-o", "x.o"], cwd=ref, check=True,
                       env={"PATH": "/usr/bin:/bin"})
        print(f"local_secs={time.monotonic() - t:.3f}")
        with open(os.path.join(ref, "x.o"), "rb") as fh:
            local_obj = fh.read()
    finally:
        shutil.rmtree(ref)

    before = len(executed_lines(args.executed))
    # A nonce in the environment makes the action new to this cluster run.
    nonce = str(uuid.uuid4())
    ad = c.action(
        [args.compiler, "-c", "x.c", "-o", "x.o"],
        {"PATH": "/usr/bin:/bin", "DISTCC_RS_SMOKE_NONCE": nonce},
        ["x.o"],
        {"x.c": SOURCE},
    )
    t = time.monotonic()
    r1 = c.execute(ad, skip_cache_lookup=True)
    print(f"uncached_secs={time.monotonic() - t:.3f}")
    res = r1.result
    print(f"exit_code={res.exit_code} cached_result={r1.cached_result}")
    files = {f.path: f for f in res.output_files}
    if res.exit_code != 0 or "x.o" not in files:
        print("stderr:", c.read(res.stderr_digest).decode(errors="replace"), file=sys.stderr)
        raise SystemExit("remote gcc failed or left no x.o")
    remote_obj = c.read(files["x.o"].digest)
    same = remote_obj == local_obj
    print(f"object_bytes={len(remote_obj)} identical_to_local={same}")
    ok &= same
    after = executed_lines(args.executed)
    print(f"worker_executed_delta={len(after) - before} logged_digest={key(ad) in after}")
    ok &= len(after) - before == 1 and key(ad) in after

    t = time.monotonic()
    hit = c.ac.GetActionResult(re_pb2.GetActionResultRequest(instance_name=c.instance, action_digest=ad))
    print(f"cached_lookup_secs={time.monotonic() - t:.3f}")
    hit_files = {f.path: f.digest for f in hit.output_files}
    same_hit = hit_files.get("x.o") == files["x.o"].digest
    print(f"cache_hit_same_object={same_hit}")
    ok &= same_hit
    t = time.monotonic()
    r2 = c.execute(ad, skip_cache_lookup=False)
    print(f"cached_execute_secs={time.monotonic() - t:.3f} cached_result={r2.cached_result}")
    ok &= r2.cached_result
    n = len(executed_lines(args.executed))
    print(f"worker_executed_after_cache={n - before}")
    ok &= n - before == 1

    # The worker runs with the Command's environment and nothing else.
    ad = c.action(["/usr/bin/env"], {"DISTCC_RS_SMOKE": nonce}, [], {})
    r3 = c.execute(ad, skip_cache_lookup=True)
    out = c.read(r3.result.stdout_digest).decode()
    clean = out == f"DISTCC_RS_SMOKE={nonce}\n"
    print(f"env_exactly_command={clean}")
    if not clean:
        print(f"env output: {out!r}", file=sys.stderr)
    ok &= clean

    if not ok:
        raise SystemExit("SMOKE FAILED")
    print("SMOKE OK", flush=True)


if __name__ == "__main__":
    main()
