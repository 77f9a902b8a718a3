//! distccd under real systemd (PID 1 of its own namespaces, see `sysbox`):
//! socket activation, the journal, privileges, STATUS, draining, conf.d,
//! the port-3692 instance, unit verification, tmpfiles; and the 32-bit
//! chroot instance end to end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::sysbox::SystemdBox;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Puts our binaries, units, conf.d and tmpfiles files where the package does.
fn install(b: &SystemdBox) {
    b.copy_in(Path::new(DISTCCD), "/usr/bin/distccd");
    b.copy_in(Path::new(DISTCC), "/usr/bin/distcc");
    for unit in [
        "distccd.socket",
        "distccd-stats.socket",
        "distccd.service",
        "distccd@.socket",
        "distccd@.service",
    ] {
        b.copy_in(
            &Path::new(REPO).join("systemd").join(unit),
            &format!("/etc/systemd/system/{unit}"),
        );
    }
    b.copy_in(&Path::new(REPO).join("conf.d/distccd"), "/etc/conf.d/distccd");
    b.copy_in(
        &Path::new(REPO).join("tmpfiles.d/distccd.conf"),
        "/usr/lib/tmpfiles.d/distccd.conf",
    );
    b.copy_in(
        &Path::new(REPO).join("tmpfiles.d/distcc-user.conf"),
        "/usr/share/user-tmpfiles.d/distcc.conf",
    );
    b.copy_in(
        &Path::new(REPO).join("packaging/distcc-chroot"),
        "/usr/bin/distcc-chroot",
    );
    // The compiler allow-list, as the package makes it.
    b.sh("mkdir -p /usr/lib/distcc && for c in cc gcc g++ c++ x86_64-linux-gnu-gcc x86_64-linux-gnu-g++; do ln -sf ../../bin/distcc /usr/lib/distcc/$c; done");
    b.sh("systemctl daemon-reload");
}

fn main_pid(b: &SystemdBox, unit: &str) -> String {
    b.sh(&format!("systemctl show -p MainPID --value {unit}"))
        .trim()
        .to_owned()
}

