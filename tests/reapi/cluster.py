#!/usr/bin/env python3
"""A real REAPI v2 test cluster on this host, for distcc-rs's tests.

What runs where (all on the test host, all on 127.0.0.1, all in one private
temporary directory this script makes and removes):

  * PostgreSQL (Debian's newest /usr/lib/postgresql/N/bin, 15 on bookworm,
    or $DISTCC_RS_PG_BIN):
    BuildGrid's SQL scheduler refuses SQLite, so it needs a real database.
    A throwaway cluster is made with initdb and run in the foreground as a
    child of this script, as the `postgres` user when we are root (PostgreSQL
    refuses to run as root), with trust auth, TCP on a free loopback port and
    its Unix socket inside the temp dir. The Debian cluster service is not
    used (nor started).
  * BuildGrid (`bgd`, from the venv scripts/setup makes; this script runs
    under that venv's Python): the REAPI server (CAS, ActionCache, Execution,
    ByteStream, Capabilities, and the Bots API for workers) on another free
    loopback port, insecure (no TLS, no auth), instance name "".
    `bgd migrate apply` first creates its schema in the database.
  * tests/reapi/worker.py: one test worker (BuildGrid ships none), which
    executes actions in temp directories under our temp dir and logs each
    executed action digest to `executed` (see READY below).

When everything answers, one line goes to stdout:

  READY port=N pids=PG,SERVER,WORKER executed=PATH dir=DIR start_secs=S

and the script keeps running until SIGTERM/SIGINT (or, with
--stop-on-stdin-eof, until its stdin closes: a test that dies does not leave
a cluster behind), then stops what it started, by PID, in reverse order, and
removes its temp dir. If one of its processes dies, it stops the rest and
exits 1. Logs (postgres.log, server.log, worker.log) are in DIR; --keep
leaves DIR in place; a failed start prints their tails to stderr.
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(os.path.abspath(sys.executable))  # the venv's bin: bgd is next to python


def log(*a):
    print("cluster:", *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_pg_bin():
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[-3]) if p.split("/")[-3].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else "/usr/lib/postgresql/15/bin"


def yaml_list(items):
    return "[" + ", ".join('"' + i.replace('"', '') + '"' for i in items) + "]"


def buildgrid_version():
    from importlib.metadata import version

    return version("buildgrid")


class Cluster:
    def __init__(self, args):
        self.args = args
        self.procs = []  # (name, Popen), in start order
        self.root = tempfile.mkdtemp(prefix="distcc-rs-reapi-", dir=args.parent)
        # The postgres user must reach its data dir under ours.
        os.chmod(self.root, 0o755)
        self.as_postgres = []
        self.pg_owner = None
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            self.pg_owner = (pw.pw_uid, pw.pw_gid)
            # setpriv execs in place (no fork), so our child's PID is the postmaster's.
            self.as_postgres = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups"]
        self.executed = os.path.join(self.root, "executed")

    def path(self, name):
        return os.path.join(self.root, name)

    def spawn(self, name, argv, logfile, **kw):
        fh = open(self.path(logfile), "ab")
        # Each in a session of its own, so that stopping it stops whatever
        # it started too (signals go to the group).
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=fh, stdout=kw.pop("stdout", fh),
                             start_new_session=True, **kw)
        self.procs.append((name, p))
        return p

    def check_alive(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} (pid {p.pid}) exited with {p.returncode}")

    # --- PostgreSQL -------------------------------------------------------
    def start_postgres(self):
        pg_bin = self.args.pg_bin
        data, sock = self.path("pgdata"), self.path("pgsock")
        for d in (data, sock):
            os.mkdir(d, 0o700)
            if self.pg_owner:
                os.chown(d, *self.pg_owner)
        with open(self.path("initdb.log"), "wb") as fh:
            subprocess.run(
                self.as_postgres
                + [os.path.join(pg_bin, "initdb"), "-D", data, "-U", "bgd", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
                stdout=fh, stderr=subprocess.STDOUT, check=True, cwd=self.root,
            )
        for attempt in range(5):
            port = free_port()
            p = self.spawn(
                "postgres",
                self.as_postgres
                + [os.path.join(pg_bin, "postgres"), "-D", data, "-p", str(port), "-k", sock,
                   "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                   "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                   "-c", "max_connections=100", "-c", "logging_collector=off"],
                "postgres.log",
                cwd=self.root,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if p.poll() is not None:
                    break  # most likely lost the port: try another
                r = subprocess.run([os.path.join(pg_bin, "pg_isready"), "-q", "-h", "127.0.0.1",
                                    "-p", str(port), "-U", "bgd", "-d", "postgres"])
                if r.returncode == 0:
                    self.pg_port = port
                    return
                time.sleep(0.05)
            else:
                raise RuntimeError("postgres did not become ready")
            self.procs.remove(("postgres", p))
        raise RuntimeError("postgres would not start")

    def db_url(self):
        # 0.4.4 (Python 3.11) stalls in its job notifier with psycopg 3: use psycopg2 there.
        driver = "postgresql+psycopg2" if buildgrid_version().startswith("0.4.") else "postgresql"
        return f"{driver}://bgd@127.0.0.1:{self.pg_port}/postgres"

    # --- BuildGrid --------------------------------------------------------
    def config(self, port):
        return f"""\
