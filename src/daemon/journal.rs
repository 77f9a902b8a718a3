/*!
A `tracing` layer that writes to journald in its native protocol, with the
fields of each event as journal fields (`PEER`, `COMPILER`, `INPUT`,
`RESULT`, `TIME_MS`, `REASON`), so `journalctl -u distccd RESULT=REFUSED`
works. Like the notifier, the socket is connected once, before any chroot.
*/

use std::fmt::Write as _;
use std::os::unix::net::UnixDatagram;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

pub const SOCKET: &str = "/run/systemd/journal/socket";

pub struct Journal {
    socket: UnixDatagram,
    identifier: String,
}

impl Journal {
    pub fn connect(identifier: &str) -> std::io::Result<Journal> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(SOCKET)?;
        Ok(Journal {
            socket,
            identifier: identifier.to_owned(),
        })
    }
}

/// Appends one field; values with a newline use the binary form. Pure.
pub fn put_field(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(name.as_bytes());
    if value.contains(&b'\n') {
        buf.push(b'\n');
        buf.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        buf.push(b'=');
    }
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// Journal field names: upper case, letters, digits and `_`, not starting with `_`.
pub fn field_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    while s.starts_with('_') {
        s.remove(0);
    }
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        format!("F{s}")
    } else {
        s
    }
}

fn priority(level: &Level) -> &'static [u8] {
    match *level {
        Level::ERROR => b"3",
        Level::WARN => b"4",
        Level::INFO => b"5",
        Level::DEBUG => b"6",
        Level::TRACE => b"7",
    }
}

struct Fields {
    message: String,
    rest: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.rest.push((field_name(field.name()), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.rest.push((field_name(field.name()), value.to_owned()));
        }
    }
}

impl<S: Subscriber> Layer<S> for Journal {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields {
            message: String::new(),
            rest: Vec::new(),
        };
        event.record(&mut f);
        let mut buf = Vec::with_capacity(256);
        put_field(&mut buf, "PRIORITY", priority(event.metadata().level()));
        put_field(&mut buf, "SYSLOG_IDENTIFIER", self.identifier.as_bytes());
        put_field(&mut buf, "MESSAGE", f.message.as_bytes());
        for (k, v) in &f.rest {
            put_field(&mut buf, k, v.as_bytes());
        }
        // A message too big for one datagram is cut rather than lost.
        if self.socket.send(&buf).is_err() {
            buf.truncate(60_000);
            let _ = self.socket.send(&buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_protocol_fields() {
        let mut b = Vec::new();
        put_field(&mut b, "MESSAGE", b"one line");
        put_field(&mut b, "REASON", b"two\nlines");
        let mut want = b"MESSAGE=one line\nREASON\n".to_vec();
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(b"two\nlines\n");
        assert_eq!(b, want);
    }

    #[test]
    fn field_names() {
        assert_eq!(field_name("peer"), "PEER");
        assert_eq!(field_name("time_ms"), "TIME_MS");
        assert_eq!(field_name("_private"), "PRIVATE");
        assert_eq!(field_name("9x"), "F9X");
        assert_eq!(field_name("a.b"), "A_B");
    }
}