fn wait_for(b: &SystemdBox, what: &str, script: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = b.exec(&["sh", "-c", script]);
        if out.status.success() {
            return text(&out.stdout);
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const COMPILE: &str =
    "cd /root && DISTCC_HOSTS=127.0.0.1 DISTCC_FALLBACK=0 DISTCC_VERBOSE=1 distcc gcc -O2 -c t.c -o t.o";

#[test]
fn distccd_under_systemd() {
    let b = SystemdBox::boot("distccd");
    install(&b);
    b.write("/root/t.c", b"int answer(void) { return 42; }\n", 0o644);

    // Units verify (templates as an instance).
    b.sh("cd /etc/systemd/system && ln -sf distccd@.socket /tmp/distccd@3692.socket && ln -sf distccd@.service /tmp/distccd@3692.service");
    let verify = b.exec(&[
        "systemd-analyze",
        "verify",
        "/etc/systemd/system/distccd.socket",
        "/etc/systemd/system/distccd-stats.socket",
        "/etc/systemd/system/distccd.service",
        "/tmp/distccd@3692.socket",
        "/tmp/distccd@3692.service",
    ]);
    assert!(
        verify.status.success() && text(&verify.stderr).trim().is_empty(),
        "systemd-analyze verify: {}",
        text(&verify.stderr)
    );

    // Enabling the sockets (compiles, and the statistics page instead of
    // --stats) starts no daemon.
    b.sh("systemctl enable --now distccd.socket distccd-stats.socket");
    assert_eq!(
        b.exec(&["systemctl", "is-active", "distccd.service"]).stdout,
        b"inactive\n"
    );
    assert!(
        !b.exec(&["pgrep", "-x", "distccd"]).status.success(),
        "no distccd before the first connection"
    );

    // The first compile starts it and is served by it.
    let out = b.sh(&format!("{COMPILE} 2>&1"));
    assert!(out.contains("compiled t.c on 127.0.0.1"), "{out}");
    assert_eq!(
        b.exec(&["systemctl", "is-active", "distccd.service"]).stdout,
        b"active\n"
    );
    let local = b.sh("cd /root && gcc -O2 -c t.c -o local.o && cmp t.o local.o && echo same");
    assert_eq!(local.trim(), "same");

    // The journal has the job, with fields.
    let journal = wait_for(
        &b,
        "the job in the journal",
        "journalctl -u distccd --no-pager -o cat | grep 'COMPILE_OK.*t.c'",
    );
    assert!(journal.contains("x86_64-linux-gnu-gcc t.c"), "{journal}");
    let fields = b.sh("journalctl -u distccd RESULT=COMPILE_OK -o verbose --no-pager");
    assert!(
        fields.contains("INPUT=t.c")
            && fields.contains("SYSLOG_IDENTIFIER=distccd")
            && fields.contains("PEER=127.0.0.1:"),
        "{fields}"
    );

    // Served as nobody, with no capabilities and no way to gain any.
    let pid = main_pid(&b, "distccd.service");
    let status = b.sh(&format!("cat /proc/{pid}/status"));
    let line = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        line("Uid:").split_whitespace().skip(1).all(|u| u == "65534"),
        "{}",
        line("Uid:")
    );
    assert!(
        line("Gid:").split_whitespace().skip(1).all(|g| g == "65534"),
        "{}",
        line("Gid:")
    );
    assert_eq!(
        line("Groups:").split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"],
        "{}",
        line("Groups:")
    );
    for k in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        assert_eq!(
            line(k).split_whitespace().nth(1),
            Some("0000000000000000"),
            "{}",
            line(k)
        );
    }
    assert_eq!(line("NoNewPrivs:").split_whitespace().nth(1), Some("1"));

    // STATUS= in systemctl status.
    let st = wait_for(
        &b,
        "STATUS",
        "systemctl status distccd --no-pager | grep 'Status: \"0 running, 1 served'",
    );
    assert!(st.contains("0 failed, 0 refused"), "{st}");
    // The stats page says the same as STATUS=.
    let status = b
        .sh("systemctl show -p StatusText --value distccd")
        .trim()
        .to_owned();
    let page = b.sh("curl -s --max-time 10 http://127.0.0.1:3633/");
    assert!(
        page.contains(&format!("\nstatus {status}\n")),
        "STATUS={status} vs {page}"
    );

    // Watchdog: with a 2 s WatchdogSec the service keeps running (pings work).
    b.sh("mkdir -p /run/systemd/system/distccd.service.d && printf '[Service]\\nWatchdogSec=2\\n' > /run/systemd/system/distccd.service.d/wd.conf && systemctl daemon-reload && systemctl restart distccd.service");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        b.exec(&["systemctl", "is-active", "distccd.service"]).stdout,
        b"active\n"
    );
    assert_eq!(
        b.sh("systemctl show -p NRestarts --value distccd.service").trim(),
        "0",
        "watchdog never fired"
    );

    // Stopping drains a running job: it completes on the server.
    let big = slow_source(4000);
    b.write("/root/big.c", big.as_bytes(), 0o644);
    b.sh("cd /root && (DISTCC_HOSTS=127.0.0.1 DISTCC_FALLBACK=0 DISTCC_VERBOSE=1 distcc gcc -O2 -c big.c -o big.o > big.log 2>&1; echo $? > big.rc) > /dev/null 2>&1 &");
    wait_for(
        &b,
        "the big job to run",
        "systemctl status distccd --no-pager | grep 'Status: \"1 running'",
    );
    b.sh("systemctl stop distccd.service");
    let rc = wait_for(&b, "the drained job", "cat /root/big.rc");
    assert_eq!(rc.trim(), "0", "{}", b.sh("cat /root/big.log"));
    assert!(
        b.sh("cat /root/big.log").contains("compiled big.c on 127.0.0.1"),
        "{}",
        b.sh("cat /root/big.log")
    );
    let stopping = b.sh("journalctl -u distccd --no-pager -o cat");
    assert!(
        stopping.contains("SIGTERM: stopping") && stopping.contains("waiting for 1 running job"),
        "{stopping}"
    );

    // A conf.d change takes effect at the next start; refusals are in the journal.
    b.sh("rm -rf /run/systemd/system/distccd.service.d && systemctl daemon-reload");
    b.write(
        "/etc/conf.d/distccd",
        b"DISTCC_ARGS=\"--allow 10.9.9.9 --log-file '/var/log/distccd/with space.log'\"\n",
        0o644,
    );
    let refused = b.exec(&["sh", "-c", COMPILE]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("access denied"),
        "{}",
        text(&refused.stderr)
    );
    let log = wait_for(
        &b,
        "the refusal in the log file",
        "cat '/var/log/distccd/with space.log' | grep REFUSED",
    );
    assert!(log.contains("is not in this server's --allow list"), "{log}");
    // Without --log-file, refusals go to the journal with their reason.
    b.write(
        "/etc/conf.d/distccd",
        b"DISTCC_ARGS=\"--allow 10.9.9.9\"\n",
        0o644,
    );
    b.sh("systemctl stop distccd.service");
    let _ = b.exec(&["sh", "-c", COMPILE]);
    let refusals = wait_for(
        &b,
        "REFUSED in the journal",
        "journalctl -u distccd RESULT=REFUSED -o verbose --no-pager | grep REASON=",
    );
    assert!(refusals.contains("access denied: client 127.0.0.1"), "{refusals}");

    // The port-3692 instance serves beside the main one.
    b.write(
        "/etc/conf.d/distccd",
        b"DISTCC_ARGS=\"--allow 127.0.0.1\"\n",
        0o644,
    );
    b.write(
        "/etc/conf.d/distccd@3692",
        b"DISTCC_ARGS=\"--allow 127.0.0.1\"\n",
        0o644,
    );
    b.sh("systemctl stop distccd.service; systemctl enable --now distccd@3692.socket");
    let both = b.sh("cd /root && DISTCC_HOSTS=127.0.0.1:3692 DISTCC_FALLBACK=0 DISTCC_VERBOSE=1 distcc gcc -c t.c -o t3692.o 2>&1 && DISTCC_HOSTS=127.0.0.1 DISTCC_FALLBACK=0 DISTCC_VERBOSE=1 distcc gcc -c t.c -o t3632.o 2>&1");
    assert!(
        both.contains("compiled t.c on 127.0.0.1:3692") && both.contains("compiled t.c on 127.0.0.1\n"),
        "{both}"
    );
    assert_eq!(
        b.exec(&[
            "systemctl",
            "is-active",
            "distccd@3692.service",
            "distccd.service"
        ])
        .stdout,
        b"active\nactive\n"
    );
    wait_for(
        &b,
        "the instance's journal",
        "journalctl -u distccd@3692 --no-pager -o cat | grep 'COMPILE_OK.*t.c'",
    );

    // tmpfiles: the daemon's runtime dir and users' ~/.distcc on tmpfs.
    b.sh("systemd-tmpfiles --create /usr/lib/tmpfiles.d/distccd.conf");
    assert_eq!(b.sh("stat -f -c %T /run/distccd").trim(), "tmpfs");
    // (The compiles above made a ~/.distcc on disk; a new user has none.)
    b.sh("rm -rf /root/.distcc && mkdir -p /run/user/0 && XDG_RUNTIME_DIR=/run/user/0 HOME=/root systemd-tmpfiles --user --create /usr/share/user-tmpfiles.d/distcc.conf");
    assert_eq!(b.sh("readlink /root/.distcc").trim(), "/run/user/0/distcc");
    assert_eq!(b.sh("stat -L -f -c %T /root/.distcc").trim(), "tmpfs");
    // And the client uses it: its locks land on tmpfs.
    b.sh("cd /root && DISTCC_HOSTS=127.0.0.1 HOME=/root distcc gcc -c t.c -o t-home.o");
    assert!(
        b.sh("ls /run/user/0/distcc/lock")
            .contains("cpu_tcp_127.0.0.1_3632_0")
    );
    b.stop();
}

