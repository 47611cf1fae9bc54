//! Ports for nodes under test, shared by every test that starts nodes on loopback (the
//! server's end-to-end tests include it as `common::ports`, kvctl's tests by path).

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

/// First port handed out to nodes, below Linux's default ephemeral range (32768..61000).
const PORT_FIRST: u16 = 20_000;
/// Ports handed out from `PORT_FIRST` on.
const PORT_COUNT: u16 = 12_000;

/// A port nobody listens on right now, for a node to bind. Taken below the kernel's range for
/// outgoing connections: a port the OS picked and released (`bind :0`) could be given to a
/// client's outgoing connection of a test running alongside before the node binds it, and the
/// node would then fail to start. Each port is handed out once per test process (a counter
/// from a start drawn from the process id) and checked free.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(PORT_COUNT)) as u16;
    for _ in 0..PORT_COUNT {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % PORT_COUNT;
        let port = PORT_FIRST + (start + offset) % PORT_COUNT;
        if TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_FIRST}..{}", PORT_FIRST + PORT_COUNT);
}
