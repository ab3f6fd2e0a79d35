//! The accept pause for lack of descriptors (EMFILE), counted in
//! `Metrics::accept_pauses[0]`, and the listener's recovery.
//!
//! `RLIMIT_NOFILE` is per process, so this test has a file (a process) of
//! its own: lowering it beside other tests would make their sockets fail.
//!
//! Run: `cargo test --release --test metrics_emfile`
#![cfg(unix)]

mod common;

use common::*;
use netactor::{ListenOptions, Reactor};
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Sets the soft `RLIMIT_NOFILE` for as long as it lives, then puts the old
/// one back (also when the test panics).
struct SoftLimit(libc::rlimit);

impl SoftLimit {
    fn set(soft: u64) -> SoftLimit {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut old), 0);
            let new = libc::rlimit {
                rlim_cur: soft as libc::rlim_t,
                rlim_max: old.rlim_max,
            };
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &new), 0);
        }
        SoftLimit(old)
    }
}

impl Drop for SoftLimit {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &self.0);
        }
    }
}

/// Opens `/dev/null` until the process is out of descriptors.
fn fill_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return held;
            }
        }
        assert!(held.len() < 10_000, "the lowered limit did not hold");
    }
}

#[test]
fn counts_descriptor_pauses_and_accepts_again_once_descriptors_are_freed() {
    let _w = Watchdog::new("descriptor pause", Duration::from_secs(60));
    let r = Reactor::builder()
        .workers(1)
        .shutdown_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    // Everything this test needs later is open before the limit drops.
    let probe = File::open("/dev/null").unwrap();
    let limit = {
        use std::os::fd::AsRawFd;
        // Room for a few more than are open now (descriptors are allocated
        // lowest first, so the probe's number is about how many are open).
        probe.as_raw_fd() as u64 + 16
    };
    drop(probe);
    let soft = SoftLimit::set(limit);
    let mut held = fill_descriptors();
    // One descriptor for the client; then the server's accept has none.
    held.pop();
    let mut client = TcpStream::connect(l.local_addr()).unwrap();
    let m = metrics_until(&r, WAIT, "a descriptor pause", |m| m.accept_pauses[0] >= 1);
    assert_eq!(m.connections_accepted, 0, "{m:#?}");
    assert!(l.accept_timeout(Duration::ZERO).is_none());
    // Paused, not spinning: retried after 10, 20, 40 ms …, each retry a
    // pause of its own while nothing is freed.
    let m = metrics_until(&r, WAIT, "a second pause", |m| m.accept_pauses[0] >= 2);
    assert_eq!(m.accept_pauses[1..], [0, 0], "{m:#?}");
    // Descriptors freed: the next retry accepts the waiting connection.
    drop(held);
    let conn = l
        .accept_timeout(WAIT)
        .expect("accepted after descriptors were freed");
    drop(soft);
    client.set_read_timeout(Some(WAIT)).unwrap();
    conn.write(&b"ok"[..]).unwrap();
    let mut two = [0u8; 2];
    client.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"ok");
    client.write_all(b"!").unwrap();
    let m = r.metrics();
    assert_eq!(m.connections_accepted, 1, "{m:#?}");
    assert!(m.accept_pauses[0] >= 2, "{m:#?}");
    assert_eq!(m.accept_pauses[1..], [0, 0], "{m:#?}");
}