/// A real 32-bit chroot (Debian i386 with gcc), built once by debootstrap
/// and kept between runs.
fn i386_chroot() -> PathBuf {
    let (suite, mirror) = debian_mirror();
    // Not under /tmp or /var/tmp: the units' PrivateTmp would hide it.
    let root = PathBuf::from(format!("/var/cache/distcc-rs-tests/i386-{suite}"));
    if root.join("usr/bin/gcc").exists() && root.join(".complete").exists() {
        return root;
    }
    assert!(
        Path::new("/usr/sbin/debootstrap").exists(),
        "debootstrap is missing (apt-get install debootstrap)"
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let st = Command::new("/usr/sbin/debootstrap")
        .args([
            "--variant=minbase",
            "--arch=i386",
            "--include=gcc,libc6-dev",
            &suite,
        ])
        .arg(&root)
        .arg(&mirror)
        .status()
        .unwrap();
    assert!(
        st.success(),
        "debootstrap of the i386 chroot from {mirror} failed"
    );
    std::fs::write(root.join(".complete"), b"").unwrap();
    root
}

/// This machine's Debian release and the mirror its apt uses for it, from
/// /etc/os-release and the apt sources (deb822 `.sources` or `sources.list`).
fn debian_mirror() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let suite = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("VERSION_CODENAME in /etc/os-release");
    let mut texts: Vec<String> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        files.sort();
        texts.extend(files.iter().filter_map(|f| std::fs::read_to_string(f).ok()));
    }
    texts.extend(std::fs::read_to_string("/etc/apt/sources.list").ok());
    for text in &texts {
        // deb822: a stanza with `URIs:` and `Suites:` naming our suite.
        for stanza in text.split("\n\n") {
            let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
            if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                && suites.split_whitespace().any(|s| s == suite)
                && let Some(uri) = uris.split_whitespace().next()
            {
                return (suite, uri.to_owned());
            }
        }
        // One-line form: `deb URI SUITE COMPONENTS`.
        for l in text.lines() {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.len() >= 3 && w[0] == "deb" && w[2] == suite {
                return (suite, w[1].to_owned());
            }
        }
    }
    panic!("no apt source for {suite} found to debootstrap from");
}

