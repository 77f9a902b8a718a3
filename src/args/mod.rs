/*!
What compiler command lines mean to distcc.

All compiler-flag knowledge is in `table::FLAGS`, one sorted table whose rows
say what each flag means to the server (and, later, to the client). The
functions here are pure: words in, verdicts out.
*/

pub mod classify;
pub mod filename;
pub mod response;
pub mod server;
pub mod table;
