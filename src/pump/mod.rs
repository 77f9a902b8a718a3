/*!
Pump mode's include server, native: for a compile command, the files the
compile may read, so that the server can preprocess (protocol 3) and the
client need not. It speaks distcc 3.4's include-server protocol on an
AF_UNIX socket, so distcc 3.4's client uses it as well as ours; `pump`
starts it.

The rooms: `command` (what of a command line matters), `search` (the
compiler's search lists), `directives` and `macros` (a file's includes and
definitions; computed includes), `closure` (the walk and its caches),
`root` (the files as distcc 3.4's client reads them), `server` (the socket),
`wrapper` (the `pump` command).
*/

pub mod closure;
pub mod command;
pub mod directives;
pub mod macros;
pub mod root;
pub mod search;
pub mod server;
pub mod wrapper;
