#!/usr/bin/env python3
"""
Benchmarks distcc-rs against distcc 3.4 on this machine, side by side, in one
run: plain local gcc, distcc 3.4's client and daemon (the baseline), ours,
and the crossed pairs. Not part of the test run. Needs root (for Debian's
distccd user), the release build and the packages of scripts/setup.

    python3 bench/bench.py            # full run (~10 min on 2 cores)
    python3 bench/bench.py --quick    # fewer rounds, for a smoke check
    python3 bench/bench.py --only reapi --base-bins DIR   # REAPI, against DIR's (older) binaries
    python3 bench/bench.py --only zeroconf   # +zeroconf against explicit hosts, on tests/zeroconf/lan

Prints a table of medians and ratios to the baseline (b), and writes it as
markdown to bench/results.md.
"""

import argparse
import os
import re
import shlex
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
# Where `cargo build --release` puts the binaries (CARGO_TARGET_DIR if set).
OURS = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release"
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
        allowed, tmp = daemon_dirs(work)
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
        stop_all(self.procs)


def daemon_dirs(work):
    """Our distccd's allow-list of compilers and its TMPDIR, under `work`."""
    allowed = work / "allowed"
    allowed.mkdir(exist_ok=True)
    for c in ["cc", "gcc", "x86_64-linux-gnu-gcc", "g++", "x86_64-linux-gnu-g++"]:
        if not (allowed / c).exists():
            (allowed / c).symlink_to(OURS / "distcc")
    tmp = work / "daemon-tmp"
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    return allowed, tmp


def stop_all(procs):
    """Each daemon's whole process group, killed and reaped."""
    for proc in procs:
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
    wall, cpu, _ = run_timed_err(argv, cwd, env)
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
    ap.add_argument("--only", choices=["per-job", "sandbox", "project", "large", "pump", "reapi", "zeroconf"],
                    help="only one part")
    ap.add_argument("--base-bins", type=Path,
                    help="reapi part: a release dir of binaries to compare start-up and size with "
                         "(e.g. main's, before the REAPI client)")
    args = ap.parse_args()
    parts = ({args.only} if args.only else {"per-job", "sandbox"} if args.per_job_only
             else {"per-job", "sandbox", "project", "large", "pump", "reapi", "zeroconf"})
    rounds, per_round = (2, 20) if args.quick else (5, 60)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet"], cwd=REPO, check=True)
    work = Path(tempfile.mkdtemp(prefix="distcc-rs-bench-"))
    os.chmod(work, 0o755)
    # The loopback daemons, for the parts that use them.
    d = Daemons(work, 3, 4) if parts - {"pump", "zeroconf"} else None
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
        if "pump" in parts:
            pump_part(work, args, say)
        if "reapi" in parts:
            reapi_part(work, d, args, say)
        if "zeroconf" in parts:
            zeroconf_part(work, args, say)
    finally:
        if d:
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


# Pump mode: the four projects of tests/it/pump_projects.rs.
PUMP_CRATES = (("lua-src", "551.1.0"), ("zstd-sys", "2.1.3+zstd.1.5.7"), ("libwebp-sys", "0.14.4"),
               ("meshopt", "0.7.0"))
PUMP_MK = "distcc-bench.mk"
CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def sources_in(tree, d, ext):
    return sorted(f"{d}/{n}" for n in os.listdir(tree / d) if n.endswith(ext))


def pump_projects(work):
    """The crates, files and flags of tests/it/pump_projects.rs: every C
    file of each (zstd's one assembler file left out), Lua and meshoptimizer
    with -g."""
    got = {c: fetch_crate_sources(work, c, v) for c, v in PUMP_CRATES}
    lua = got["lua-src"] / "lua-5.4.9"
    zstd = got["zstd-sys"] / "zstd" / "lib"
    webp = got["libwebp-sys"] / "vendor"
    mesh = got["meshopt"] / "vendor"
    webp_dirs = ("src/dec", "src/demux", "src/dsp", "src/enc", "src/mux", "src/utils", "sharpyuv")
    return [
        dict(name="Lua", crate="lua-src 551.1.0", tree=lua, cxx=False, sources=[f"{m}.c" for m in LUA_CORE],
             flags="-O2 -g -Wall -DLUA_COMPAT_5_3 -DLUA_USE_LINUX"),
        dict(name="zstd", crate="zstd-sys 2.1.3+zstd.1.5.7", tree=zstd, cxx=False,
             sources=[s for d in ("common", "compress", "decompress") for s in sources_in(zstd, d, ".c")],
             flags="-O1 -Wall -DXXH_NAMESPACE=ZSTD_ -DZSTD_MULTITHREAD -I. -Icommon"),
        dict(name="libwebp", crate="libwebp-sys 0.14.4", tree=webp, cxx=False,
             sources=[s for d in webp_dirs for s in sources_in(webp, d, ".c")],
             flags="-O1 -Wall -fvisibility=hidden -DNDEBUG=1 -D_THREAD_SAFE=1 -DWEBP_USE_THREAD=1 "
                   "-DWEBP_HAVE_SSE2=1 -I."),
        dict(name="meshoptimizer", crate="meshopt 0.7.0", tree=mesh, cxx=True, sources=sources_in(mesh, "src", ".cpp"),
             flags="-O1 -g -Wall -std=c++17"),
    ]


def obj_of(src):
    return src.rsplit(".", 1)[0] + ".o"


def pump_makefile(p):
    var, fl, ext = ("CXX", "CXXFLAGS", "cpp") if p["cxx"] else ("CC", "CFLAGS", "c")
    objs = " ".join(obj_of(s) for s in p["sources"])
    return f"OBJS = {objs}\n{fl} = {p['flags']}\nall: $(OBJS)\n%.o: %.{ext}\n\t$({var}) $({fl}) -MD -c $< -o $@\n"


class LoggedDaemons:
    """N of our distccd and N of distcc 3.4's, each logging its jobs (info:
    one COMPILE_OK line per job, ours with its protocol) to its own file."""

    def __init__(self, work, count, jobs):
        self.procs, self.ours, self.real = [], [], []
        allowed, tmp = daemon_dirs(work)
        common = ["--daemon", "--no-detach", "--allow", "127.0.0.1", "--jobs", str(jobs), "--log-level", "info",
                  "--log-stderr"]
        for i in range(count):
            for ours in (True, False):
                port = free_port()
                log = work / f"pump-daemon-{'ours' if ours else '3.4'}-{i}.log"
                argv = ([str(OURS / "distccd"), "--port", str(port), "--compiler-dir", str(allowed)] if ours
                        else [REAL_DAEMON, "--port", str(port)]) + common
                with open(log, "wb") as f:
                    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=f,
                                            env=dict(os.environ, TMPDIR=str(tmp)), start_new_session=True)
                wait_port(port, proc, argv[0])
                self.procs.append(proc)
                (self.ours if ours else self.real).append((port, log))
        self.offsets = {}

    def jobs_since_last(self, ours, servers, want):
        """The COMPILE_OK lines logged since the last call, waiting a little
        for the last of `want`."""
        logs = [log for _, log in (self.ours if ours else self.real)]
        deadline = time.monotonic() + 10
        while True:
            lines, ends = [], {}
            for log in logs:
                b = log.read_bytes()
                cut = b.rfind(b"\n") + 1
                lines += b[self.offsets.get(log, 0):cut].decode(errors="replace").splitlines()
                ends[log] = cut
            ok = [line for line in lines if "COMPILE_OK" in line]
            if len(ok) >= want or time.monotonic() > deadline:
                self.offsets.update(ends)
                return ok, [line for line in lines if "COMPILE_ERROR" in line or "FAIL" in line]
            time.sleep(0.05)

    def stop(self):
        stop_all(self.procs)