/// Our client as a static executable: the only kind of x86_64 program that
/// runs inside a 32-bit chroot (no x86_64 loader or libc there).
fn static_client() -> PathBuf {
    let target_dir = Path::new(REPO).join("target/static");
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--bin",
            "distcc",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
        ])
        .arg(&target_dir)
        .current_dir(REPO)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .unwrap();
    assert!(st.success(), "static build of distcc failed");
    target_dir.join("x86_64-unknown-linux-gnu/release/distcc")
}

#[test]
fn chroot_instance_on_3692_builds_32_bit() {
    let root = i386_chroot();
    let client = static_client();
    let b = SystemdBox::boot("chroot32");
    install(&b);
    let r = root.display();
    // Inside the box (an overlay: the cached chroot is not changed):
    // the chroot's own allow-list and our client in it.
    b.copy_in(&client, &format!("{r}/usr/local/bin/distcc"));
    b.sh(&format!("mkdir -p {r}/usr/lib/distcc {r}/root && ln -sf ../../bin/gcc {r}/usr/lib/distcc/gcc && chmod 1777 {r}/tmp"));
    b.write(&format!("{r}/root/a.c"), b"static const char *word = \"i686\";\nint wordlen(void) { int n = 0; while (word[n]) n++; return n; }\n", 0o644);
    b.write(
        "/etc/conf.d/distccd@3692",
        format!("DISTCC_ARGS=\"--allow 127.0.0.1 --chroot {r}\"\n").as_bytes(),
        0o644,
    );
    b.sh("systemctl enable --now distccd@3692.socket");
    // The user's own host list names the native port; the wrapper maps it.
    let out = b.sh(&format!(
        "DISTCC_HOSTS='127.0.0.1/4' DISTCC_FALLBACK=0 DISTCC_VERBOSE=1 distcc-chroot -- \
         chroot {r} sh -c 'cd /root && HOME=/root /usr/local/bin/distcc gcc -O2 -c a.c -o remote.o' 2>&1"
    ));
    assert!(out.contains("compiled a.c on 127.0.0.1:3692/4"), "{out}");
    let kind = b.sh(&format!("file {r}/root/remote.o"));
    assert!(kind.contains("ELF 32-bit") && kind.contains("80386"), "{kind}");
    b.sh(&format!(
        "chroot {r} sh -c 'cd /root && gcc -O2 -c a.c -o local.o' && cmp {r}/root/remote.o {r}/root/local.o"
    ));
    let journal = wait_for(
        &b,
        "the chroot job",
        "journalctl -u distccd@3692 --no-pager -o cat | grep 'COMPILE_OK.*a.c'",
    );
    assert!(journal.contains("gcc a.c"), "{journal}");
    b.stop();
}

