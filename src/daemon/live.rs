/*!
What the daemon is doing and has done: running jobs, per-client counts,
reasons for refusals and failures, and the recent history behind distcc's
`dcc_*` statistics. Shared by every job; read by the stats page and STATUS=.
*/

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningJob {
    pub id: u64,
    pub peer: String,
    pub compiler: String,
    pub input: String,
    pub started: Instant,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    pub ok: u64,
    pub error: u64,
    pub refused: u64,
    pub failed: u64,
}

/// How one job ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Ok,
    Error,
    Refused,
    BadRequest,
    Timeout,
    Disconnected,
}

/// Jobs since start-up, by how they ended: the daemon's only counters;
/// `STATUS=`, the stats page and distccmon read them from here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub accepted: u64,
    pub ok: u64,
    pub error: u64,
    pub refused: u64,
    pub bad_request: u64,
    pub timeout: u64,
    pub disconnected: u64,
    /// Of all jobs, those that came as protocol 3 (pump mode), however
    /// they ended.
    pub pump: u64,
}

impl Totals {
    fn count(&mut self, how: Ended) {
        let n = match how {
            Ended::Ok => &mut self.ok,
            Ended::Error => &mut self.error,
            Ended::Refused => &mut self.refused,
            Ended::BadRequest => &mut self.bad_request,
            Ended::Timeout => &mut self.timeout,
            Ended::Disconnected => &mut self.disconnected,
        };
        *n += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    totals: Totals,
    running: HashMap<u64, RunningJob>,
    clients: BTreeMap<IpAddr, ClientCounts>,
    reasons: BTreeMap<String, u64>,
    /// Compiles finished per second (bucket start, count), for the
    /// 1/5/15-minute counts: at most 900 entries however busy the server.
    finished: VecDeque<(Instant, u64)>,
    /// (running jobs, when) once a second, for the averages and the graph.
    samples: VecDeque<(u64, Instant)>,
    longest: Option<(String, String, u64)>,
    max_running: u64,
}

#[derive(Debug, Default)]
pub struct Live(Mutex<Inner>);

const WINDOW: Duration = Duration::from_secs(15 * 60);

/// A copy of everything, at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub totals: Totals,
    pub running: Vec<RunningJob>,
    pub clients: Vec<(IpAddr, ClientCounts)>,
    pub reasons: Vec<(String, u64)>,
    /// Compiles finished in the last 1, 5 and 15 minutes.
    pub compiles: [u64; 3],
    /// Average running jobs over the last 1, 5 and 15 minutes.
    pub avg_running: [f64; 3],
    /// Running jobs, one sample a second, oldest first (last 5 minutes).
    pub history: Vec<u64>,
    pub longest: Option<(String, String, u64)>,
    pub max_running: u64,
    pub taken: SystemTime,
    pub now: Instant,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn accepted(&self) {
        self.lock().totals.accepted += 1;
    }

    /// A job's request was protocol 3; counted besides how it ends.
    pub fn pump_job(&self) {
        self.lock().totals.pump += 1;
    }

    pub fn totals(&self) -> Totals {
        self.lock().totals
    }

    /// Compiles running now.
    pub fn running(&self) -> u64 {
        self.lock().running.len() as u64
    }

