//! kv-top: the model ([`app`]), drawing ([`ui`]), cluster polling ([`io`]) and trace replay
//! ([`replay`]). The binary in `main.rs` wires them to a terminal.

pub mod app;
pub mod io;
pub mod replay;
pub mod ui;