#[test]
fn the_chroot_comes_from_this_machines_apt_mirror() {
    let (suite, mirror) = debian_mirror();
    assert!(
        !suite.is_empty() && suite.chars().all(|c| c.is_ascii_lowercase()),
        "{suite}"
    );
    assert!(
        mirror.starts_with("http://") || mirror.starts_with("https://") || mirror.starts_with("file:"),
        "{mirror}"
    );
    assert!(
        !mirror.contains("security"),
        "the main archive, not the security one: {mirror}"
    );
}

/// A link for mDNS in the box, whose only other one is `lo`, which neither
/// responder publishes on (no other machine could use it). A veth pair, as
/// this kernel has no `dummy` driver; the peer stays in the box.
fn add_link(b: &SystemdBox) {
    b.sh(
        "ip link add zc0 type veth peer name zc1 && ip addr add 10.77.0.1/24 dev zc0 \
         && ip link set zc0 multicast on up && ip link set zc1 multicast on up",
    );
}

/// A box for `--zeroconf`, with the packaged units and conf.d and
/// `--zeroconf` in /etc/conf.d/distccd, and the service enabled. `None`,
/// said, when not root: booting a box needs it.
fn zeroconf_box(name: &str) -> Option<SystemdBox> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: booting systemd in namespaces needs root");
        return None;
    }
    let b = SystemdBox::boot(name);
    install(&b);
    b.write(
        "/etc/conf.d/distccd",
        b"DISTCC_ARGS=\"--allow 127.0.0.1 --zeroconf\"\n",
        0o644,
    );
    // Enabling the service (not only the socket) is what starts it at boot,
    // which publishing needs.
    b.sh("systemctl enable distccd.service");
    assert_eq!(
        b.exec(&["systemctl", "is-enabled", "distccd.service", "distccd.socket"])
            .stdout,
        b"enabled\nenabled\n"
    );
    assert!(
        b.sh("systemctl show -p WantedBy --value distccd.service")
            .contains("multi-user.target"),
        "enabling distccd.service does not start it at boot"
    );
    Some(b)
}

/// The journal's zeroconf line once the running distccd.service has said
/// how it published.
fn zeroconf_line(b: &SystemdBox) -> String {
    wait_for(
        b,
        "the zeroconf line in the journal",
        "journalctl _SYSTEMD_INVOCATION_ID=$(systemctl show -p InvocationID --value distccd.service) \
         --no-pager -o cat | grep -E 'zeroconf: (published|not published)'",
    )
}

