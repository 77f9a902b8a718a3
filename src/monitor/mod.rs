/*!
distcc's job monitor: the client's state records (`$DISTCC_DIR/state/binstate_PID`,
byte-compatible with distcc 3.4 so that either monitor shows either
client's jobs) and `distccmon-text`'s view of them.
*/

pub mod scan;
pub mod state;
pub mod text;
