//! distcc's exit codes (src/exitcode.h). Every binary maps its outcome to one
//! of these in its `main`, nowhere else.

pub const DISTCC_FAILED: u8 = 100;
pub const BAD_ARGUMENTS: u8 = 101;
pub const BIND_FAILED: u8 = 102;
pub const CONNECT_FAILED: u8 = 103;
pub const COMPILER_CRASHED: u8 = 104;
pub const OUT_OF_MEMORY: u8 = 105;
pub const BAD_HOSTSPEC: u8 = 106;
pub const IO_ERROR: u8 = 107;
pub const TRUNCATED: u8 = 108;
pub const PROTOCOL_ERROR: u8 = 109;
pub const COMPILER_MISSING: u8 = 110;
pub const RECURSION: u8 = 111;
pub const SETUID_FAILED: u8 = 112;
pub const ACCESS_DENIED: u8 = 113;
pub const BUSY: u8 = 114;
pub const NO_SUCH_FILE: u8 = 115;
pub const NO_HOSTS: u8 = 116;
pub const GONE: u8 = 117;
pub const TIMEOUT: u8 = 118;