def run_tree(argv, cwd, env, out_path):
    """Wall time and user+sys CPU of the whole process tree: RUSAGE_CHILDREN
    (every descendant reaped by its parent, the include server by pump), and
    the same tree's cpuacct cgroup as a check that nothing escaped it."""
    cg = None
    if CPUACCT.is_dir():
        cg = CPUACCT / f"distcc-rs-bench-{os.getpid()}-{time.monotonic_ns()}"
        try:
            cg.mkdir()
        except OSError:
            cg = None

    def enter():
        (cg / "cgroup.procs").write_text(str(os.getpid()))

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with open(out_path, "wb") as out:
        r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                           preexec_fn=enter if cg else None)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cg_cpu, left = None, []
    if cg:
        cg_cpu = int((cg / "cpuacct.usage").read_text()) / 1e9
        left = (cg / "cgroup.procs").read_text().split()
        if not left:
            cg.rmdir()
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed in {cwd}:\n{Path(out_path).read_text(errors='replace')[-3000:]}")
    if left:
        sys.exit(f"{' '.join(argv)}: processes {left} outlived the build")
    return wall, cpu, cg_cpu


def proc_cpu(pid):
    """CPU time of a running process, all its threads (schedstat, ns)."""
    total = 0
    for t in Path(f"/proc/{pid}/task").iterdir():
        total += int((t / "schedstat").read_text().split()[0])
    return total / 1e9


IS_STATS = re.compile(r"include server: (\d+) requests \((\d+) given up\), (\d+) files parsed, (\d+) directories read")


