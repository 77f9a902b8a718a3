/*!
`--stats`: distccd's HTTP statistics on port 3633. Any request gets distcc
3.4's text (so existing scrapers keep working), extended after its
`</distccstats>` with the running jobs, per-client counts and reasons;
`/stats.json` gives the same as JSON, and a browser (asking for HTML) gets a
small self-contained page that shows running jobs and throughput live.
The renderers are pure; `serve_stats` is the I/O.
*/

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::access;
use super::job::Server;
use super::live::Snapshot;

/// Everything a page shows, gathered at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub status: String,
    pub accepted: u64,
    pub ok: u64,
    pub error: u64,
    pub refused: u64,
    pub bad_request: u64,
    pub timeout: u64,
    pub disconnected: u64,
    /// Jobs that came as protocol 3 (pump mode).
    pub pump: u64,
    pub jobs: usize,
    pub live: Snapshot,
    pub load: [f64; 3],
    pub free_mb: u64,
    pub procs_d: u64,
    /// The largest non-driver process: resident KiB and name.
    pub max_rss: Option<(u64, String)>,
}

impl Report {
    pub fn gather(server: &Server) -> Report {
        let live = server.live.snapshot();
        let t = live.totals;
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|t| {
                let v: Vec<f64> = t
                    .split_whitespace()
                    .take(3)
                    .filter_map(|x| x.parse().ok())
                    .collect();
                [
                    v.first().copied().unwrap_or(0.0),
                    v.get(1).copied().unwrap_or(0.0),
                    v.get(2).copied().unwrap_or(0.0),
                ]
            })
            .unwrap_or([0.0; 3]);
        let (procs_d, max_rss) = scan_processes();
        let free_mb = nix::sys::statvfs::statvfs(&server.config.tmpdir)
            .map(|v| v.blocks_available() * v.fragment_size() / (1 << 20))
            .unwrap_or(0);
        Report {
            status: server.status(),
            accepted: t.accepted,
            ok: t.ok,
            error: t.error,
            refused: t.refused,
            bad_request: t.bad_request,
            timeout: t.timeout,
            disconnected: t.disconnected,
            pump: t.pump,
            jobs: server.jobs,
            live,
            load,
            free_mb,
            procs_d,
            max_rss,
        }
    }

    /// The same text as `STATUS=`.
    pub fn status(&self) -> String {
        self.status.clone()
    }
}

/// What distcc 3.4 reads from every process in /proc: how many are in
/// uninterruptible sleep (waiting on the disk), and the largest resident
/// set, in KiB, of a program whose name does not end in `cc` or `++` (so
/// `cc1`, `cc1plus`, `as` and `ld` count; the drivers do not).
fn scan_processes() -> (u64, Option<(u64, String)>) {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return (0, None);
    };
    let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4, |b| (b / 1024).max(1) as u64);
    let mut in_d = 0;
    let mut largest: Option<(u64, String)> = None;
    for e in rd.flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Some((name, state, rss)) = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        in_d += u64::from(state == 'D');
        let kib = rss * page_kib;
        if !name.ends_with("cc") && !name.ends_with("++") && largest.as_ref().is_none_or(|(k, _)| kib > *k) {
            largest = Some((kib, name));
        }
    }
    (in_d, largest)
}

/// A `/proc/PID/stat` line's name, state and resident pages. Pure. The name
/// is in parentheses and may itself hold spaces and parentheses.
fn parse_stat(line: &str) -> Option<(String, char, u64)> {
    let (head, rest) = line.rsplit_once(')')?;
    // A process names itself; one line per field on the page, whatever it chose.
    let name = head
        .split_once('(')?
        .1
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let rss = fields.get(21)?.parse().ok()?;
    Some((name, state, rss))
}

