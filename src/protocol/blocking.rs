//! The codec over `std::io` (the client, and tests).

use std::io::{self, Read};

pub use super::message::ReadError;
use super::message::{Decoder, Need};
use super::token::{HEADER_LEN, ProtocolError};

fn eof_is_truncation(e: io::Error, what: &'static str) -> ReadError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        ReadError::Protocol(ProtocolError::Truncated(what))
    } else {
        ReadError::Io(e)
    }
}

/// Drives `dec` to completion from `r`.
pub fn read_message<R: Read, D: Decoder>(r: &mut R, mut dec: D) -> Result<D::Output, ReadError> {
    loop {
        match dec.need() {
            Need::Header => {
                let mut h = [0u8; HEADER_LEN];
                r.read_exact(&mut h)
                    .map_err(|e| eof_is_truncation(e, "a header"))?;
                dec.header(&h)?;
            }
            Need::HeaderOrEnd => {
                let mut h = [0u8; HEADER_LEN];
                let mut got = 0;
                while got < HEADER_LEN {
                    match r.read(&mut h[got..]) {
                        Ok(0) if got == 0 => return Ok(dec.finish()),
                        Ok(0) => return Err(ProtocolError::Truncated("a header").into()),
                        Ok(n) => got += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ReadError::Io(e)),
                    }
                }
                dec.header(&h)?;
            }
            Need::Body { len, what } => {
                // Grows as bytes arrive instead of trusting `len` up front.
                let mut body = Vec::new();
                r.by_ref()
                    .take(len.into())
                    .read_to_end(&mut body)
                    .map_err(ReadError::Io)?;
                if body.len() != len as usize {
                    return Err(ProtocolError::Truncated(what).into());
                }
                dec.body(body)?;
            }
            Need::Done => return Ok(dec.finish()),
        }
    }
}
