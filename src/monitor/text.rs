//! distccmon-text's output (distcc src/mon-text.c), pure.

use super::state::{Phase, State};

/// distcc's order: by host (byte order), then slot.
pub fn sort(states: &mut [State]) {
    states.sort_by(|a, b| a.host.as_bytes().cmp(b.host.as_bytes()).then(a.slot.cmp(&b.slot)));
}

/// One poll: a line per job not Done, in C's `%6ld  %-10.10s  %-30.30s
/// %24.24s[%d]` layout, then an empty line.
pub fn render(states: &[State]) -> String {
    let mut out = String::new();
    for s in states.iter().filter(|s| s.phase != Phase::Done) {
        out.push_str(&format!(
            "{:6}  {:<10.10}  {:<30.30} {:>24.24}[{}]\n",
            s.pid,
            s.phase.name(),
            s.file,
            s.host,
            s.slot
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pid: u64, file: &str, host: &str, slot: i32, phase: Phase) -> State {
        State {
            pid,
            file: file.into(),
            host: host.into(),
            slot,
            phase,
        }
    }

    #[test]
    fn matches_distcc_sample() {
        // distcc-3.4.md §7.3, a line from the real distccmon-text.
        let out = render(&[st(29493, "t.c", "127.0.0.1", 0, Phase::Compile)]);
        assert_eq!(
            out,
            " 29493  Compile     t.c                                           127.0.0.1[0]\n\n"
        );
    }

    #[test]
    fn truncation_order_and_done() {
        let mut v = vec![
            st(3, "zzz.c", "b-host", 1, Phase::Send),
            st(
                1,
                "a-very-long-file-name-that-goes-beyond-thirty.c",
                "a-host-with-a-very-long-name.example",
                0,
                Phase::Preprocess,
            ),
            st(2, "done.c", "a", 0, Phase::Done),
            st(4, "y.c", "b-host", 0, Phase::Receive),
        ];
        sort(&mut v);
        let out = render(&v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert_eq!(
            lines[0],
            "     1  Preprocess  a-very-long-file-name-that-goe a-host-with-a-very-long-[0]"
        );
        assert!(lines[1].starts_with("     4  Receive") && lines[1].ends_with("b-host[0]"));
        assert!(lines[2].starts_with("     3  Send") && lines[2].ends_with("b-host[1]"));
        assert_eq!(lines[3], "");
        assert_eq!(render(&[]), "\n");
    }
}
