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
use crate::protocol::blocking::{ReadError, read_message};
use crate::protocol::message::{self, ReplyDecoder};
use crate::protocol::{Limits, ProtocolError, Reply, Version, lzo, token};

pub struct Conn {
    reader: std::io::BufReader<Box<dyn Read>>,
    writer: BufWriter<Box<dyn Write>>,
    ssh: Option<Child>,
    version: Version,
}

/// Opens a connection; the error says what failed, for the log line.
pub fn connect(
    host: &HostSpec,
    version: Version,
    connect_timeout: Duration,
    io_timeout: Duration,
    ssh: &[String],
) -> Result<Conn, String> {
    match &host.transport {
        Transport::Tcp { host: name, port } => {
            let addrs: Vec<_> = (name.as_str(), *port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {name}: {e}"))?
                .collect();
            let mut last = format!("{name} has no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, connect_timeout) {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        s.set_read_timeout(Some(io_timeout)).map_err(|e| e.to_string())?;
                        s.set_write_timeout(Some(io_timeout)).map_err(|e| e.to_string())?;
                        let r = s.try_clone().map_err(|e| e.to_string())?;
                        return Ok(Conn {
                            reader: std::io::BufReader::with_capacity(64 << 10, Box::new(r)),
                            writer: BufWriter::with_capacity(256 << 10, Box::new(s)),
                            ssh: None,
                            version,
                        });
                    }
                    Err(e) => last = format!("cannot connect to {addr}: {e}"),
                }
            }
            Err(last)
        }
        Transport::Ssh {
            user,
            host: name,
            command,
        } => {
            let (prog, extra) = ssh.split_first().ok_or("DISTCC_SSH is empty")?;
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
                .map_err(|e| format!("cannot run {prog}: {e}"))?;
            let w = child.stdin.take().expect("piped");
            let r = child.stdout.take().expect("piped");
            Ok(Conn {
                reader: std::io::BufReader::with_capacity(64 << 10, Box::new(r)),
                writer: BufWriter::new(Box::new(w)),
                ssh: Some(child),
                version,
            })
        }
        Transport::Local => Err("localhost is not a server".into()),
    }
}

impl Conn {
    /// DIST, ARGC and ARGV: sent while the preprocessor still runs.
    pub fn send_head(&mut self, argv: &[String]) -> Result<(), String> {
        let words: Vec<Vec<u8>> = argv.iter().map(|a| a.as_bytes().to_vec()).collect();
        self.writer
            .write_all(&message::encode_head(self.version, &words))
            .map_err(|e| format!("sending the command: {e}"))
    }

    /// DOTI: the preprocessed source.
    pub fn send_source(&mut self, doti: &[u8]) -> Result<(), String> {
        let compressed;
        let data: &[u8] = if self.version.compressed() {
            compressed = lzo::compress(doti);
            &compressed
        } else {
            doti
        };
        let mut header = Vec::with_capacity(12);
        token::encode(token::Tag::Doti, data.len() as u32, &mut header);
        let w = &mut self.writer;
        let sent = w
            .write_all(&header)
            .and_then(|()| w.write_all(data))
            .and_then(|()| w.flush());
        sent.map_err(|e| format!("sending the source: {e}"))
    }

    /// Waits for the server's answer.
    pub fn reply(self) -> Result<Reply, String> {
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
            ReadError::Protocol(ProtocolError::Truncated("a header")) => {
                "the server closed the connection without an answer".to_owned()
            }
            other => format!("reading the answer: {other}"),
        })
    }
}