class PumpBench:
    def __init__(self, work, daemons, jobs_per_server):
        self.work, self.d, self.jps = work, daemons, jobs_per_server
        self.tmp = work / "pump-tmp"
        self.tmp.mkdir(exist_ok=True)

    def env(self, label, hosts):
        e = env_for(self.work, hosts, label)
        for k in ("INCLUDE_SERVER_PORT", "INCLUDE_SERVER_PID", "INCLUDE_SERVER_DIR", "INCLUDE_SERVER_ARGS",
                  "DISTCC_LOCATION", "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH"):
            e.pop(k, None)
        e["TMPDIR"] = str(self.tmp)
        return e

    def hosts(self, ours, servers, pump):
        ports = [p for p, _ in (self.d.ours if ours else self.d.real)[:servers]]
        return " ".join(f"127.0.0.1:{p}/{self.jps}{',cpp,lzo' if pump else ',lzo'}" for p in ports)

    def make_argv(self, p, client, servers):
        var, compiler = ("CXX", "g++") if p["cxx"] else ("CC", "gcc")
        # As many jobs as slots: no client waits for a slot, so the
        # 5 ms rescan (env_for) costs no polling in either mode.
        return ["make", "-s", "-f", PUMP_MK, f"-j{self.jps * servers}", f"{var}={client} {compiler}"]

    def clean(self, p, proj):
        for s in p["sources"]:
            for f in (proj / obj_of(s), proj / (obj_of(s)[:-2] + ".d")):
                if f.exists():
                    f.unlink()

    def check(self, p, proj, how, ours, servers, pump):
        missing = [s for s in p["sources"] if not (proj / obj_of(s)).is_file()]
        if missing:
            sys.exit(f"{p['name']}, {how}: no object for {missing}")
        n = len(p["sources"])
        ok, bad = self.d.jobs_since_last(ours, servers, n)
        if len(ok) != n or bad:
            sys.exit(f"{p['name']}, {how}: {len(ok)} jobs done remotely for {n} sources:\n" + "\n".join(bad[:10]))
        if ours:
            proto = [line.split("protocol:")[1].split()[0] if "protocol:" in line else "?" for line in ok]
            want = "3" if pump else "2"
            if any(x != want for x in proto):
                sys.exit(f"{p['name']}, {how}: protocols {sorted(set(proto))}, want {want} for every job")

    def build(self, p, proj, label, ours, servers, pump):
        """One whole build: (wall, tree CPU, cgroup CPU, -s statistics)."""
        self.clean(p, proj)
        env = self.env(label, self.hosts(ours, servers, pump))
        client = str(OURS / "distcc") if ours else REAL_CLIENT
        argv = self.make_argv(p, client, servers)
        if pump:
            env["INCLUDE_SERVER_ARGS"] = "-s"
            argv = [str(OURS / "pump")] + argv
        out = self.work / "pump-build.out"
        wall, cpu, cg = run_tree(argv, proj, env, out)
        self.check(p, proj, label, ours, servers, pump)
        stats = None
        if pump:
            m = IS_STATS.search(out.read_text(errors="replace"))
            if not m:
                sys.exit(f"{p['name']}: no include-server statistics in pump's output")
            stats = tuple(int(x) for x in m.groups())
            if stats[0] != len(p["sources"]) or stats[1]:
                sys.exit(f"{p['name']}: include server: {stats[0]} requests, {stats[1]} given up, "
                         f"for {len(p['sources'])} sources")
        return wall, cpu, cg, stats

    def server_cold_warm(self, p, proj):
        """`pump --startup`, two builds with plain `make` against that one
        include server (cold, then warm), `pump --shutdown`: the server's own
        CPU over each build, and the tree CPU of each build without it."""
        env = self.env("f ours pump", self.hosts(True, 1, True))
        errf = self.work / "pump-startup.err"
        with open(errf, "wb") as err:
            # The server keeps this stderr: stdout alone is read to its end.
            r = subprocess.run([str(OURS / "pump"), "--startup"], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=err, text=True)
        if r.returncode != 0:
            sys.exit(f"pump --startup failed: {errf.read_text()}")
        for line in r.stdout.splitlines():
            k, _, v = line.removeprefix("export ").partition("=")
            env[k] = shlex.split(v)[0]
        pid = int(env["INCLUDE_SERVER_PID"])
        try:
            argv = self.make_argv(p, str(OURS / "distcc"), 1)
            out = []
            c0 = proc_cpu(pid)
            for _ in range(2):
                self.clean(p, proj)
                _, cpu, _ = run_tree(argv, proj, env, self.work / "pump-build.out")
                self.check(p, proj, "pump --startup", True, 1, True)
                c1 = proc_cpu(pid)
                out.append((c1 - c0, cpu))
                c0 = c1
            return out
        finally:
            subprocess.run([str(OURS / "pump"), "--shutdown"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                os.kill(pid, 0)
                os.kill(pid, 9)
            except OSError:
                pass


PUMP_CONFIGS = (("f ours, pump", True, True), ("g ours, plain", True, False), ("h 3.4, plain", False, False))


def pump_part(work, args, say):
    rounds = 1 if args.quick else 2
    projects = pump_projects(work)
    # BENCH_PUMP_PROJECTS=lua,zstd: only those (a quick look at one change).
    only = os.environ.get("BENCH_PUMP_PROJECTS")
    if only:
        projects = [p for p in projects if p["name"].lower() in only.lower().split(",")]
    d = LoggedDaemons(work, 3, 4)
    try:
        bench = PumpBench(work, d, 4)
        res = {}
        for p in projects:
            proj = work / f"pump-{p['name']}"
            shutil.rmtree(proj, ignore_errors=True)
            shutil.copytree(p["tree"], proj, symlinks=True)
            (proj / PUMP_MK).write_text(pump_makefile(p))
            p["proj"] = proj
        for r in range(rounds):
            for p in projects:
                for servers in (1, 3):
                    cfgs = PUMP_CONFIGS[r % 3:] + PUMP_CONFIGS[:r % 3]
                    for label, ours, pump in cfgs:
                        got = bench.build(p, p["proj"], label, ours, servers, pump)
                        res.setdefault((p["name"], label, servers), []).append(got)
                        print(f"  round {r + 1} {p['name']} {label} x{servers}: {got[0]:.2f} s, "
                              f"tree CPU {got[1]:.2f} s, cgroup {got[2]}", flush=True)
                cw = bench.server_cold_warm(p, p["proj"])
                res.setdefault((p["name"], "server"), []).append(cw)
                print(f"  round {r + 1} {p['name']} include server cold {cw[0][0]:.3f} s, warm {cw[1][0]:.3f} s",
                      flush=True)
    finally:
        d.stop()
    pump_report(projects, res, rounds, say)


def pump_report(projects, res, rounds, say):
    say(f"Pump mode, {rounds} rounds, every build checked remote (every object made, every job in our distccd's "
        "log, protocol 3 for pump and 2 for plain). All servers are on this machine and share its cores: wall "
        "time shows overhead, not scaling.\n")
    say("Client-side CPU of the whole build (make, the clients, the include server, local preprocessing; "
        "user+sys, RUSAGE_CHILDREN of the tree; in brackets the tree's cpuacct cgroup). "
        "Goal: pump mode at most a fifth of plain mode's.\n")
    say("| project | files | servers | ours plain CPU s | ours pump CPU s | pump / plain | goal <= 0.20 "
        "| 3.4 plain CPU s |")
    say("|---|---|---|---|---|---|---|---|")
    for p in projects:
        for servers in (1, 3):
            cpu = {lab: median([x[1] for x in res[(p["name"], lab, servers)]]) for lab, _, _ in PUMP_CONFIGS}
            cg = {lab: median([x[2] for x in res[(p["name"], lab, servers)] if x[2] is not None])
                  for lab, _, _ in PUMP_CONFIGS}
            ratio = cpu["f ours, pump"] / cpu["g ours, plain"]
            say(f"| {p['name']} | {len(p['sources'])} | {servers} | {cpu['g ours, plain']:.2f} "
                f"({cg['g ours, plain']:.2f}) | {cpu['f ours, pump']:.2f} ({cg['f ours, pump']:.2f}) "
                f"| {ratio:.2f} | {'met' if ratio <= 0.2 else 'missed'} | {cpu['h 3.4, plain']:.2f} |")
    say()
    say("| project | servers | ours pump wall s | ours plain wall s | 3.4 plain wall s | pump / 3.4 plain "
        "| ours plain / 3.4 plain |")
    say("|---|---|---|---|---|---|---|")
    for p in projects:
        for servers in (1, 3):
            w = {lab: median([x[0] for x in res[(p["name"], lab, servers)]]) for lab, _, _ in PUMP_CONFIGS}
            say(f"| {p['name']} | {servers} | {w['f ours, pump']:.2f} | {w['g ours, plain']:.2f} "
                f"| {w['h 3.4, plain']:.2f} | {w['f ours, pump'] / w['h 3.4, plain']:.2f} "
                f"| {w['g ours, plain'] / w['h 3.4, plain']:.2f} |")
    say()
    say("The include server (`pump --startup`, two builds with `make` against it, `pump --shutdown`): its own CPU "
        "(schedstat of its threads) over the build, per request; the builds' tree CPU without it. "
        "Statistics (-s) of the `pump make` builds: files parsed, directories read.\n")
    say("| project | requests | cold: server CPU s | per request ms | warm: server CPU s | per request ms "
        "| tree CPU without server s | files parsed | dirs read |")
    say("|---|---|---|---|---|---|---|---|---|")
    for p in projects:
        n = len(p["sources"])
        sv = res[(p["name"], "server")]
        cold = median([x[0][0] for x in sv])
        warm = median([x[1][0] for x in sv])
        tree = median([x[1][1] for x in sv])
        st = [x[3] for x in res[(p["name"], "f ours, pump", 1)]]
        say(f"| {p['name']} | {n} | {cold:.3f} | {cold / n * 1000:.2f} | {warm:.3f} | {warm / n * 1000:.2f} "
            f"| {tree:.2f} | {st[0][2]} | {st[0][3]} |")
    say()


# REAPI: our client against a real cluster (tests/reapi/cluster.py:
# PostgreSQL, BuildGrid, the Python test worker), on this machine.

# Run under the BuildGrid venv's Python: the ExecutedActionMetadata of the
# action cache's entries (BuildGrid's and the worker's timestamps), one JSON
# list for the digests on stdin.
REAPI_META = r'''
import json, sys, grpc
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc
ac = re_grpc.ActionCacheStub(grpc.insecure_channel("127.0.0.1:" + sys.argv[1]))
keys = ("queued_timestamp", "worker_start_timestamp", "input_fetch_start_timestamp",
        "input_fetch_completed_timestamp", "execution_start_timestamp", "execution_completed_timestamp",
        "output_upload_start_timestamp", "output_upload_completed_timestamp", "worker_completed_timestamp")
out = []
for line in sys.stdin:
    h, _, n = line.strip().partition("/")
    if h:
        r = ac.GetActionResult(re_pb2.GetActionResultRequest(
            action_digest=re_pb2.Digest(hash=h, size_bytes=int(n))))
        m = r.execution_metadata
        out.append({k: getattr(m, k).seconds + getattr(m, k).nanos / 1e9 for k in keys})
print(json.dumps(out))
'''


def buildgrid_python():
    venv = os.environ.get("DISTCC_RS_BUILDGRID_VENV") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "distcc-rs" / "buildgrid-venv")
    py = Path(venv) / "bin" / "python"
    if not py.exists():
        sys.exit(f"{py} is missing: the reapi part needs the BuildGrid venv scripts/setup makes")
    return py


class ReapiCluster:
    """tests/reapi/cluster.py, stopped by its PID (and by EOF on its stdin if we die)."""

    def __init__(self, work):
        self.err = work / "reapi-cluster.log"
        t = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(buildgrid_python()), str(REPO / "tests" / "reapi" / "cluster.py"), "--stop-on-stdin-eof",
             "--parent", str(work)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.err, "wb"), text=True,
            start_new_session=True)
        for line in self.proc.stdout:
            if line.startswith("READY "):
                break
        else:
            sys.exit(f"the REAPI cluster did not start:\n{self.err.read_text()[-3000:]}")
        self.wall_start = time.perf_counter() - t
        f = dict(w.split("=", 1) for w in line.split()[1:])
        self.port = int(f["port"])
        self.pids = [int(p) for p in f["pids"].split(",")]
        self.executed_file = Path(f["executed"])
        self.dir = Path(f["dir"])
        self.start_secs = float(f["start_secs"])

    def digests(self):
        try:
            return [x for x in self.executed_file.read_text().splitlines() if x]
        except OSError:
            return []

    def executed(self):
        return len(self.digests())

    def cpu(self):
        return tree_cpu(self.proc.pid)

    def metadata(self, digests):
        r = subprocess.run([str(buildgrid_python()), "-c", REAPI_META, str(self.port)], input="\n".join(digests),
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"GetActionResult for the metadata failed: {r.stderr[-2000:]}")
        import json
        return json.loads(r.stdout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def tree_cpu(root):
    """user+sys of a process and its descendants, the live ones and those
    reaped (cutime/cstime), from /proc/PID/stat, in seconds."""
    kids, cpu = {}, {}
    for e in os.listdir("/proc"):
        if not e.isdigit():
            continue
        try:
            s = open(f"/proc/{e}/stat").read()
        except OSError:
            continue
        f = s[s.rfind(")") + 2:].split()
        kids.setdefault(int(f[1]), []).append(int(e))
        cpu[int(e)] = sum(int(x) for x in f[11:15])
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0)
        todo += kids.get(p, [])
    return total / os.sysconf("SC_CLK_TCK")