#[test]
fn zeroconf_under_systemd_without_avahi_uses_the_built_in_responder() {
    let Some(b) = zeroconf_box("zc-builtin") else {
        return;
    };
    // The box masks what the host enables, avahi-daemon among them.
    assert!(
        !b.exec(&["systemctl", "is-active", "avahi-daemon.service"])
            .status
            .success()
    );
    // With only loopback it publishes, and says no one can see it yet.
    b.sh("systemctl start distccd.service");
    let line = zeroconf_line(&b);
    assert!(
        line.contains(&format!("published distcc@{} (", b.name()))
            && line.contains("._sub._distcc._tcp) port 3632")
            && line.contains(
                "via the built-in mDNS responder (avahi-daemon is not on the system D-Bus); \
                 no interface but loopback is up"
            ),
        "{line}"
    );
    // A link that comes up later is taken on by the responder, and a client
    // in the box (our browser, over zc0) finds the server there. Each try
    // has a DISTCC_DIR of its own, so it browses rather than reading the
    // last try's list.
    add_link(&b);
    let hosts = wait_for(
        &b,
        "the server found by +zeroconf",
        &format!(
            "cd /root && DISTCC_DIR=$(mktemp -d) DISTCC_HOSTS=+zeroconf distcc --show-hosts \
             | grep -E '^10.77.0.1:3632/[0-9]+,lzo,cpp  # [+]zeroconf: distcc@{}, '",
            b.name()
        ),
    );
    assert_eq!(hosts.lines().count(), 1, "{hosts}");
    b.sh("systemctl stop distccd.service");
    wait_for(
        &b,
        "the goodbye in the journal",
        "journalctl -u distccd --no-pager -o cat \
         | grep -F 'zeroconf: withdrawn (goodbye sent by the built-in responder)'",
    );
    // Without AF_NETLINK the responder could list no interface: distccd
    // says it did not publish rather than that it did.
    b.sh(
        "mkdir -p /run/systemd/system/distccd.service.d && printf '[Service]\\nRestrictAddressFamilies=\\n\
         RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6\\n' > /run/systemd/system/distccd.service.d/af.conf \
         && systemctl daemon-reload && systemctl start distccd.service",
    );
    let line = zeroconf_line(&b);
    assert!(
        line.contains(
            "zeroconf: not published: the built-in mDNS responder cannot list the network interfaces"
        ) && line.contains("AF_NETLINK"),
        "{line}"
    );
    b.stop();
}

#[test]
fn zeroconf_under_systemd_goes_through_avahi_daemon() {
    let Some(b) = zeroconf_box("zc-avahi") else {
        return;
    };
    add_link(&b);
    // Unit files in /etc take precedence over the box's masks of the host's
    // enabled units.
    for unit in ["avahi-daemon.service", "avahi-daemon.socket"] {
        b.sh(&format!(
            "cp /lib/systemd/system/{unit} /etc/systemd/system/{unit}"
        ));
    }
    b.sh("systemctl daemon-reload && systemctl start avahi-daemon.service");
    wait_for(
        &b,
        "avahi-daemon's start-up",
        "journalctl -u avahi-daemon --no-pager -o cat | grep 'Server startup complete'",
    );
    // The port published is the passed socket's, not distccd's --port default.
    b.write(
        "/etc/systemd/system/distccd.socket.d/port.conf",
        b"[Socket]\nListenStream=\nListenStream=3700\n",
        0o644,
    );
    b.sh("systemctl daemon-reload && systemctl start distccd.service");
    let line = zeroconf_line(&b);
    assert!(
        line.contains(&format!("published distcc@{} (", b.name()))
            && line.contains("._sub._distcc._tcp) port 3700")
            && line.contains("via avahi-daemon avahi 0.")
            && line.contains("; TXT txtvers=1 "),
        "{line}"
    );
    // avahi-daemon answers for it on the link (avahi-browse escapes '@').
    let seen = b.sh("avahi-browse -tpr _distcc._tcp");
    let resolved = format!("=;zc0;IPv4;distcc\\064{};", b.name());
    assert!(
        seen.lines().any(|l| l.starts_with(&resolved)
            && l.contains(";10.77.0.1;3700;")
            && l.contains("\"protocols=1,2,3\"")),
        "{seen}"
    );
    b.sh("systemctl stop distccd.service");
    wait_for(
        &b,
        "the withdrawal in the journal",
        "journalctl -u distccd --no-pager -o cat | grep -F 'zeroconf: withdrawn from avahi-daemon'",
    );
    b.stop();
}