    /// A compile starts; it is over when the guard is dropped.
    pub fn start(&self, job: RunningJob) -> Running<'_> {
        let id = job.id;
        let mut g = self.lock();
        g.running.insert(id, job);
        g.max_running = g.max_running.max(g.running.len() as u64);
        Running(self, id)
    }

    pub fn ended(
        &self,
        peer: Option<IpAddr>,
        how: Ended,
        reason: Option<&str>,
        compiled: Option<(&str, &str, u64)>,
    ) {
        let mut g = self.lock();
        g.totals.count(how);
        if let Some(ip) = peer {
            let c = g.clients.entry(ip.to_canonical()).or_default();
            match how {
                Ended::Ok => c.ok += 1,
                Ended::Error => c.error += 1,
                Ended::Refused | Ended::BadRequest => c.refused += 1,
                Ended::Timeout | Ended::Disconnected => c.failed += 1,
            }
        }
        if let Some(r) = reason {
            *g.reasons.entry(reason_key(r)).or_default() += 1;
        }
        if let Some((compiler, input, ms)) = compiled {
            let now = Instant::now();
            match g.finished.back_mut() {
                Some((start, n)) if now.duration_since(*start) < Duration::from_secs(1) => *n += 1,
                _ => g.finished.push_back((now, 1)),
            }
            while g
                .finished
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            {
                g.finished.pop_front();
            }
            if g.longest.as_ref().is_none_or(|(_, _, l)| ms > *l) {
                g.longest = Some((input.to_owned(), compiler.to_owned(), ms));
            }
        }
    }

    /// Called once a second.
    pub fn sample(&self) {
        let mut g = self.lock();
        let now = Instant::now();
        let n = g.running.len() as u64;
        g.samples.push_back((n, now));
        while g
            .samples
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) > WINDOW)
        {
            g.samples.pop_front();
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        let now = Instant::now();
        let within = |t: &Instant, mins: u64| now.duration_since(*t) <= Duration::from_secs(mins * 60);
        let compiles = [1, 5, 15].map(|m| {
            g.finished
                .iter()
                .filter(|(t, _)| within(t, m))
                .map(|(_, n)| n)
                .sum()
        });
        let avg_running = [1, 5, 15].map(|m| {
            let v: Vec<u64> = g
                .samples
                .iter()
                .filter(|(_, t)| within(t, m))
                .map(|(n, _)| *n)
                .collect();
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<u64>() as f64 / v.len() as f64
            }
        });
        let mut running: Vec<RunningJob> = g.running.values().cloned().collect();
        running.sort_by_key(|j| j.id);
        Snapshot {
            totals: g.totals,
            running,
            clients: g.clients.iter().map(|(k, v)| (*k, v.clone())).collect(),
            reasons: g.reasons.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            compiles,
            avg_running,
            history: g
                .samples
                .iter()
                .filter(|(_, t)| within(t, 5))
                .map(|(n, _)| *n)
                .collect(),
            longest: g.longest.clone(),
            max_running: g.max_running,
            taken: SystemTime::now(),
            now,
        }
    }
}

/// A running compile, listed until dropped.
pub struct Running<'a>(&'a Live, u64);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.lock().running.remove(&self.1);
    }
}

/// Reasons are grouped by their text with the client's address taken out,
/// so "access denied" from many clients counts as one reason. Pure.
pub fn reason_key(r: &str) -> String {
    r.split_whitespace()
        .map(|w| {
            if w.parse::<IpAddr>().is_ok() || w.trim_end_matches(':').parse::<std::net::SocketAddr>().is_ok()
            {
                "ADDR"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reasons() {
        let live = Live::default();
        let ip: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        live.accepted();
        live.pump_job();
        let a = live.start(RunningJob {
            id: 1,
            peer: "10.0.0.2:5".into(),
            compiler: "gcc".into(),
            input: "a.c".into(),
            started: Instant::now(),
        });
        let _b = live.start(RunningJob {
            id: 2,
            peer: "10.0.0.2:6".into(),
            compiler: "gcc".into(),
            input: "b.c".into(),
            started: Instant::now(),
        });
        drop(a);
        live.ended(Some(ip), Ended::Ok, None, Some(("gcc", "a.c", 40)));
        live.ended(
            Some(ip),
            Ended::Refused,
            Some("access denied: client 10.0.0.2 is not in this server's --allow list"),
            None,
        );
        live.ended(
            Some("10.0.0.3".parse().unwrap()),
            Ended::Refused,
            Some("access denied: client 10.0.0.3 is not in this server's --allow list"),
            None,
        );
        live.sample();
        let s = live.snapshot();
        assert_eq!(
            s.totals,
            Totals {
                accepted: 1,
                ok: 1,
                refused: 2,
                pump: 1,
                ..Totals::default()
            }
        );
        assert_eq!(live.running(), 1);
        assert_eq!(
            s.running.iter().map(|j| j.input.as_str()).collect::<Vec<_>>(),
            ["b.c"]
        );
        assert_eq!(
            s.clients[0],
            (
                "10.0.0.2".parse().unwrap(),
                ClientCounts {
                    ok: 1,
                    error: 0,
                    refused: 1,
                    failed: 0
                }
            )
        );
        assert_eq!(
            s.reasons,
            [(
                "access denied: client ADDR is not in this server's --allow list".to_owned(),
                2
            )]
        );
        assert_eq!(s.compiles, [1, 1, 1]);
        assert_eq!(s.max_running, 2);
        assert_eq!(s.longest, Some(("a.c".into(), "gcc".into(), 40)));
        assert_eq!(s.history, [1]);
        assert_eq!(s.avg_running[0], 1.0);
    }
}
