#!/usr/bin/env python3
"""
Benchmarks distcc-rs against distcc 3.4 on this machine, side by side, in one
run: plain local gcc, distcc 3.4's client and daemon (the baseline), ours,
and the crossed pairs. Not part of the test run. Needs root (for Debian's
distccd user), the release build and the packages of scripts/setup.

    python3 bench/bench.py            # full run (~10 min on 2 cores)
    python3 bench/bench.py --quick    # fewer rounds, for a smoke check

Prints a table of medians and ratios to the baseline (b), and writes it as
markdown to bench/results.md.
"""

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OURS = REPO / "target" / "release"
REAL_CLIENT = "/usr/bin/distcc"
REAL_DAEMON = "/usr/bin/distccd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"{what} exited at start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen")


class Daemons:
    """Both daemons, N of each, on loopback."""

    def __init__(self, work, count, jobs):
        self.procs = []
        self.real_ports, self.our_ports = [], []
        # One more of ours with the compiler unconfined, for the sandbox's cost.
        self.unsandboxed_port = None
        allowed = work / "allowed"
        allowed.mkdir(exist_ok=True)
        for c in ["cc", "gcc", "x86_64-linux-gnu-gcc", "g++", "x86_64-linux-gnu-g++"]:
            link = allowed / c
            if not link.exists():
                link.symlink_to(OURS / "distcc")
        tmp = work / "daemon-tmp"
        tmp.mkdir(exist_ok=True)
        os.chmod(tmp, 0o1777)
        for i in range(count):
            p = free_port()
            proc = subprocess.Popen(
                [REAL_DAEMON, "--daemon", "--no-detach", "--allow", "127.0.0.1", "--port", str(p),
                 "--jobs", str(jobs), "--log-level", "error", "--log-stderr"],
                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            wait_port(p, proc, "distccd 3.4")
            self.procs.append(proc)
            self.real_ports.append(p)
            p = free_port()
            proc = subprocess.Popen(
                [str(OURS / "distccd"), "--daemon", "--no-detach", "--allow", "127.0.0.1", "--port", str(p),
                 "--jobs", str(jobs), "--log-level", "error", "--log-stderr", "--compiler-dir", str(allowed)],
                stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, TMPDIR=str(tmp)),
                start_new_session=True)
            wait_port(p, proc, "our distccd")
            self.procs.append(proc)
            self.our_ports.append(p)
        p = free_port()
        proc = subprocess.Popen(
            [str(OURS / "distccd"), "--daemon", "--no-detach", "--allow", "127.0.0.1", "--port", str(p),
             "--jobs", str(jobs), "--log-level", "error", "--log-stderr", "--compiler-dir", str(allowed),
             "--sandbox", "off"],
            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, TMPDIR=str(tmp)),
            start_new_session=True)
        wait_port(p, proc, "our distccd --sandbox off")
        self.procs.append(proc)
        self.unsandboxed_port = p

    def pids(self, ours):
        """The daemon processes (distcc 3.4 preforks children) of one kind."""
        out = []
        ports = self.our_ports if ours else self.real_ports
        for proc in self.procs:
            if any(str(p) in " ".join(proc.args) for p in ports):
                out.append(proc.pid)
                try:
                    kids = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
                    out += [int(k) for k in kids]
                except OSError:
                    pass
        return out

    def stop(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                pass
            proc.wait()


def hwm_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_timed(argv, cwd, env):
    """Wall time and the CPU of the process tree (user + sys, children included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {r.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def client_peak_kib(argv, cwd, env):
    """Peak RSS of the client process itself (not its compiler children):
    VmHWM only grows, so the last value read before it exits is its peak."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, hwm_kib(proc.pid))
        time.sleep(0.0005)
    return peak


def configs(d):
    real = f"127.0.0.1:{d.real_ports[0]}"
    ours = f"127.0.0.1:{d.our_ports[0]}"
    return {
        "a local gcc": ([], None),
        "b 3.4 client + 3.4 daemon": ([REAL_CLIENT], real),
        "c ours + ours": ([str(OURS / "distcc")], ours),
        "d 3.4 client + our daemon": ([REAL_CLIENT], ours),
        "e our client + 3.4 daemon": ([str(OURS / "distcc")], real),
    }


def env_for(work, hosts, name, pause="5"):
    e = dict(os.environ)
    for k in ("DISTCC_VERBOSE", "DISTCC_LOG", "DISTCC_PAUSE_TIME_MSEC"):
        e.pop(k, None)
    ddir = work / f"dd-{name[0]}"
    ddir.mkdir(exist_ok=True)
    e.update(DISTCC_DIR=str(ddir), DISTCC_FALLBACK="0")
    # A short rescan, so distcc 3.4's sleeping between scans of busy slots
    # does not dominate; "default" leaves distcc's 1000 ms, as users run it.
    if pause != "default":
        e["DISTCC_PAUSE_TIME_MSEC"] = pause
    if hosts:
        e["DISTCC_HOSTS"] = hosts
    return e


def median(v):
    return statistics.median(v) if v else float("nan")


def per_job(work, d, rounds, per_round, parallel):
    src = work / "tiny"
    src.mkdir(exist_ok=True)
    (src / "tiny.c").write_text("int tiny(int x) { return x * 2 + 1; }\n")
    results = {}
    cfg = configs(d)
    # The floor: the preprocessor plus a compile of its output, run here and
    # measured between the configurations' jobs, so a machine whose speed
    # drifts during the run (a shared VM does) moves the floor with them.
    subprocess.run(["gcc", "-E", "tiny.c", "-o", "tiny.i"], cwd=src, check=True)
    floor_e, floor_c, floor_seq, floor_par = [], [], [], []

    def floor_job(i):
        e = run_timed(["gcc", "-E", "tiny.c", "-o", f"f{i}.i"], src, os.environ)[0]
        c = run_timed(["gcc", "-c", f"f{i}.i", "-o", f"f{i}.o"], src, os.environ)[0]
        return e, c

    for name in cfg:
        results[name] = {"lat": [], "cpu": [], "par": []}
    envs = {name: env_for(work, hosts, name) for name, (prefix, hosts) in cfg.items()}
    order = ["floor"] + list(cfg)
    # One at a time: every configuration's next job, in turn, job by job.
    for i in range(rounds * per_round):
        for name in order[i % len(order):] + order[:i % len(order)]:
            if name == "floor":
                e, c = floor_job(i % per_round)
                floor_e.append(e)
                floor_c.append(c)
                floor_seq.append(e + c)
                continue
            prefix, _ = cfg[name]
            wall, cpu = run_timed(prefix + ["gcc", "-c", "tiny.c", "-o", f"o-{name[0]}-{i % per_round}.o"], src,
                                  envs[name])
            results[name]["lat"].append(wall)
            results[name]["cpu"].append(cpu)
    # In parallel: blocks of compiles, `parallel` at a time, the
    # configurations' blocks in turn.
    block = max(per_round // 2, parallel * 4)
    for r in range(rounds * 2):
        for name in order:
            t = time.perf_counter()
            with ThreadPoolExecutor(parallel) as ex:
                if name == "floor":
                    list(ex.map(floor_job, range(block)))
                else:
                    prefix, _ = cfg[name]
                    list(ex.map(lambda i: run_timed(prefix + ["gcc", "-c", "tiny.c", "-o", f"p-{name[0]}-{i}.o"],
                                                    src, envs[name]), range(block)))
            rate = block / (time.perf_counter() - t)
            (floor_par if name == "floor" else results[name]["par"]).append(rate)
    return median(floor_seq), median(floor_e), median(floor_c), median(floor_par), results


def sandbox_cost(work, d, rounds):
    """Our client against our daemon with and without the compiler's
    sandbox (Landlock ruleset, rlimits, descriptors), jobs interleaved."""
    src = work / "tiny-sandbox"
    src.mkdir(exist_ok=True)
    (src / "tiny.c").write_text("int tiny(int x) { return x * 2 + 1; }\n")
    runs = {"sandboxed (default)": d.our_ports[0], "--sandbox off": d.unsandboxed_port}
    envs = {k: env_for(work, f"127.0.0.1:{p}", k) for k, p in runs.items()}
    lat = {k: [] for k in runs}
    for i in range(rounds):
        for k in runs:
            wall, _ = run_timed([str(OURS / "distcc"), "gcc", "-c", "tiny.c", "-o", f"s{i % 10}.o"], src, envs[k])
            lat[k].append(wall)
    return {k: median(v) for k, v in lat.items()}


def fetch_crate_sources(work, crate, version):
    """Unmodified sources from crates.io, through cargo."""
    proj = work / f"fetch-{crate}"
    (proj / "src").mkdir(parents=True, exist_ok=True)
    (proj / "src" / "lib.rs").write_text("")
    (proj / "Cargo.toml").write_text(
        f'[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n{crate} = "={version}"\n')
    subprocess.run(["cargo", "fetch", "--quiet"], cwd=proj, check=True)
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(home.glob(f"registry/src/*/{crate}-{version}"))
    if not found:
        sys.exit(f"{crate} {version} not found after cargo fetch")
    return found[0]


LUA_CORE = ("lapi lcode lctype ldebug ldo ldump lfunc lgc llex lmem lobject lopcodes lparser lstate lstring "
            "ltable ltm lundump lvm lzio lauxlib lbaselib lcorolib ldblib liolib lmathlib loadlib loslib lstrlib "
            "ltablib lutf8lib linit").split()


def project_build(work, d, lua_dir, rounds):
    src_dir = sorted(lua_dir.glob("lua-5.4*"))[-1]
    results = {}
    cfg = configs(d)
    # Every configuration on one server; ours against 3.4's in the others.
    for servers, lzo, pause in ((1, "", "5"), (1, ",lzo", "5"), (3, "", "5"), (3, ",lzo", "5"), (1, "", "default")):
        for name in cfg:
            if name.startswith("a") and (servers > 1 or lzo or pause != "5"):
                continue
            if (servers, lzo, pause) != (1, "", "5") and name[0] in "de":
                continue
            results[(name, servers, lzo, pause)] = {"wall": [], "cpu": []}
    for r in range(rounds):
        for (name, servers, lzo, pause), res in results.items():
            prefix, hosts = cfg[name]
            ports = d.real_ports if "3.4 daemon" in name else d.our_ports
            hl = " ".join(f"127.0.0.1:{p}/4{lzo}" for p in ports[:servers]) if hosts else None
            build = work / "lua-build"
            shutil.rmtree(build, ignore_errors=True)
            shutil.copytree(src_dir, build)
            objs = " ".join(f"{m}.o" for m in LUA_CORE)
            (build / "bench.mk").write_text(
                f"all: {objs}\n%.o: %.c\n\t$(CC) -O2 -Wall -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -c $< -o $@\n")
            cc = " ".join(prefix + ["gcc"])
            env = env_for(work, hl, name, pause)
            wall, cpu = run_timed(["make", "-s", "-f", "bench.mk", f"-j{4 * servers + 2}", f"CC={cc}"], build, env)
            res["wall"].append(wall)
            res["cpu"].append(cpu)
            res["objs"] = {m: (build / f"{m}.o").read_bytes() for m in LUA_CORE}
    # Every configuration must build the same objects as local gcc.
    local = results[("a local gcc", 1, "", "5")]["objs"]
    for key, res in results.items():
        for m, b in res["objs"].items():
            if b != local[m]:
                sys.exit(f"{key}: {m}.o differs from the local build")
    return results


def large_tu(work, d, sqlite_dir, rounds):
    src = work / "large"
    src.mkdir(exist_ok=True)
    c = next(sqlite_dir.glob("sqlite3/sqlite3.c"))
    shutil.copy(c, src / "sqlite3.c")
    size = subprocess.run(["gcc", "-E", "sqlite3.c"], cwd=src, capture_output=True, check=True).stdout
    results = {}
    cfg = configs(d)
    for r in range(rounds):
        for name, (prefix, hosts) in cfg.items():
            for lzo in ("", ",lzo"):
                if name.startswith("a") and lzo:
                    continue
                h = hosts + lzo if hosts else None
                env = env_for(work, h, name)
                wall, cpu = run_timed(prefix + ["gcc", "-O0", "-c", "sqlite3.c", "-o", "sqlite3.o"], src, env)
                results.setdefault((name, lzo), []).append(wall)
    return len(size), results


def memory(work, d):
    src = work / "tiny"
    out = {}
    for name, (prefix, hosts) in configs(d).items():
        if not hosts:
            continue
        env = env_for(work, hosts, name)
        out[name] = median([client_peak_kib(prefix + ["gcc", "-c", "tiny.c", "-o", "m.o"], src, env) for _ in range(15)])
    start = {}
    for label, prog in (("3.4", REAL_CLIENT), ("ours", str(OURS / "distcc"))):
        times = []
        for _ in range(200):
            t = time.perf_counter()
            subprocess.run([prog, "--version"], stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t)
        start[label] = median(times)
    daemon = {"3.4": max(hwm_kib(p) for p in d.pids(False)), "ours": max(hwm_kib(p) for p in d.pids(True))}
    return out, start, daemon


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--per-job-only", action="store_true", help="only the per-job and memory parts")
    ap.add_argument("--only", choices=["per-job", "sandbox", "project", "large"], help="only one part")
    args = ap.parse_args()
    parts = ({args.only} if args.only else {"per-job", "sandbox"} if args.per_job_only
             else {"per-job", "sandbox", "project", "large"})
    rounds, per_round = (2, 20) if args.quick else (5, 60)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=REPO, check=True)
    work = Path(tempfile.mkdtemp(prefix="distcc-rs-bench-"))
    os.chmod(work, 0o755)
    d = Daemons(work, 3, 4)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    try:
        cpus = os.cpu_count()
        say(f"# Benchmark run {time.strftime('%Y-%m-%d %H:%M')} on {cpus} cores, `{' '.join(sys.argv)}`\n")
        if "per-job" in parts:
            per_job_part(work, d, rounds, per_round, say)
        if "sandbox" in parts:
            sandbox_part(work, d, rounds * per_round, say)
        if "project" in parts:
            project_part(work, d, args, say)
        if "large" in parts:
            large_part(work, d, args, say)
    finally:
        d.stop()
        shutil.rmtree(work, ignore_errors=True)
    (REPO / "bench" / "results.md").write_text("\n".join(lines) + "\n")


def per_job_part(work, d, rounds, per_round, say):
    floor, fe, fc, floor_par, res = per_job(work, d, rounds, per_round, 4)
    base = res["b 3.4 client + 3.4 daemon"]
    say(f"Floor (local `gcc -E` {fe * 1000:.1f} ms + `gcc -c` of the .i {fc * 1000:.1f} ms): {floor * 1000:.1f} ms\n")
    say(f"Parallel floor (the same two steps, 4 at a time): {floor_par:.1f} jobs/s, {1000 / floor_par:.2f} ms per job\n")
    say("| per job, tiny C file | latency ms | above floor ms | vs (b) | client tree CPU ms "
        "| 4 parallel: jobs/s | ms per job above floor | vs (b) |")
    say("|---|---|---|---|---|---|---|---|")
    b_above = median(base["lat"]) - floor
    b_par_above = 1 / median(base["par"]) - 1 / floor_par
    for name, r in res.items():
        lat = median(r["lat"])
        above = lat - floor
        par_above = 1 / median(r["par"]) - 1 / floor_par
        say(f"| {name} | {lat * 1000:.1f} | {above * 1000:.1f} | {above / b_above:.2f} | {median(r['cpu']) * 1000:.1f} "
            f"| {median(r['par']):.1f} | {par_above * 1000:.2f} | {par_above / b_par_above:.2f} |")
    say()
    mem, start, daemon = memory(work, d)
    say("| memory and start-up | value |")
    say("|---|---|")
    for name, kib in mem.items():
        say(f"| client peak RSS, {name} | {kib} KiB |")
    say(f"| `distcc --version`, 3.4 | {start['3.4'] * 1000:.2f} ms |")
    say(f"| `distcc --version`, ours | {start['ours'] * 1000:.2f} ms |")
    say(f"| daemon peak RSS after the parallel runs, 3.4 (largest process) | {daemon['3.4']} KiB |")
    say(f"| daemon peak RSS after the parallel runs, ours | {daemon['ours']} KiB |")
    say()


def sandbox_part(work, d, jobs, say):
    r = sandbox_cost(work, d, jobs)
    on, off = r["sandboxed (default)"], r["--sandbox off"]
    say(f"The compiler's sandbox, our client and daemon, tiny C file, {jobs} jobs each, interleaved:\n")
    say("| sandbox | latency ms |")
    say("|---|---|")
    for k, v in r.items():
        say(f"| {k} | {v * 1000:.2f} |")
    say(f"| cost per job | {(on - off) * 1000:.2f} |")
    say()


def project_part(work, d, args, say):
    lua = fetch_crate_sources(work, "lua-src", "551.1.0")
    proj = project_build(work, d, lua, 2 if args.quick else 10)
    say(f"Lua 5.4 ({len(LUA_CORE)} files, from the crates.io package lua-src 551.1.0, unmodified), "
        "`make -jN`, objects identical to local gcc in every configuration:\n")
    say("| project build | servers | lzo | pause ms | wall s | vs (b) | rounds faster than (b) | total CPU s |")
    say("|---|---|---|---|---|---|---|---|")
    for (name, servers, lzo, pause), r in proj.items():
        b = proj.get(("b 3.4 client + 3.4 daemon", servers, lzo, pause))
        ratio = median(r["wall"]) / median(b["wall"]) if b else float("nan")
        # Paired: the rounds in which this one beat (b), run beside it.
        wins = sum(x < y for x, y in zip(r["wall"], b["wall"])) if b else 0
        say(f"| {name} | {servers} | {lzo or '-'} | {'1000 (default)' if pause == 'default' else pause} "
            f"| {median(r['wall']):.2f} | {ratio:.2f} | {wins}/{len(r['wall'])} | {median(r['cpu']):.2f} |")
    say()


def large_part(work, d, args, say):
    sqlite = fetch_crate_sources(work, "libsqlite3-sys", "0.30.1")
    size, big = large_tu(work, d, sqlite, 2 if args.quick else 5)
    say(f"One large translation unit: sqlite3.c from libsqlite3-sys 0.30.1, {size / 1e6:.1f} MB preprocessed, `-O0`:\n")
    say("| large TU | lzo | wall s | vs (b) |")
    say("|---|---|---|---|")
    for (name, lzo), v in big.items():
        b = big.get(("b 3.4 client + 3.4 daemon", lzo))
        ratio = median(v) / median(b) if b else float("nan")
        say(f"| {name} | {lzo or '-'} | {median(v):.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
