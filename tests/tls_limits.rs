//! TLS buffers count toward the connection limits: plaintext inside rustls
//! keeps its `wbuf_max` reservation until its records reach the kernel, and
//! decrypted data counts toward `rbuf_max`.

mod tls_support;

use netactor::framing::Line;
use netactor::{ConnectOptions, Error, Event, Limit, Options};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use tls_support::*;

/// A listener whose accepted sockets have a small receive buffer.
fn small_rcvbuf_listener() -> TcpListener {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(16 << 10).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&addr.into()).unwrap();
    s.listen(8).unwrap();
    s.into()
}

#[test]
fn plaintext_inside_the_tls_engine_keeps_its_write_reservation() {
    let pki = Pki::new();
    let server_cfg = pki.server().server_config();
    let listener = small_rcvbuf_listener();
    let addr = listener.local_addr().unwrap();
    // The peer: completes the handshake, then reads nothing until told to.
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    let peer = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let c = rustls::ServerConnection::new(server_cfg).unwrap();
        let mut tls = rustls::StreamOwned::new(c, s);
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).unwrap(); // handshake + one byte
        go_rx.recv_timeout(WAIT).unwrap();
        let mut all = Vec::new();
        tls.read_to_end(&mut all).unwrap();
        all.len() + 1
    });
    const WBUF: usize = 1 << 20;
    let r = reactor(1);
    let (tx, rx) = netactor::event_channel(16);
    let conn = r
        .connect(
            addr,
            ConnectOptions::new()
                .options(Options::new().wbuf_max(WBUF))
                .prepare(|s, _| s.set_send_buffer_size(16 << 10))
                .tls(
                    pki.client_config(),
                    Some(ServerName::try_from("localhost").unwrap()),
                ),
            tx,
        )
        .unwrap();
    conn.write(&b"!"[..]).unwrap();
    wait_event(&rx, |e| matches!(e, Event::TlsEstablished));
    // Fill the write queue until it refuses.
    let chunk = vec![7u8; 32 << 10];
    let mut accepted = 1usize;
    let end = Instant::now() + WAIT;
    loop {
        match conn.write(chunk.clone()) {
            Ok(()) => accepted += chunk.len(),
            Err(Error::NoSpace {
                limit: Limit::WriteBuffer,
                max,
            }) => {
                assert_eq!(max, WBUF);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < end);
    }
    // Let the actor push what it can into the (blocked) socket: wait until
    // the counters stop moving.
    let mut last = conn.stats();
    let stable_since = Instant::now();
    let mut stable_at = stable_since;
    while stable_at.elapsed() < Duration::from_millis(200) {
        assert!(stable_since.elapsed() < WAIT, "counters never settled");
        std::thread::sleep(Duration::from_millis(20));
        let now = conn.stats();
        if now != last {
            last = now;
            stable_at = Instant::now();
        }
    }
    let st = conn.stats();
    assert!(st.write_queued <= WBUF);
    // The socket is blocked, so rustls holds encrypted records it could not
    // send. Their plaintext must still be reserved: what was released is at
    // most what reached the kernel (ciphertext counted, so an upper bound).
    let released = accepted - st.write_queued;
    assert!(
        released as u64 <= st.bytes_written,
        "released {released} bytes but only {} (ciphertext) reached the kernel",
        st.bytes_written
    );
    assert!(
        st.write_queued > 0,
        "the blocked socket should leave data queued"
    );
    // Now the peer reads: everything arrives and the reservation drains.
    go_tx.send(()).unwrap();
    let ok = wait_until(|| conn.stats().write_queued == 0);
    assert!(ok, "write reservation never drained: {:?}", conn.stats());
    conn.close().unwrap();
    assert_eq!(peer.join().unwrap(), accepted);
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn decrypted_data_counts_toward_rbuf_max() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new().rbuf_max(64 << 10));
    let s = std::net::TcpStream::connect(l.local_addr()).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls_stream(&pki, s);
    let conn = l.accept_timeout(WAIT).unwrap();
    // A line reader that would accept 1 MiB: the read buffer limit trips first.
    let line = conn.push_read(Line::new().max_len(1 << 20)).unwrap();
    // The stream is returned so that it stays open until the end: closing it
    // with unread session tickets would send an RST that discards the data.
    let writer = std::thread::spawn(move || {
        let _ = tls.write_all(&vec![b'x'; 256 << 10]);
        tls
    });
    match line.recv_timeout(WAIT) {
        Err(netactor::ReplyTimeoutError::Failed(Error::NoSpace {
            limit: Limit::ReadBuffer,
            max,
        })) => assert_eq!(max, 64 << 10),
        other => panic!("{other:?}"),
    }
    let evs = until_closed(l.events());
    assert!(
        matches!(
            fatal_error(&evs),
            Some(Error::NoSpace {
                limit: Limit::ReadBuffer,
                ..
            })
        ),
        "{evs:?}"
    );
    let _ = writer.join();
}

#[test]
fn stop_read_holds_back_a_tls_sender() {
    // Backpressure works through TLS: with reading stopped after the
    // handshake, the actor reads (almost) nothing more.
    let pki = Pki::new();
    let r = reactor(1);
    let l = tls_listener(&r, &pki, Options::new());
    let mut tls = rustls_client(&pki, l.local_addr());
    finish_handshake(&mut tls);
    let conn = l.accept_timeout(WAIT).unwrap();
    wait_event(l.events(), |e| matches!(e, Event::TlsEstablished));
    let before = conn.stats().bytes_read;
    tls.sock.set_nonblocking(true).unwrap();
    // Push 8 MiB (or until the kernel buffers are full).
    let block = vec![1u8; 64 << 10];
    let mut sent = 0usize;
    for _ in 0..128 {
        if tls.conn.writer().write_all(&block).is_err() {
            break;
        }
        let mut full = false;
        while tls.conn.wants_write() {
            if tls.conn.write_tls(&mut tls.sock).is_err() {
                full = true;
                break;
            }
        }
        sent += block.len();
        if full {
            break;
        }
    }
    // Nothing to await here: we check that something does NOT happen, so
    // give the actor a moment in which it could wrongly read.
    std::thread::sleep(Duration::from_millis(100));
    let read = conn.stats().bytes_read - before;
    assert!(sent > 1 << 20, "only {sent} sent");
    assert!(
        read < 64 << 10,
        "read {read} bytes although nobody wants data (sent {sent})"
    );
}