# Written by tests/reapi/cluster.py; a throwaway test server.
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
connections:
  - !sql-connection &sql
    connection-string: {self.db_url()}
    pool-size: 5
    max-overflow: 10
storages:
  - !lru-storage &cas
    size: 512MB
caches:
  - !lru-action-cache &cache
    storage: *cas
    max-cached-refs: 10000
    allow-updates: true
    cache-failed-actions: true
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *cache
    poll-interval: 0.05
    bot-poll-interval: 0.05
    # Platform properties: match keys must equal a worker's (see worker.py --property);
    # wildcard keys are accepted and ignored for matching. Any other key is refused.
    property-set: !dynamic-property-set
      match-property-keys: {yaml_list(self.match_keys())}
      wildcard-property-keys: {yaml_list(self.args.wildcard_key or ["container-image"])}
    assigners:
      # The default jitter makes each action wait 0.1-1 s for assignment.
      - !priority-age-assigner
        count: 1
        interval: 0.05
        jitter-factor: 0.0
instances:
  - name: ""
    services:
      - !action-cache
        cache: *cache
      - !execution
        scheduler: *scheduler
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""

    def match_keys(self):
        keys = ["OSFamily", "ISA"]
        for kv in self.args.property or []:
            k = kv.partition("=")[0]
            if k not in keys:
                keys.append(k)
        return keys

    def migrate(self):
        with open(self.path("migrate.log"), "wb") as fh:
            subprocess.run([os.path.join(BIN, "bgd"), "migrate", "apply", self.db_url()],
                           stdout=fh, stderr=subprocess.STDOUT, check=True, cwd=self.root)

    def start_server(self):
        import grpc
        from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
        from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc

        for attempt in range(5):
            port = free_port()
            cfg = self.path("buildgrid.yml")
            with open(cfg, "w") as fh:
                fh.write(self.config(port))
            verbose = ["-vv"] if self.args.verbose else []
            p = self.spawn("bgd-server", [os.path.join(BIN, "bgd"), "server", "start", *verbose, cfg],
                           "server.log", cwd=self.root)
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub = re_grpc.CapabilitiesStub(channel)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and p.poll() is None:
                try:
                    stub.GetCapabilities(re_pb2.GetCapabilitiesRequest(instance_name=""), timeout=1)
                    channel.close()
                    self.port = port
                    return
                except grpc.RpcError:
                    time.sleep(0.05)
            channel.close()
            if p.poll() is None:
                raise RuntimeError("BuildGrid did not answer GetCapabilities")
            self.procs.remove(("bgd-server", p))  # most likely lost the port: try another
        raise RuntimeError("BuildGrid would not start")

    def start_worker(self):
        work = self.path("work")
        os.mkdir(work)
        p = self.spawn(
            "worker",
            [sys.executable, os.path.join(HERE, "worker.py"), "--remote", f"127.0.0.1:{self.port}",
             "--executed", self.executed, "--work-root", work]
            + [f"--property={kv}" for kv in self.args.property or []],
            "worker.log",
            stdout=subprocess.PIPE,
            cwd=self.root,
        )
        line = p.stdout.readline().decode()
        if not line.startswith("BOT-READY"):
            raise RuntimeError(f"worker did not register (said {line!r})")
        # Drain anything else it prints so it never blocks on a full pipe.
        threading.Thread(target=lambda: p.stdout.read(), daemon=True).start()

    # --- lifecycle --------------------------------------------------------
    def stop(self):
        # All asked at once, then whatever is left after a few seconds is
        # killed: on a loaded machine BuildGrid's server can take longer
        # than a test waits for it, and a server left behind outlives the
        # test (seen in CI).
        def signal_group(p, sig):
            try:
                os.killpg(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
        for name, p in reversed(self.procs):
            if p.poll() is None:
                # SIGINT is PostgreSQL's fast shutdown; the others stop on SIGTERM.
                signal_group(p, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        deadline = time.monotonic() + 8
        for name, p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for name, p in reversed(self.procs):
            signal_group(p, signal.SIGKILL)
            p.wait()
        self.procs = []
        if self.args.keep:
            log(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    def tails(self):
        for f in ("initdb.log", "postgres.log", "migrate.log", "server.log", "worker.log"):
            p = self.path(f)
            if os.path.exists(p):
                with open(p, errors="replace") as fh:
                    lines = fh.readlines()[-25:]
                log(f"--- {f} (last {len(lines)} lines)")
                sys.stderr.write("".join(lines))


def main():
    ap = argparse.ArgumentParser(description="Runs PostgreSQL + BuildGrid + a test worker on loopback.")
    ap.add_argument("--pg-bin", default=os.environ.get("DISTCC_RS_PG_BIN") or default_pg_bin(),
                    help="PostgreSQL's server binaries (default: Debian's newest, /usr/lib/postgresql/N/bin)")
    ap.add_argument("--stop-on-stdin-eof", action="store_true",
                    help="also stop when stdin reaches EOF (the parent died or closed it)")
    ap.add_argument("--property", action="append", metavar="KEY=VALUE",
                    help="a platform property the worker offers and the scheduler matches on "
                    "(repeatable; default: the worker's OSFamily=linux, ISA=<machine>)")
    ap.add_argument("--wildcard-key", action="append", metavar="KEY",
                    help="a platform property key accepted but not matched (repeatable; "
                    "default: container-image)")
    ap.add_argument("--parent", metavar="DIR",
                    help="make the temp dir in DIR (default: TMPDIR); the postgres user must reach it")
    ap.add_argument("--verbose", action="store_true", help="debug logs from the server (server.log)")
    ap.add_argument("--keep", action="store_true", help="leave the temp dir (logs) in place")
    args = ap.parse_args()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.stop_on_stdin_eof:
        def watch():
            while sys.stdin.buffer.read(4096):
                pass
            stop.set()

        threading.Thread(target=watch, daemon=True).start()

    t0 = time.monotonic()
    c = Cluster(args)
    rc = 0
    try:
        c.start_postgres()
        t_pg = time.monotonic()
        c.migrate()
        t_mig = time.monotonic()
        c.start_server()
        t_srv = time.monotonic()
        c.start_worker()
        t1 = time.monotonic()
        log(f"buildgrid {buildgrid_version()}: postgres {t_pg - t0:.2f}s, migrate {t_mig - t_pg:.2f}s, "
            f"server {t_srv - t_mig:.2f}s, worker {t1 - t_srv:.2f}s")
        pids = ",".join(str(p.pid) for _, p in c.procs)
        print(f"READY port={c.port} pids={pids} executed={c.executed} dir={c.root} "
              f"start_secs={t1 - t0:.2f}", flush=True)
        while not stop.wait(0.2):
            c.check_alive()
    except Exception as e:
        log(f"error: {e}")
        c.tails()
        rc = 1
    finally:
        c.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
