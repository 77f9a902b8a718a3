/*!
The distcc wire protocol, versions 1 and 2 (doc/protocol-1.txt, protocol-2.txt).

Everything here is pure: it turns values into bytes and bytes into values, and
never touches a socket. `nonblocking` adapts it to tokio for the daemon;
the client reads with `std::io` (see `blocking`).
*/

pub mod blocking;
pub mod lzo;
pub mod message;
pub mod nonblocking;
pub mod token;

pub use message::{Compression, Limits, ReadError, Reply, Request, Version};
pub use token::{HEADER_LEN, ProtocolError, Tag, Token};