def run_timed_err(argv, cwd, env):
    """Wall time, the CPU of the process tree (user + sys, children
    included), and the command's stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    err = r.stderr.decode(errors="replace")
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed in {cwd}: {err[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), err


LUA_FLAGS = ["-O2", "-Wall", "-DLUA_COMPAT_5_3", "-DLUA_USE_LINUX"]


def reapi_per_job(work, d, cl, base, rounds):
    """One compile at a time, the configurations' jobs in turn: each round a
    new variant of the source (a changed constant), so the REAPI action is
    new ("uncached"), then the same compile again ("cached")."""
    lua_src = sorted(fetch_crate_sources(work, "lua-src", "551.1.0").glob("lua-5.4*"))[-1]
    tiny = work / "reapi-tiny"
    tiny.mkdir(exist_ok=True)
    luad = work / "reapi-lua-job"
    shutil.rmtree(luad, ignore_errors=True)
    shutil.copytree(lua_src, luad)
    lparser = (luad / "lparser.c").read_text()
    nonce = time.time_ns()
    files = {
        "tiny C file": (tiny, "tiny.c", lambda n: f"int tiny(int x) {{ return x * 2 + {n}; }}\n", []),
        "Lua lparser.c -O2": (luad, "lparser.c", lambda n: lparser + f"\nint distcc_bench_variant = {n};\n",
                              LUA_FLAGS),
    }
    distcc = str(OURS / "distcc")
    dport = d.our_ports[0]
    dpid = next(p.pid for p in d.procs if str(dport) in p.args)
    cfg = {"local gcc": ([], os.environ, None)}
    cfg["distccd host (ours, loopback)"] = ([distcc], env_for(work, f"127.0.0.1:{dport}/4", "d"), dpid)
    if base:
        cfg["distccd host, client from --base-bins"] = (
            [str(base / "distcc")], env_for(work, f"127.0.0.1:{dport}/4", "m"), dpid)
    renv = env_for(work, f"reapi://127.0.0.1:{cl.port}/4", "R")
    cfg["REAPI uncached"] = ([distcc], renv, "cluster")
    cfg["REAPI cached"] = ([distcc], renv, "cluster")
    res = {(f, c): {"lat": [], "cpu": [], "srv": []} for f in files for c in cfg}
    spans = {f: [] for f in files}
    rotating = [c for c in cfg if c != "REAPI cached"]
    for i in range(-1, rounds):  # round -1: a warm-up (the compiler's identity cache, page cache), not kept
        for fname, (wd, src, text, flags) in files.items():
            nonce += 1
            (wd / src).write_text(text(nonce))
            order = rotating[i % len(rotating):] + rotating[:i % len(rotating)] + ["REAPI cached"]
            objs = {}
            for c in order:
                prefix, env, server = cfg[c]
                before = cl.executed()
                s0 = (cl.cpu() if server == "cluster" else tree_cpu(server)) if server else 0
                t0 = time.time()
                # The same -o for both REAPI runs: it is part of the action.
                out = "o-reapi.o" if c.startswith("REAPI") else f"o-{order.index(c)}.o"
                wall, cpu, _ = run_timed_err(prefix + ["gcc"] + flags + ["-c", src, "-o", out], wd, env)
                s1 = (cl.cpu() if server == "cluster" else tree_cpu(server)) if server else 0
                ran = cl.executed() - before
                want = 1 if c == "REAPI uncached" else 0
                if ran != want:
                    sys.exit(f"{fname}, {c}: the worker ran {ran} actions, want {want}")
                objs[c] = (wd / out).read_bytes()
                if i >= 0:
                    r = res[(fname, c)]
                    r["lat"].append(wall)
                    r["cpu"].append(cpu)
                    r["srv"].append(s1 - s0)
                    if c == "REAPI uncached":
                        spans[fname].append((t0, t0 + wall, cl.digests()[-1]))
            for c, b in objs.items():
                if b != objs["local gcc"]:
                    sys.exit(f"{fname}, {c}: the object differs from local gcc's")
    # Where an uncached job's time goes: BuildGrid's and the worker's timestamps.
    phases = {}
    for fname, sp in spans.items():
        meta = cl.metadata([x[2] for x in sp])
        ph = {"client start -> queued": [], "queued -> worker start": [], "worker: fetch inputs": [],
              "worker: run gcc": [], "worker: upload outputs": [], "worker total": [],
              "worker done -> client done": []}
        for (t0, t1, _), m in zip(sp, meta):
            if not m["queued_timestamp"]:
                ph = None
                break
            ph["client start -> queued"].append(m["queued_timestamp"] - t0)
            ph["queued -> worker start"].append(m["worker_start_timestamp"] - m["queued_timestamp"])
            ph["worker: fetch inputs"].append(m["input_fetch_completed_timestamp"] - m["input_fetch_start_timestamp"])
            ph["worker: run gcc"].append(m["execution_completed_timestamp"] - m["execution_start_timestamp"])
            ph["worker: upload outputs"].append(
                m["output_upload_completed_timestamp"] - m["output_upload_start_timestamp"])
            ph["worker total"].append(m["worker_completed_timestamp"] - m["worker_start_timestamp"])
            ph["worker done -> client done"].append(t1 - m["worker_completed_timestamp"])
        phases[fname] = ph
    # The client's peak RSS (itself, not its cpp child).
    peak = {}
    for c in ("distccd host (ours, loopback)", "REAPI uncached", "REAPI cached"):
        prefix, env, _ = cfg[c]
        v = []
        for _ in range(9):
            if c == "REAPI uncached":
                nonce += 1
                (tiny / "tiny.c").write_text(files["tiny C file"][2](nonce))
            v.append(client_peak_kib(prefix + ["gcc", "-c", "tiny.c", "-o", "m.o"], tiny, env))
        peak[c] = median(v)
    return files, res, phases, peak


def reapi_idle_cpu(cl, secs=5.0):
    """The cluster's CPU while nobody asks it anything (its poll loops)."""
    c0, t = cl.cpu(), time.perf_counter()
    time.sleep(secs)
    return (cl.cpu() - c0) / (time.perf_counter() - t)


