/*!
One conversation with a server, over TCP or `ssh … distccd --inetd`. Blocking
std I/O with timeouts: the client is a short-lived process and has nothing
else to do meanwhile.
*/

use std::io::{BufWriter, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::hosts::{HostSpec, Transport};
use super::outcome::{FaultKind, HostFault};
use crate::protocol::blocking::{ReadError, read_message};
use crate::protocol::message::{self, ReplyDecoder};
use crate::protocol::{Limits, ProtocolError, Reply, Version, token};

pub struct Conn {
    reader: std::io::BufReader<Box<dyn Read>>,
    writer: BufWriter<Box<dyn Write>>,
    ssh: Option<Child>,
    version: Version,
}

/// Opens a connection; the fault says what failed, for the log line.
pub fn connect(
    host: &HostSpec,
    version: Version,
    connect_timeout: Duration,
    io_timeout: Duration,
    ssh: &[String],
) -> Result<Conn, HostFault> {
    match &host.transport {
        Transport::Tcp { host: name, port } => {
            let addrs: Vec<_> = (name.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| HostFault::new(FaultKind::Connect, format!("resolving {name}: {e}")))?
                .collect();
            let mut last = HostFault::new(FaultKind::Connect, format!("{name} has no address"));
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, connect_timeout) {
                    Ok(s) => {
                        let setup = |e: std::io::Error| HostFault::io(&e, "setting up the connection");
                        let _ = s.set_nodelay(true);
                        s.set_read_timeout(Some(io_timeout)).map_err(setup)?;
                        s.set_write_timeout(Some(io_timeout)).map_err(setup)?;
                        let r = s.try_clone().map_err(setup)?;
                        return Ok(Conn {
                            reader: std::io::BufReader::with_capacity(64 << 10, Box::new(r)),
                            writer: BufWriter::with_capacity(256 << 10, Box::new(s)),
                            ssh: None,
                            version,
                        });
                    }
                    Err(e) => {
                        let kind = match e.kind() {
                            std::io::ErrorKind::TimedOut => FaultKind::Timeout,
                            _ => FaultKind::Connect,
                        };
                        last = HostFault::new(kind, format!("{addr}: {e}"));
                    }
                }
            }
            Err(last)
        }
        Transport::Ssh {
            user,
            host: name,
            command,
        } => {
            let (prog, extra) = ssh
                .split_first()
                .ok_or_else(|| HostFault::new(FaultKind::Connect, "DISTCC_SSH is empty"))?;
            let mut cmd = Command::new(prog);
            cmd.args(extra);
            if let Some(u) = user {
                cmd.args(["-l", u]);
            }
            cmd.arg(name)
                .arg(command.as_deref().unwrap_or("distccd"))
                .args(["--inetd", "--enable-tcp-insecure"]);
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|e| HostFault::new(FaultKind::Connect, format!("running {prog}: {e}")))?;
            let (Some(w), Some(r)) = (child.stdin.take(), child.stdout.take()) else {
                let _ = child.kill();
                return Err(HostFault::new(FaultKind::Connect, format!("{prog} has no pipes")));
            };
            Ok(Conn {
                reader: std::io::BufReader::with_capacity(64 << 10, Box::new(r)),
                writer: BufWriter::new(Box::new(w)),
                ssh: Some(child),
                version,
            })
        }
        Transport::Local => Err(HostFault::new(FaultKind::Connect, "localhost is not a server")),
        Transport::Reapi { .. } => Err(HostFault::new(
            FaultKind::Connect,
            "a REAPI cluster is not a distccd",
        )),
    }
}

impl Conn {
    /// DIST, ARGC and ARGV: sent while the preprocessor still runs.
    pub fn send_head(&mut self, argv: &[String]) -> Result<(), HostFault> {
        let words: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.writer
            .write_all(&message::encode_head(self.version, &words))
            .map_err(|e| HostFault::io(&e, "sending the command"))
    }

    /// A whole request, encoded already (protocol 3).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), HostFault> {
        let w = &mut self.writer;
        w.write_all(bytes)
            .and_then(|()| w.flush())
            .map_err(|e| HostFault::io(&e, "sending the request"))
    }

    /// DOTI: the preprocessed source.
    pub fn send_source(&mut self, doti: &[u8]) -> Result<(), HostFault> {
        let (header, body) = message::bulk(self.version, token::Tag::Doti, doti);
        let w = &mut self.writer;
        let sent = w
            .write_all(&header)
            .and_then(|()| w.write_all(&body))
            .and_then(|()| w.flush());
        sent.map_err(|e| HostFault::io(&e, "sending the source"))
    }

    /// Waits for the server's answer.
    pub fn reply(self) -> Result<Reply, HostFault> {
        let Conn {
            mut reader,
            writer,
            ssh,
            version,
        } = self;
        let limits = Limits {
            max_body: u32::MAX,
            max_plain: usize::MAX >> 1,
            ..Limits::default()
        };
        let reply = read_message(&mut reader, ReplyDecoder::new(version, limits));
        if let Some(mut child) = ssh {
            // Closing ssh's stdin ends the remote distccd --inetd and ssh.
            drop(writer);
            drop(reader);
            let _ = child.wait();
        }
        reply.map_err(|e| match e {
            ReadError::Protocol(ProtocolError::Truncated("a header")) => HostFault::new(
                FaultKind::Truncated,
                "the server closed the connection without an answer",
            ),
            ReadError::Protocol(p @ ProtocolError::Truncated(_)) => {
                HostFault::new(FaultKind::Truncated, format!("reading the answer: {p}"))
            }
            ReadError::Protocol(p) => HostFault::new(FaultKind::Protocol, format!("reading the answer: {p}")),
            ReadError::Io(e) => HostFault::io(&e, "reading the answer"),
        })
    }
}
