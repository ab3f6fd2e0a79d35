//! One port, two protocols: `TlsAutostart` starts server TLS when the stream
//! begins with a ClientHello and leaves plaintext streams alone;
//! `TlsDetect` only reports.

mod tls_support;

use netactor::framing::{Frame, Line, TlsAutostart, TlsDetect, TlsDetection};
use netactor::{Ctx, Event, ListenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use tls_support::*;

/// Handler mode: the streaming decoder is `TlsAutostart` until its frame
/// arrives, then lines; every line is answered with `tls: ` or `plain: `.
fn mixed_server(r: &netactor::Reactor, pki: &Pki) -> netactor::Listener {
    let cfg = pki.server().server_config();
    r.listen_with(any_port(), ListenOptions::new(), move |ctx| {
        ctx.set_streaming(Some(TlsAutostart::new(cfg.clone())));
        |ctx: &mut Ctx<'_>, ev: Event| match ev {
            Event::Read(Frame::Other(d)) => {
                assert!(d.downcast_ref::<TlsDetection>().is_some());
                // Replace the one-shot decoder before TLS starts.
                ctx.set_streaming(Some(Line::new()));
            }
            Event::Read(f) => {
                let kind = if ctx.is_tls() { "tls" } else { "plain" };
                let line = String::from_utf8_lossy(f.bytes().unwrap()).into_owned();
                ctx.write(format!("{kind}: {line}\r\n")).unwrap();
            }
            Event::Eof => ctx.close(),
            _ => {}
        }
    })
    .unwrap()
}

#[test]
fn one_port_serves_tls_and_plaintext_clients() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = mixed_server(&r, &pki);
    // A plaintext client.
    let mut plain = TcpStream::connect(l.local_addr()).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain.write_all(b"hello\r\nagain\r\n").unwrap();
    assert_eq!(read_line(&mut plain), "plain: hello\r\n");
    assert_eq!(read_line(&mut plain), "plain: again\r\n");
    // A TLS client (an independent implementation) on the same port.
    let s = TcpStream::connect(l.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls_stream(&pki, s);
    tls.write_all(b"secret\r\n").unwrap();
    assert_eq!(read_line(&mut tls), "tls: secret\r\n");
    // And a netactor TLS client, verifying the server.
    let (tx, _rx) = netactor::event_channel(16);
    let conn = tls_connect(&r, &pki, l.local_addr(), tx);
    conn.write(&b"third\r\n"[..]).unwrap();
    let line = conn.push_read(Line::new()).unwrap();
    assert_eq!(&line.recv_timeout(WAIT).unwrap().line[..], b"tls: third");
}

#[test]
fn channel_mode_autostart_with_queued_reads() {
    let pki = Pki::new();
    let r = reactor(2);
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    let cfg = pki.server().server_config();
    for use_tls in [false, true] {
        let s = TcpStream::connect(l.local_addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let conn = l.accept_timeout(WAIT).unwrap();
        let detected = conn.push_read(TlsAutostart::new(cfg.clone())).unwrap();
        let first = conn.push_read(Line::new()).unwrap();
        let mut stream: Box<dyn ReadWrite> = if use_tls {
            Box::new(rustls_stream(&pki, s))
        } else {
            Box::new(s)
        };
        stream.write_all(b"line one\r\n").unwrap();
        stream.flush().unwrap();
        let d = detected.recv_timeout(WAIT).unwrap();
        assert_eq!(d.is_tls(), use_tls, "{d:?}");
        // Reads after it see decrypted data when TLS started, raw otherwise.
        assert_eq!(&first.recv_timeout(WAIT).unwrap().line[..], b"line one");
        conn.write(&b"ok\r\n"[..]).unwrap();
        assert_eq!(read_line(&mut stream), "ok\r\n");
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn tls_detect_reports_without_consuming() {
    let r = reactor(1);
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    let mut s = TcpStream::connect(l.local_addr()).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let d = conn.push_read(TlsDetect).unwrap();
    let rest = conn.push_read(Line::new()).unwrap();
    s.write_all(b"EHLO x\r\n").unwrap();
    assert_eq!(d.recv_timeout(WAIT).unwrap(), TlsDetection::NotTls);
    assert_eq!(&rest.recv_timeout(WAIT).unwrap().line[..], b"EHLO x");
    // A real ClientHello is recognised (and nothing starts: detect only).
    let mut s2 = TcpStream::connect(l.local_addr()).unwrap();
    let conn2 = l.accept_timeout(WAIT).unwrap();
    let d2 = conn2.push_read(TlsDetect).unwrap();
    let mut hello = Vec::new();
    let mut c = rustls_session(&Pki::new());
    c.write_tls(&mut hello).unwrap();
    s2.write_all(&hello).unwrap();
    match d2.recv_timeout(WAIT).unwrap() {
        TlsDetection::Tls { major: 3, .. } => {}
        other => panic!("{other:?}"),
    }
    let raw = conn2
        .push_read(netactor::framing::Chunk::new(hello.len()))
        .unwrap();
    assert_eq!(&raw.recv_timeout(WAIT).unwrap()[..], &hello[..]);
}

#[test]
fn autostart_on_garbage_that_looks_like_tls_fails_cleanly() {
    let pki = Pki::new();
    let r = reactor(1);
    let l = r.listen(any_port(), ListenOptions::new()).unwrap();
    let mut s = TcpStream::connect(l.local_addr()).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let d = conn
        .push_read(TlsAutostart::new(pki.server().server_config()))
        .unwrap();
    s.write_all(&[0x16, 3, 1, 0, 4, 1, 2, 3, 4]).unwrap();
    assert!(d.recv_timeout(WAIT).unwrap().is_tls());
    let evs = until_closed(l.events());
    assert!(
        matches!(fatal_error(&evs), Some(netactor::Error::Tls(_))),
        "{evs:?}"
    );
}