/// distcc 3.4's page, byte for byte in its part, then ours.
pub fn render_text(r: &Report) -> String {
    let l = &r.live;
    let (longest, longest_cc, longest_ms) = match &l.longest {
        Some((f, c, ms)) => (f.as_str(), c.as_str(), *ms as i64),
        None => ("none", "none", -1),
    };
    let mut s = String::from(
        "HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\nargv /distccd\n<distccstats>\n",
    );
    let _ = write!(
        s,
        "dcc_tcp_accept {}\ndcc_rej_bad_req {}\ndcc_rej_overload 0\ndcc_compile_ok {}\ndcc_compile_error {}\n\
         dcc_compile_timeout {}\ndcc_cli_disconnect {}\ndcc_other {}\ndcc_longest_job {longest}\n\
         dcc_longest_job_compiler {longest_cc}\ndcc_longest_job_time_msecs {longest_ms}\ndcc_max_kids {}\n\
         dcc_avg_kids1 {}\ndcc_avg_kids2 {}\ndcc_avg_kids3 {}\ndcc_current_load {}\n\
         dcc_load1 {:.2}\ndcc_load2 {:.2}\ndcc_load3 {:.2}\n\
         dcc_num_compiles1 {}\ndcc_num_compiles2 {}\ndcc_num_compiles3 {}\ndcc_num_procstate_D {}\n\
         dcc_max_RSS {}\ndcc_max_RSS_name {}\ndcc_io_rate -1\ndcc_free_space {} MB\n</distccstats>\n",
        r.accepted,
        r.bad_request,
        r.ok,
        r.error,
        r.timeout,
        r.disconnected,
        r.refused,
        l.max_running,
        l.avg_running[0].round() as u64,
        l.avg_running[1].round() as u64,
        l.avg_running[2].round() as u64,
        l.running.len(),
        r.load[0],
        r.load[1],
        r.load[2],
        l.compiles[0],
        l.compiles[1],
        l.compiles[2],
        r.procs_d,
        r.max_rss.as_ref().map_or(0, |m| m.0),
        r.max_rss.as_ref().map_or("none", |m| m.1.as_str()),
        r.free_mb,
    );
    let _ = writeln!(
        s,
        "<distcc-rs>\nstatus {}\njob_slots {}\npump_jobs {}",
        r.status(),
        r.jobs,
        r.pump
    );
    for j in &l.running {
        let ms = l.now.duration_since(j.started).as_millis();
        let _ = writeln!(s, "job {} {} {} {ms}ms", j.peer, j.compiler, j.input);
    }
    for (ip, c) in &l.clients {
        let _ = writeln!(
            s,
            "client {ip} ok {} error {} refused {} failed {}",
            c.ok, c.error, c.refused, c.failed
        );
    }
    for (why, n) in &l.reasons {
        let _ = writeln!(s, "reason {n} {why}");
    }
    s.push_str("</distcc-rs>\n");
    s
}

fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn render_json(r: &Report) -> String {
    let l = &r.live;
    let jobs: Vec<String> = l
        .running
        .iter()
        .map(|j| {
            format!(
                "{{\"peer\":{},\"compiler\":{},\"input\":{},\"elapsed_ms\":{}}}",
                json_str(&j.peer),
                json_str(&j.compiler),
                json_str(&j.input),
                l.now.duration_since(j.started).as_millis()
            )
        })
        .collect();
    let clients: Vec<String> = l
        .clients
        .iter()
        .map(|(ip, c)| {
            format!(
                "{{\"client\":{},\"ok\":{},\"error\":{},\"refused\":{},\"failed\":{}}}",
                json_str(&ip.to_string()),
                c.ok,
                c.error,
                c.refused,
                c.failed
            )
        })
        .collect();
    let reasons: Vec<String> = l
        .reasons
        .iter()
        .map(|(w, n)| format!("{{\"reason\":{},\"count\":{n}}}", json_str(w)))
        .collect();
    let history: Vec<String> = l.history.iter().map(u64::to_string).collect();
    format!(
        "{{\"status\":{},\"job_slots\":{},\"served\":{},\"compile_ok\":{},\"compile_error\":{},\"refused\":{},\
         \"bad_request\":{},\"timeout\":{},\"disconnected\":{},\"pump_jobs\":{},\"compiles_1m\":{},\"compiles_5m\":{},\
         \"compiles_15m\":{},\"running\":[{}],\"clients\":[{}],\"reasons\":[{}],\"history\":[{}]}}",
        json_str(&r.status()),
        r.jobs,
        r.ok + r.error,
        r.ok,
        r.error,
        r.refused,
        r.bad_request,
        r.timeout,
        r.disconnected,
        r.pump,
        l.compiles[0],
        l.compiles[1],
        l.compiles[2],
        jobs.join(","),
        clients.join(","),
        reasons.join(","),
        history.join(",")
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: rendered here so it shows the state without any script, then
/// refreshed once a second from `/stats.json` by a few lines of JavaScript.
pub fn render_html(r: &Report) -> String {
    let l = &r.live;
    let mut rows = String::new();
    for j in &l.running {
        let secs = l.now.duration_since(j.started).as_secs_f64();
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{secs:.1} s</td></tr>",
            html_escape(&j.peer),
            html_escape(&j.compiler),
            html_escape(&j.input)
        );
    }
    if rows.is_empty() {
        rows.push_str("<tr><td colspan=4 class=none>no compile running</td></tr>");
    }
    let mut clients = String::new();
    for (ip, c) in &l.clients {
        let _ = write!(
            clients,
            "<tr><td>{ip}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.ok, c.error, c.refused, c.failed
        );
    }
    let mut reasons = String::new();
    for (w, n) in &l.reasons {
        let _ = write!(reasons, "<li>{n} × {}</li>", html_escape(w));
    }
    format!(
        r##"<!doctype html>
<html lang=en><head><meta charset=utf-8><title>distccd</title>
<style>
body{{font:14px system-ui,sans-serif;margin:1.5em;color:#222}} h1{{font-size:1.3em}} h2{{font-size:1.05em;margin-top:1.4em}}
table{{border-collapse:collapse}} td,th{{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:left}}
.none{{color:#888}} #status{{font-weight:bold}} svg{{border:1px solid #ddd;background:#fafafa}}
</style></head><body>
<h1>distccd <span id=status>{status}</span></h1>
<p>{jobs} job slots · compiles finished: <span id=thru>{c1} in the last minute, {c5} in 5, {c15} in 15</span></p>
<h2>Running now</h2>
<table><thead><tr><th>client</th><th>compiler</th><th>file</th><th>for</th></tr></thead><tbody id=jobs>{rows}</tbody></table>
<h2>Running jobs, last 5 minutes</h2>
<svg id=graph width=600 height=80 viewBox="0 0 600 80"></svg>
<h2>Clients</h2>
<table><thead><tr><th>client</th><th>ok</th><th>error</th><th>refused</th><th>failed</th></tr></thead><tbody id=clients>{clients}</tbody></table>
<h2>Refused and failed, by reason</h2><ul id=reasons>{reasons}</ul>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({{'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}})[c]);
async function tick() {{
  try {{
    const r = await (await fetch('/stats.json', {{cache: 'no-store'}})).json();
    document.getElementById('status').textContent = r.status;
    document.getElementById('thru').textContent = r.compiles_1m + ' in the last minute, ' + r.compiles_5m + ' in 5, ' + r.compiles_15m + ' in 15';
    document.getElementById('jobs').innerHTML = r.running.length ? r.running.map(j =>
      '<tr><td>' + esc(j.peer) + '</td><td>' + esc(j.compiler) + '</td><td>' + esc(j.input) + '</td><td>' + (j.elapsed_ms / 1000).toFixed(1) + ' s</td></tr>').join('')
      : '<tr><td colspan=4 class=none>no compile running</td></tr>';
    document.getElementById('clients').innerHTML = r.clients.map(c =>
      '<tr><td>' + esc(c.client) + '</td><td>' + c.ok + '</td><td>' + c.error + '</td><td>' + c.refused + '</td><td>' + c.failed + '</td></tr>').join('');
    document.getElementById('reasons').innerHTML = r.reasons.map(x => '<li>' + x.count + ' × ' + esc(x.reason) + '</li>').join('');
    const h = r.history, max = Math.max(1, r.job_slots, ...h);
    const pts = h.map((v, i) => (600 - (h.length - 1 - i) * 2) + ',' + (78 - v / max * 74)).join(' ');
    document.getElementById('graph').innerHTML = '<polyline fill=none stroke="#2a6" stroke-width=2 points="' + pts + '"/>';
  }} catch (e) {{ document.getElementById('status').textContent = 'not reachable'; }}
}}
tick(); setInterval(tick, 1000);
</script>
</body></html>
"##,
        status = html_escape(&r.status()),
        jobs = r.jobs,
        c1 = l.compiles[0],
        c5 = l.compiles[1],
        c15 = l.compiles[2],
    )
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Page {
    Text,
    Json,
    Html,
}

/// distcc answers every request with its text; browsers asking for HTML at
/// `/` get the page, `/stats.json` the JSON. Pure.
pub fn route(request: &str) -> Page {
    let mut lines = request.lines();
    let path = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let wants_html = lines.any(|h| {
        let h = h.to_ascii_lowercase();
        h.starts_with("accept:") && h.contains("text/html")
    });
    match path {
        "/stats.json" => Page::Json,
        "/index.html" => Page::Html,
        "/" if wants_html => Page::Html,
        _ => Page::Text,
    }
}

fn http(content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Serves the stats port until the task is dropped.
pub async fn serve_stats(listener: TcpListener, server: Arc<Server>) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let server = server.clone();
        tokio::spawn(async move {
            if !access::allowed(&server.config.allow, peer.ip()) {
                tracing::warn!(
                    "stats: {} refused: not in the --allow list",
                    peer.ip().to_canonical()
                );
                let _ = stream.write_all(b"HTTP/1.0 403 Forbidden\r\nConnection: close\r\n\r\nnot in this server's --allow list\n").await;
                return;
            }
            // distcc reads at most 1024 bytes of the request and ignores the rest.
            let mut buf = vec![0u8; 1024];
            let mut n = 0;
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || buf[..n].windows(2).any(|w| w == b"\n\n")
                {
                    break;
                }
            }
            let report = Report::gather(&server);
            let reply = match route(&String::from_utf8_lossy(&buf[..n])) {
                Page::Text => render_text(&report),
                Page::Json => http("application/json", &render_json(&report)),
                Page::Html => http("text/html; charset=utf-8", &render_html(&report)),
            };
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::live::{ClientCounts, RunningJob};
    use std::time::{Instant, SystemTime};

    fn report() -> Report {
        let now = Instant::now();
        Report {
            status: crate::daemon::systemd::status_line(1, 10, 0, 2),
            accepted: 12,
            ok: 9,
            error: 1,
            refused: 1,
            bad_request: 1,
            timeout: 0,
            disconnected: 0,
            pump: 0,
            jobs: 4,
            live: Snapshot {
                totals: Default::default(),
                running: vec![RunningJob {
                    id: 7,
                    peer: "10.0.0.2:4000".into(),
                    compiler: "gcc".into(),
                    input: "big <b>.c".into(),
                    started: now - Duration::from_millis(1500),
                }],
                clients: vec![(
                    "10.0.0.2".parse().unwrap(),
                    ClientCounts {
                        ok: 9,
                        error: 1,
                        refused: 2,
                        failed: 0,
                    },
                )],
                reasons: vec![("access denied".into(), 1)],
                compiles: [3, 8, 10],
                avg_running: [1.4, 0.6, 0.2],
                history: vec![0, 1, 2],
                longest: Some(("x.c".into(), "g++".into(), 2500)),
                max_running: 3,
                taken: SystemTime::now(),
                now,
            },
            load: [0.5, 0.25, 1.0],
            free_mb: 2048,
            procs_d: 0,
            max_rss: None,
        }
    }

    #[test]
    fn proc_stat_lines() {
        let line = |name: &str, state: char, rss: u64| {
            format!(
                "4242 ({name}) {state} 1 2 3 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 1234 9000000 {rss} 18446744073709551615"
            )
        };
        for (text, want) in [
            (line("cc1", 'R', 2048), Some(("cc1".to_string(), 'R', 2048))),
            (line("as", 'D', 300), Some(("as".into(), 'D', 300))),
            (line("a) b (c", 'S', 5), Some(("a)_b_(c".into(), 'S', 5))),
            (line("evil\nline", 'S', 5), Some(("evil_line".into(), 'S', 5))),
            ("4242 (short) R 1 2".into(), None),
            ("no parentheses".into(), None),
        ] {
            assert_eq!(parse_stat(&text), want, "{text}");
        }
        let mut r = report();
        r.max_rss = Some((51200, "cc1plus".into()));
        r.procs_d = 2;
        let t = render_text(&r);
        assert!(
            t.contains("dcc_num_procstate_D 2\ndcc_max_RSS 51200\ndcc_max_RSS_name cc1plus\n"),
            "{t}"
        );
    }

    #[test]
    fn text_keeps_distcc_layout() {
        let t = render_text(&report());
        let want_head = "HTTP/1.0 200 OK\nContent-Type: text/plain\nConnection: close\n\nargv /distccd\n<distccstats>\n\
dcc_tcp_accept 12\ndcc_rej_bad_req 1\ndcc_rej_overload 0\ndcc_compile_ok 9\ndcc_compile_error 1\n\
dcc_compile_timeout 0\ndcc_cli_disconnect 0\ndcc_other 1\ndcc_longest_job x.c\ndcc_longest_job_compiler g++\n\
dcc_longest_job_time_msecs 2500\ndcc_max_kids 3\ndcc_avg_kids1 1\ndcc_avg_kids2 1\ndcc_avg_kids3 0\n\
dcc_current_load 1\ndcc_load1 0.50\ndcc_load2 0.25\ndcc_load3 1.00\ndcc_num_compiles1 3\ndcc_num_compiles2 8\n\
dcc_num_compiles3 10\ndcc_num_procstate_D 0\ndcc_max_RSS 0\ndcc_max_RSS_name none\ndcc_io_rate -1\n\
dcc_free_space 2048 MB\n</distccstats>\n";
        assert!(t.starts_with(want_head), "{t}");
        assert!(
            t.contains("status 1 running, 10 served, 0 failed, 2 refused\n"),
            "{t}"
        );
        assert!(
            t.contains("</distccstats>\n<distcc-rs>\nstatus 1 running, 10 served, 0 failed, 2 refused\njob_slots 4\npump_jobs 0\njob "),
            "{t}"
        );
        assert!(t.contains("job 10.0.0.2:4000 gcc big <b>.c 15"), "{t}");
        assert!(t.contains("client 10.0.0.2 ok 9 error 1 refused 2 failed 0\n"));
        assert!(t.ends_with("reason 1 access denied\n</distcc-rs>\n"));
    }

    #[test]
    fn pump_jobs_counted_after_distccs_part() {
        let plain = render_text(&report());
        let (head34, _) = plain.split_once("<distcc-rs>").unwrap();
        for (pump, line, json) in [
            (0, "\njob_slots 4\npump_jobs 0\n", "\"pump_jobs\":0,"),
            (1, "\njob_slots 4\npump_jobs 1\n", "\"pump_jobs\":1,"),
            (12345, "\njob_slots 4\npump_jobs 12345\n", "\"pump_jobs\":12345,"),
        ] {
            let mut r = report();
            r.pump = pump;
            let t = render_text(&r);
            let (head, ours) = t.split_once("<distcc-rs>").unwrap();
            assert_eq!(
                head, head34,
                "distcc 3.4's part does not change with {pump} pump jobs"
            );
            assert!(ours.contains(line), "{pump}: {ours}");
            assert_eq!(t.matches("pump_jobs").count(), 1, "{t}");
            let j = render_json(&r);
            assert!(j.contains(json), "{pump}: {j}");
        }
    }

    #[test]
    fn json_and_html() {
        let j = render_json(&report());
        assert!(
            j.starts_with("{\"status\":\"1 running, 10 served, 0 failed, 2 refused\",\"job_slots\":4,"),
            "{j}"
        );
        assert!(j.contains("\"input\":\"big <b>.c\""));
        assert!(j.contains("\"history\":[0,1,2]"));
        let h = render_html(&report());
        assert!(
            h.contains("<td>big &lt;b&gt;.c</td>"),
            "escaped and rendered without script"
        );
        assert!(h.contains("1 running, 10 served"));
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn routes() {
        let cases = [
            (
                "GET / HTTP/1.1\r\nAccept: text/html,application/xhtml+xml\r\n\r\n",
                Page::Html,
            ),
            ("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", Page::Text),
            ("GET /stats.json HTTP/1.1\r\n\r\n", Page::Json),
            ("GET /index.html HTTP/1.0\r\n\r\n", Page::Html),
            ("", Page::Text),
            ("garbage", Page::Text),
        ];
        for (req, want) in cases {
            assert_eq!(route(req), want, "{req:?}");
        }
    }
}
