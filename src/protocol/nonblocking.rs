//! The codec over tokio (the daemon). Same rules as `blocking`, async reads.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::message::{Decoder, Need, ReadError};
use super::token::{HEADER_LEN, ProtocolError};

/// Drives `dec` to completion from `r`. The caller bounds the time.
pub async fn read_message<R: AsyncRead + Unpin, D: Decoder>(r: &mut R, dec: &mut D) -> Result<(), ReadError> {
    loop {
        match dec.need() {
            Need::Header | Need::HeaderOrEnd => {
                let mut h = [0u8; HEADER_LEN];
                r.read_exact(&mut h).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        ReadError::Protocol(ProtocolError::Truncated("a header"))
                    } else {
                        ReadError::Io(e)
                    }
                })?;
                dec.header(&h)?;
            }
            Need::Body { len, what } => {
                let mut body = Vec::new();
                r.take(len.into())
                    .read_to_end(&mut body)
                    .await
                    .map_err(ReadError::Io)?;
                if body.len() != len as usize {
                    return Err(ProtocolError::Truncated(what).into());
                }
                dec.body(body)?;
            }
            Need::Done => return Ok(()),
        }
    }
}