def reapi_startup(base, runs):
    """`distcc --version`, ours and --base-bins', interleaved."""
    progs = {"ours (with the REAPI client)": str(OURS / "distcc")}
    if base:
        progs["--base-bins"] = str(base / "distcc")
    times = {k: [] for k in progs}
    for _ in range(runs):
        for k, prog in progs.items():
            t = time.perf_counter()
            subprocess.run([prog, "--version"], stdout=subprocess.DEVNULL, check=True)
            times[k].append(time.perf_counter() - t)
    sizes = {}
    for name in sorted(os.listdir(OURS)):
        p = OURS / name
        if p.is_file() and os.access(p, os.X_OK) and "." not in name:
            sizes[name] = (p.stat().st_size, (base / name).stat().st_size if base and (base / name).is_file()
                           else None)
    return {k: (min(v), median(v)) for k, v in times.items()}, sizes


def reapi_lua(work, cl, rounds):
    """Lua's 32 core files, -O2, make -j8: local gcc, through the cluster
    with a new source (an unused declaration added to luaconf.h, so every
    action is new), then again after `rm *.o` (from the action cache)."""
    lua_src = sorted(fetch_crate_sources(work, "lua-src", "551.1.0").glob("lua-5.4*"))[-1]
    build = work / "reapi-lua-build"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(lua_src, build)
    conf = (build / "luaconf.h").read_text()
    objs = " ".join(f"{m}.o" for m in LUA_CORE)
    (build / "bench.mk").write_text(f"all: {objs}\n%.o: %.c\n\t$(CC) {' '.join(LUA_FLAGS)} -c $< -o $@\n")
    env = env_for(work, f"reapi://127.0.0.1:{cl.port}/8", "R")
    env["DISTCC_VERBOSE"] = "1"
    n = len(LUA_CORE)
    res = {k: {"wall": [], "cpu": [], "srv": []} for k in ("local gcc", "REAPI uncached", "REAPI cached")}
    counts = []
    nonce = time.time_ns()
    for r in range(rounds):
        (build / "luaconf.h").write_text(conf + f"\nextern int distcc_bench_round_{nonce}_{r};\n")
        order = ["local gcc", "REAPI uncached"] if r % 2 == 0 else ["REAPI uncached", "local gcc"]
        objs_of = {}
        for k in order + ["REAPI cached"]:
            for m in LUA_CORE:
                (build / f"{m}.o").unlink(missing_ok=True)
            cc = "gcc" if k == "local gcc" else f"{OURS / 'distcc'} gcc"
            before, s0 = cl.executed(), cl.cpu()
            wall, cpu, err = run_timed_err(["make", "-s", "-f", "bench.mk", "-j8", f"CC={cc}"], build,
                                           os.environ if k == "local gcc" else env)
            srv = cl.cpu() - s0
            ran = cl.executed() - before
            ex, hit = err.count("executed on the cluster"), err.count("from the action cache")
            want = {"local gcc": (0, 0, 0), "REAPI uncached": (n, n, 0), "REAPI cached": (0, 0, n)}[k]
            if (ran, ex, hit) != want:
                sys.exit(f"Lua, {k}: worker ran {ran}, log: {ex} executed, {hit} from the cache; want {want}")
            if k != "local gcc":
                counts.append((k, ran, ex, hit))
            if k == "REAPI uncached":
                # The worker's intervals: how much of the build it was busy, and how many at once.
                meta = cl.metadata(cl.digests()[before:])
                iv = sorted((m["worker_start_timestamp"], m["worker_completed_timestamp"]) for m in meta)
                busy = sum(b - a for a, b in iv)
                overlap = max(sum(1 for a2, b2 in iv if a2 < b and b2 > a) for a, b in iv)
                res[k].setdefault("busy", []).append(busy)
                res[k].setdefault("overlap", []).append(overlap)
                res[k].setdefault("wait", []).append(
                    median([m["worker_start_timestamp"] - m["queued_timestamp"] for m in meta]))
            res[k]["wall"].append(wall)
            res[k]["cpu"].append(cpu)
            res[k]["srv"].append(srv)
            objs_of[k] = {m: (build / f"{m}.o").read_bytes() for m in LUA_CORE}
            print(f"  Lua round {r + 1} {k}: {wall:.2f} s, client CPU {cpu:.2f} s, cluster CPU {srv:.2f} s",
                  flush=True)
        for k, o in objs_of.items():
            bad = [m for m in LUA_CORE if o[m] != objs_of["local gcc"][m]]
            if bad:
                sys.exit(f"Lua, {k}: {bad} differ from local gcc's")
    return res, counts


def reapi_part(work, d, args, say):
    base = args.base_bins.resolve() if args.base_bins else None
    rounds = 4 if args.quick else 15
    cl = ReapiCluster(work)
    try:
        idle = reapi_idle_cpu(cl)
        files, res, phases, peak = reapi_per_job(work, d, cl, base, rounds)
        idle2 = reapi_idle_cpu(cl)
        lua, counts = reapi_lua(work, cl, 2 if args.quick else 3)
        start, sizes = reapi_startup(base, 100 if args.quick else 500)
        bg_version = subprocess.run([str(buildgrid_python()), "-c", "import importlib.metadata as m; "
                                     "print(m.version('buildgrid'))"], capture_output=True, text=True).stdout.strip()
    finally:
        cl.stop()
    say(f"REAPI: our release client against tests/reapi/cluster.py (PostgreSQL, BuildGrid "
        f"{bg_version}, one Python "
        f"test worker) on this machine, 127.0.0.1; the cluster started in {cl.start_secs:.1f} s. "
        f"Cluster idle CPU (its poll loops): {idle * 100:.1f} % of a core before the jobs, {idle2 * 100:.1f} % "
        "after.\n")
    say(f"Per job, one compile at a time, {rounds} rounds (medians), configurations in turn; each round a new "
        "source variant (a changed constant): uncached = a new action executed on the worker (checked: the "
        "worker's executed file grows by one), cached = the same compile again (checked: it does not grow); "
        "every object identical to local gcc's. Client CPU = user+sys of the client and its children "
        "(RUSAGE_CHILDREN; for local gcc, the compile). Server CPU = the daemon's or the whole cluster's process "
        "tree over the job (/proc stat, 10 ms ticks; includes the cluster's idle polling).\n")
    say("| file | configuration | latency ms | min ms | client CPU ms | server CPU ms |")
    say("|---|---|---|---|---|---|")
    for fname in files:
        for (f, c), r in res.items():
            if f == fname:
                say(f"| {f} | {c} | {median(r['lat']) * 1000:.1f} | {min(r['lat']) * 1000:.1f} "
                    f"| {median(r['cpu']) * 1000:.1f} | {median(r['srv']) * 1000:.0f} |")
    say()
    for fname, ph in phases.items():
        if ph is None:
            say(f"{fname}: the cluster gave no queued_timestamp in ExecutedActionMetadata.\n")
            continue
        say(f"Where an uncached job's time goes, {fname} (medians over the {rounds} uncached jobs; BuildGrid's "
            "queued/worker timestamps from the action cache's ExecutedActionMetadata, the client's start and end "
            "from this script; one clock):\n")
        say("| phase | ms |")
        say("|---|---|")
        for k, v in ph.items():
            say(f"| {k} | {median(v) * 1000:.1f} |")
        say()
    say("| client peak RSS (tiny C file, median of 9) | KiB |")
    say("|---|---|")
    for c, kib in peak.items():
        say(f"| {c} | {kib} |")
    say()
    say("| `distcc --version` | runs | min ms | median ms |")
    say("|---|---|---|---|")
    for k, (mn, md) in start.items():
        say(f"| {k} | {100 if args.quick else 500} | {mn * 1000:.2f} | {md * 1000:.2f} |")
    say()
    say("| release binary | ours bytes | --base-bins bytes | growth |")
    say("|---|---|---|---|")
    for name, (ours, b) in sizes.items():
        grow = f"{(ours - b) / 1024:+.0f} KiB ({ours / b:.2f}x)" if b else "-"
        say(f"| {name} | {ours} | {b if b else '-'} | {grow} |")
    say()
    n = len(LUA_CORE)
    say(f"Lua 5.4 ({n} core files, lua-src 551.1.0), `-O2`, `make -j8`, `reapi://…/8`; each round a new "
        "luaconf.h (an unused declaration added: every action new, objects unchanged), built locally, "
        "through the cluster uncached, then `rm *.o` and again from the action cache. Checked every time: "
        "the worker's executed file grew by 32 (uncached) or 0 (cached) and the client's verbose log has 32 "
        "`executed on the cluster` or 32 `from the action cache` lines; every object identical to local gcc's. "
        f"Counts (kind, worker ran, log executed, log cached): {sorted(set(counts))}.\n")
    say("| Lua build | wall s | min s | vs local | client CPU s | cluster CPU s |")
    say("|---|---|---|---|---|---|")
    loc = median(lua["local gcc"]["wall"])
    for k, r in lua.items():
        say(f"| {k} | {median(r['wall']):.2f} | {min(r['wall']):.2f} | {median(r['wall']) / loc:.2f} "
            f"| {median(r['cpu']):.2f} | {median(r['srv']):.2f} |")
    say()
    u = lua["REAPI uncached"]
    say(f"The uncached builds on the worker (ExecutedActionMetadata): the worker busy {median(u['busy']):.2f} s "
        f"of the {median(u['wall']):.2f} s build (sum of worker start -> completed over the 32 actions), at most "
        f"{max(u['overlap'])} action(s) on it at once (it runs one lease at a time), median wait in the queue "
        f"(queued -> worker start) {median(u['wait']):.2f} s.\n")


# Zeroconf: `+zeroconf` against an explicit host list, across the two-host
# LAN of tests/zeroconf/lan (network namespaces, each with its own D-Bus and
# avahi-daemon): our distccd --zeroconf in host a, `make -j4` of a 20-file C
# project in host b, every job's wall time taken by a small C wrapper as CC.
LAN = REPO / "tests" / "zeroconf" / "lan"
ZC_FILES = 20
ZC_SERVER = "10.99.0.1"
ZC_CLIENT = "10.99.0.2"

# The per-job timer: CLOCK_MONOTONIC around fork + exec + wait of argv[1:],
# one line "start end status source" appended to $ZC_BENCH_TIMES.
ZC_TIMECC = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    struct timespec a, b;
    const char *src = "-";
    int st = 0, rc;
    pid_t pid;
    if (argc < 2) return 127;
    for (int i = 2; i < argc; i++) {
        size_t n = strlen(argv[i]);
        if (n > 2 && strcmp(argv[i] + n - 2, ".c") == 0) src = argv[i];
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid = fork();
    if (pid < 0) return 127;
    if (pid == 0) { execv(argv[1], argv + 1); _exit(127); }
    while (waitpid(pid, &st, 0) < 0) {}
    clock_gettime(CLOCK_MONOTONIC, &b);
    rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    const char *f = getenv("ZC_BENCH_TIMES");
    if (f) {
        char line[600];
        int n = snprintf(line, sizeof line, "%ld.%09ld %ld.%09ld %d %.400s\n", (long)a.tv_sec, a.tv_nsec,
                         (long)b.tv_sec, b.tv_nsec, rc, src);
        int fd = open(f, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd >= 0) { if (write(fd, line, n) != n) rc = rc ? rc : 126; close(fd); }
    }
    return rc;
}
"""

ZC_MAKEFILE = """\
SRCS := $(sort $(wildcard src*.c))
OBJS := $(SRCS:.c=.o)
all: $(OBJS)
%.o: %.c
\t$(CC) -O2 -c $< -o $@
"""


def zc_source(i):
    """A small C file: a few functions over strings and arrays (tens of ms at -O2)."""
    return f"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item{i} {{ char name[32]; int weight; double score; }};

static int cmp{i}(const void *a, const void *b) {{
    const struct item{i} *x = a, *y = b;
    return x->weight - y->weight + {i};
}}

double rank{i}(struct item{i} *v, size_t n) {{
    double sum = 0;
    qsort(v, n, sizeof *v, cmp{i});
    for (size_t k = 0; k < n; k++) {{
        v[k].score = v[k].weight * {i + 1}.5 / (k + 1);
        sum += v[k].score;
    }}
    return sum;
}}

int describe{i}(char *out, size_t len, const struct item{i} *v, size_t n) {{
    int w = 0;
    for (size_t k = 0; k < n && (size_t)w < len; k++)
        w += snprintf(out + w, len - w, "%s=%d:%.2f;", v[k].name, v[k].weight, v[k].score);
    return w;
}}

unsigned hash{i}(const char *s) {{
    unsigned h = {2166136261 + i}u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % {97 + i}u;
}}
"""


def zc_skip_reason():
    if os.geteuid() != 0:
        return "it needs root (tests/zeroconf/lan makes network namespaces)"
    if not os.access(LAN, os.X_OK):
        return f"{LAN} is missing"
    for tool in ("avahi-daemon", "dbus-daemon", "nsenter", "ip", "make", "gcc"):
        if not shutil.which(tool):
            return f"{tool} is not installed (scripts/setup installs it)"
    return None


class ZcLan:
    """tests/zeroconf/lan up in `work`/lan; torn down when this process exits
    too (--owner), in case `down` is never reached."""

    def __init__(self, work):
        self.dir = work / "lan"
        self.dir.mkdir()
        t0 = time.monotonic()
        r = subprocess.run([str(LAN), "up", str(self.dir), "--owner", str(os.getpid())],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        self.up_secs = time.monotonic() - t0
        if r.returncode:
            raise RuntimeError(f"lan up failed:\n{r.stdout}{r.stderr}")
        self.env = dict(line.split("=", 1) for line in (self.dir / "env").read_text().splitlines() if "=" in line)

    def argv(self, host, *cmd):
        return [str(LAN), "exec", str(self.dir), host, "--", *cmd]

    def pids(self, host):
        out = subprocess.run(["ip", "netns", "pids", self.env[f"LAN_{host.upper()}_NETNS"]],
                             capture_output=True, text=True).stdout.split()
        return [int(p) for p in out]

    def down(self):
        subprocess.run([str(LAN), "down", str(self.dir)], stdin=subprocess.DEVNULL)


def zc_kill_strays(lan, host, comm):
    """Ends the processes named `comm` in one host of the LAN (distcc 3.4's
    lingering browser), by PID; returns how many there were."""
    pids = []
    for p in lan.pids(host):
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == comm:
                pids.append(p)
        except OSError:
            pass
    for p in pids:
        try:
            os.kill(p, 15)
        except OSError:
            pass
    for _ in range(50):
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            break
        time.sleep(0.1)
    return len(pids)


class ZcServer:
    """Our distccd --zeroconf in host a, logging to a file."""

    def __init__(self, work, lan):
        allowed, tmp = daemon_dirs(work)
        self.port = free_port()
        self.log = work / "zc-distccd.log"
        self.logf = open(self.log, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            lan.argv("a", str(OURS / "distccd"), "--daemon", "--no-detach", "--zeroconf",
                     "--allow", lan.env.get("LAN_NET", "10.99.0.0/24"), "--log-stderr", "--log-level", "info",
                     "--jobs", "4", "--port", str(self.port), "--compiler-dir", str(allowed)),
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
            env=dict(os.environ, TMPDIR=str(tmp)), start_new_session=True)
        while "zeroconf: published" not in self.text():
            if self.proc.poll() is not None:
                raise RuntimeError(f"our distccd --zeroconf exited at start:\n{self.text()}")
            if time.monotonic() - t0 > 20:
                raise RuntimeError(f"our distccd did not log 'zeroconf: published' in 20 s:\n{self.text()}")
            time.sleep(0.02)
        self.publish_secs = time.monotonic() - t0
        self.published = next(l for l in self.text().splitlines() if "zeroconf: published" in l)

    def text(self):
        return self.log.read_text(errors="replace")

    def compiles_since(self, offset):
        """COMPILE_OK lines from host b's clients after `offset` bytes of the log."""
        return len(re.findall(rf"client: {re.escape(ZC_CLIENT)}:\d+ COMPILE_OK", self.text()[offset:]))

    def stop(self):
        stop_all([self.proc])
        self.logf.close()


# Label, client, DISTCC_HOSTS ("" = the server's explicit spec), DISTCC_DIR kind:
# fresh = new and empty; warm = our shared list written just before; stale =
# distcc 3.4's list from an earlier build, its browser gone (as ~20 s after).
ZC_CONFIGS = (
    ("explicit host list (ours)", "ours", "", "fresh"),
    ("+zeroconf, cold DISTCC_DIR (ours)", "ours", "+zeroconf", "fresh"),
    ("+zeroconf, warm DISTCC_DIR (ours)", "ours", "+zeroconf", "warm"),
    ("+zeroconf, cold DISTCC_DIR (3.4 client)", "3.4", "+zeroconf", "fresh"),
    ("+zeroconf, old list, browser gone (3.4 client)", "3.4", "+zeroconf", "stale"),
)


class ZcBench:
    def __init__(self, work, lan, server):
        self.work, self.lan, self.server = work, lan, server
        self.proj = work / "zc-proj"
        self.proj.mkdir()
        for i in range(ZC_FILES):
            (self.proj / f"src{i:02}.c").write_text(zc_source(i))
        (self.proj / "Makefile").write_text(ZC_MAKEFILE)
        (work / "zc-prime.c").write_text("int zc_prime(int x) { return x + 1; }\n")
        self.timecc = work / "zc-timecc"
        subprocess.run(["gcc", "-O2", "-o", str(self.timecc), "-x", "c", "-"], input=ZC_TIMECC, text=True, check=True)
        self.explicit = f"{ZC_SERVER}:{server.port}/4,lzo"
        self.n = 0

    def env(self, hosts, ddir, times, dlog):
        e = dict(os.environ)
        for k in [k for k in e if k.startswith("DISTCC_")]:
            del e[k]
        e.update(DISTCC_HOSTS=hosts or self.explicit, DISTCC_DIR=str(ddir), DISTCC_FALLBACK="0",
                 DISTCC_PAUSE_TIME_MSEC="5", DISTCC_LOG=str(dlog), ZC_BENCH_TIMES=str(times))
        return e

    def build(self, label, client, hosts, kind):
        """One clean `make -j4` in host b: per-job latencies, the make's wall
        time, and what the client's log says about browsing."""
        self.n += 1
        tag = f"zc-{self.n:02}"
        exe = str(OURS / "distcc") if client == "ours" else REAL_CLIENT
        if kind in ("warm", "stale"):
            ddir = self.work / f"zc-dd-{kind}"
        else:
            ddir = self.work / f"{tag}-dd"
        ddir.mkdir(exist_ok=True)   # distcc 3.4's client needs it made
        hosts_file = ddir / "zeroconf" / "hosts"
        times, dlog = self.work / f"{tag}.times", self.work / f"{tag}.log"
        env = self.env(hosts, ddir, times, dlog)
        for o in self.proj.glob("*.o"):
            o.unlink()
        if kind == "warm":
            # A compile just before the build browses and writes the shared
            # list (removed first, so it is always a new one): the build then
            # runs with a list a few seconds old at most, as after a build.
            hosts_file.unlink(missing_ok=True)
        if kind == "warm" or (kind == "stale" and not (hosts_file.exists() and hosts_file.read_text().strip())):
            # Stale (distcc 3.4's list): one compile spawns its browser
            # and sleeps 1 s; the browser is then ended, as if timed out.
            plog = self.work / f"{tag}-prime.log"
            r = subprocess.run(self.lan.argv("b", exe, "gcc", "-c", str(self.work / "zc-prime.c"), "-o",
                                             str(self.work / "zc-prime.o")),
                               cwd=self.work, env=dict(env, DISTCC_LOG=str(plog)),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            zc_kill_strays(self.lan, "b", "distcc") if client == "3.4" else 0
            if r.returncode or not hosts_file.exists():
                raise RuntimeError(f"{label}: the priming compile failed ({r.returncode}): "
                                   f"{plog.read_text(errors='replace') if plog.exists() else ''}")
        offset = len(self.server.text())
        t0 = time.monotonic()
        # To a file, not a pipe: distcc 3.4's browser, forked by a client,
        # would hold a pipe open for its ~20 s.
        out = self.work / f"{tag}.out"
        with open(out, "w") as f:
            # -k for distcc 3.4: some of its jobs fail (see zeroconf_report).
            r = subprocess.run(self.lan.argv("b", "make", "-j4", "-s", *(["-k"] if client == "3.4" else []),
                                             f"CC={self.timecc} {exe} gcc"),
                               cwd=self.proj, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        wall = time.monotonic() - t0
        strays = zc_kill_strays(self.lan, "b", "distcc") if client == "3.4" else 0
        if r.returncode and client != "3.4":
            raise RuntimeError(f"{label}: make failed ({r.returncode}):\n{out.read_text(errors='replace')}")
        objs = len(list(self.proj.glob("src*.o")))
        jobs, failed = [], []
        for line in times.read_text().splitlines():
            a, b, rc, src = line.split(" ", 3)
            if rc != "0":
                # Only distcc 3.4's "no hosts" (116) is tolerated, and only from it.
                if client != "3.4" or rc != "116":
                    raise RuntimeError(f"{label}: {src}: the client exited {rc}")
                failed.append((float(a) - t0, float(b) - float(a)))
                continue
            jobs.append((float(a) - t0, float(b) - float(a)))
        jobs.sort()
        want = ZC_FILES - len(failed)
        remote = 0
        for _ in range(40):   # the daemon logs a job just after replying
            remote = self.server.compiles_since(offset)
            if remote >= want:
                break
            time.sleep(0.05)
        if objs != want or len(jobs) + len(failed) != ZC_FILES or remote != want:
            raise RuntimeError(f"{label}: {objs} objects, {len(jobs)} jobs ok and {len(failed)} failed, {remote} "
                               f"COMPILE_OK in the server's log; want {want} objects and COMPILE_OK")
        log = dlog.read_text(errors="replace") if dlog.exists() else ""
        browses = [int(m) for m in re.findall(r"\+zeroconf: browsed .*: \d+ server\(s\) in (\d+) ms", log)]
        return {"wall": wall, "jobs": jobs, "failed": failed, "browses": browses, "strays": strays,
                "hosts": hosts_file.read_text().strip() if hosts_file.exists() else ""}


def zeroconf_part(work, args, say):
    why = zc_skip_reason()
    if why:
        say(f"Zeroconf: part skipped: {why}.\n")
        return
    rounds = 2 if args.quick else 5
    lan = server = None
    res = {c[0]: [] for c in ZC_CONFIGS}
    failed = {}
    try:
        lan = ZcLan(work)
        server = ZcServer(work, lan)
        bench = ZcBench(work, lan, server)
        for rnd in range(rounds):
            order = ZC_CONFIGS[rnd % len(ZC_CONFIGS):] + ZC_CONFIGS[:rnd % len(ZC_CONFIGS)]
            for label, client, hosts, kind in order:
                if label in failed:
                    continue
                try:
                    got = bench.build(label, client, hosts, kind)
                except RuntimeError as e:
                    if client != "3.4":
                        raise
                    failed[label] = str(e)   # distcc 3.4 is the comparison, not the subject
                    print(f"  {label}: {e}", flush=True)
                    continue
                res[label].append(got)
                lat = [j[1] for j in got["jobs"]]
                print(f"  round {rnd + 1} {label}: make {got['wall']:.2f} s, {len(got['failed'])} failed, jobs median "
                      f"{median(lat) * 1000:.0f} ms max {max(lat) * 1000:.0f} ms, browses {got['browses']}"
                      f"{', stray browsers killed: %d' % got['strays'] if client == '3.4' else ''}", flush=True)
        published, publish_secs, up_secs = server.published, server.publish_secs, lan.up_secs
        hosts_ours = next((r["hosts"] for r in res[ZC_CONFIGS[1][0]]), "")
        hosts_34 = next((r["hosts"] for c in ZC_CONFIGS[3:] for r in res[c[0]] if r["hosts"]), "")
    finally:
        if server:
            server.stop()
        if lan:
            lan.down()
    zeroconf_report(res, failed, rounds, bench.explicit, up_secs, publish_secs, published, hosts_ours, hosts_34,
                    say)


def zeroconf_report(res, failed, rounds, explicit, up_secs, publish_secs, published, hosts_ours, hosts_34, say):
    published = re.sub(r"^.*?(zeroconf: published)", r"\1", published)
    say(f"Zeroconf: tests/zeroconf/lan (two network namespaces, each with its own D-Bus and avahi-daemon; up in "
        f"{up_secs:.1f} s); our distccd --zeroconf --jobs 4 in host a ({ZC_SERVER}), logged `{published}` "
        f"{publish_secs:.2f} s after start. In host b, `make -j4` of {ZC_FILES} small C files (`-O2`), each round a "
        f"clean build, {rounds} rounds, configurations in turn; `DISTCC_FALLBACK=0` and every build checked: "
        f"{ZC_FILES} objects and {ZC_FILES} `COMPILE_OK` from {ZC_CLIENT} in the server's log. Per job = the wall "
        "time of one client run (CLOCK_MONOTONIC around fork/exec/wait in a C wrapper as CC). Explicit hosts: "
        f"`{ZC_SERVER}:PORT/4,lzo`. Cold = a new, empty DISTCC_DIR "
        "each round; warm = the shared list written by one compile just before the build.\n")
    say("Per job over the jobs that compiled; \"failed\" = jobs that exited 116 (no hosts: distcc 3.4 read its "
        "hosts file while it was still empty; with the default DISTCC_FALLBACK they would have compiled "
        "locally). \"First 4\" = the 4 jobs make starts at once. Browses = `+zeroconf: browsed …` lines in "
        "the client's DISTCC_LOG per build, and how long each took.\n")
    say("| configuration | jobs ok | failed | median ms | max ms | jobs > 0.9 s | first 4 jobs, median ms "
        "| make wall s (median) | browses per build | browse ms |")
    say("|---|---|---|---|---|---|---|---|---|---|")
    for label, *_ in ZC_CONFIGS:
        rs = res[label]
        if not rs:
            say(f"| {label} | failed: {failed.get(label, 'no rounds')[:120].splitlines()[0]} | | | | | | | | |")
            continue
        lat = [j[1] for r in rs for j in r["jobs"]]
        first4 = [j[1] for r in rs for j in r["jobs"][:4]]
        br = [b for r in rs for b in r["browses"]]
        nbr = sorted({len(r["browses"]) for r in rs})
        browse = f"{median(br):.0f} (max {max(br)})" if br else "-"
        nfail = sum(len(r["failed"]) for r in rs)
        say(f"| {label} | {len(lat)} | {nfail} | {median(lat) * 1000:.0f} | {max(lat, default=float('nan')) * 1000:.0f} "
            f"| {sum(x > 0.9 for x in lat)} | {median(first4) * 1000:.0f} | {median([r['wall'] for r in rs]):.2f} "
            f"| {'/'.join(map(str, nbr)) if '3.4' not in label else 'n/a'} | {browse} |")
    say()
    say(f"Hosts files written: ours `{hosts_ours.splitlines()[-1] if hosts_ours else '-'}`; "
        f"3.4's `{hosts_34.splitlines()[-1] if hosts_34 else '-'}`.\n")
    for label, rs in res.items():
        for i, r in enumerate(rs):
            say(f"  {label}, round {i + 1}: make {r['wall']:.2f} s; jobs (start ms: latency ms) "
                + ", ".join(f"{a * 1000:.0f}: {b * 1000:.0f}" for a, b in r["jobs"])
                + ("; failed " + ", ".join(f"{a * 1000:.0f}: {b * 1000:.0f}" for a, b in r["failed"])
                   if r["failed"] else ""))
    say()


if __name__ == "__main__":
    main()
