//! The connection's contract under TLS (issue 10): messages apply in
//! posting order whatever the state (a `stoptls` posted while connecting or
//! mid-handshake is deferred, not dropped or refused), a close during a
//! handshake does not wait for it, chained reads in handlers carry the
//! reference's 64-round TLS exchange, and the handshake's facts are
//! readable from the handle.

mod tls_support;

use netactor::framing::{Chunk, Line, Raw};
use netactor::tls::{ClientBuilder, ServerBuilder};
use netactor::{ConnectOptions, Ctx, Error, Event, ListenOptions, Options, Sink};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::*;

/// A TLS server in handler mode that follows `stoptls` and reports every
/// event, with the bytes of each `Read`, on a channel.
fn recording_server(
    r: &netactor::Reactor,
    pki: &Pki,
) -> (netactor::Listener, crossbeam_channel::Receiver<String>) {
    recording_server_with(r, pki, true)
}

fn recording_server_with(
    r: &netactor::Reactor,
    pki: &Pki,
    follow_stoptls: bool,
) -> (netactor::Listener, crossbeam_channel::Receiver<String>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let l = r
        .listen_with(
            any_port(),
            ListenOptions::new()
                .options(Options::new().follow_stoptls(follow_stoptls))
                .tls(pki.server().server_config()),
            move |ctx| {
                ctx.set_streaming(Some(Raw));
                let tx = tx.clone();
                move |ctx: &mut Ctx<'_>, ev: Event| {
                    let s = match ev {
                        Event::Read(f) => {
                            let tls = if ctx.is_tls() { "tls" } else { "plain" };
                            format!("{tls}:{}", String::from_utf8_lossy(f.bytes().unwrap()))
                        }
                        other => format!("{other:?}"),
                    };
                    let _ = tx.send(s);
                }
            },
        )
        .unwrap();
    (l, rx)
}

/// Server-side events until `want` (inclusive), with `Read`s merged per kind.
fn until(rx: &crossbeam_channel::Receiver<String>, want: &str) -> Vec<String> {
    let end = Instant::now() + WAIT;
    let mut out: Vec<String> = Vec::new();
    loop {
        let ev = rx
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("{want:?} not seen; got {out:?}"));
        // Reads may arrive in any split: join consecutive ones of one kind.
        if let (Some(last), Some((kind, data))) = (out.last_mut(), ev.split_once(':')) {
            if last.starts_with(&format!("{kind}:")) && (kind == "tls" || kind == "plain") {
                last.push_str(data);
                if last.ends_with(want) {
                    return out;
                }
                continue;
            }
        }
        let done = ev.ends_with(want);
        out.push(ev);
        if done {
            return out;
        }
    }
}

#[test]
fn stoptls_posted_while_connecting_applies_in_order_with_the_writes() {
    let pki = Pki::new();
    let r = reactor(2);
    let (l, server) = recording_server(&r, &pki);
    let (tx, events) = netactor::event_channel(64);
    let target = format!("localhost:{}", l.local_addr().port());
    let conn = tls_connect(&r, &pki, target.as_str(), tx);
    // All three posted before the connection (let alone TLS) is up.
    conn.write(&b"secret."[..]).unwrap();
    conn.stoptls().unwrap();
    conn.write(&b"public."[..]).unwrap();
    let seen = until(&server, "plain:public.");
    assert_eq!(
        seen,
        [
            "TlsEstablished",
            "tls:secret.",
            "TlsStopped",
            "plain:public."
        ]
    );
    let client: Vec<String> = std::iter::from_fn(|| events.recv_timeout(WAIT).ok())
        .map(|(_, e)| format!("{e:?}"))
        .take_while(|e| !e.starts_with("TlsStopped"))
        .collect();
    assert!(!client.iter().any(|e| e.starts_with("Error")), "{client:?}");
}

#[test]
fn stoptls_posted_during_the_handshake_waits_for_it() {
    let pki = Pki::new();
    let r = reactor(2);
    let (l, server) = recording_server(&r, &pki);
    let (tx, events) = netactor::event_channel(64);
    let conn = tls_connect(&r, &pki, l.local_addr(), tx);
    let first = events.recv_timeout(WAIT).unwrap().1;
    assert!(matches!(first, Event::Connected { .. }), "{first:?}");
    // Connected, handshake under way (the server has not answered yet).
    conn.write(&b"a"[..]).unwrap();
    conn.stoptls().unwrap();
    conn.write(&b"b"[..]).unwrap();
    let seen = until(&server, "plain:b");
    assert_eq!(seen, ["TlsEstablished", "tls:a", "TlsStopped", "plain:b"]);
}

#[test]
fn close_during_a_server_side_handshake_does_not_wait_for_it() {
    let pki = Pki::new();
    let r = reactor(1);
    let opts = Options::new()
        .handshake_timeout(Duration::from_secs(60))
        .linger(Duration::from_secs(60));
    let l = tls_listener(&r, &pki, opts);
    // A client that connects and never says a word: the handshake stalls.
    let mut silent = TcpStream::connect(l.local_addr()).unwrap();
    silent.set_read_timeout(Some(WAIT)).unwrap();
    let conn = l.accept_timeout(WAIT).unwrap();
    let t0 = Instant::now();
    conn.write(&b"421 bye\r\n"[..]).unwrap();
    conn.close().unwrap();
    let evs = until_closed(l.events());
    // Seconds below the 60 s linger and handshake timeout, not a latency bound.
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(
        matches!(
            evs.as_slice(),
            [
                Event::Error {
                    error: Error::Unsent { bytes: 9 },
                    fatal: false
                },
                Event::Closed
            ]
        ),
        "{evs:?}"
    );
    let mut buf = [0u8; 64];
    assert!(matches!(std::io::Read::read(&mut silent, &mut buf), Ok(0)));
}

/// The reference's TLS test: 64 rounds over one TLS connection, each a line
/// giving a length, then that many bytes (0 to 128 KiB); the server answers
/// each with its payload reversed. Both sides read with chained handler
/// reads: a line read whose completion unshifts the payload read.
#[test]
fn sixty_four_rounds_of_chained_reads_over_tls() {
    const ROUNDS: usize = 64;
    fn len_of(i: usize) -> usize {
        (i * 131_072 / (ROUNDS - 1)).min(128 << 10)
    }
    fn payload(i: usize) -> Vec<u8> {
        random_bytes(len_of(i), i as u64)
    }
    fn reversed(mut v: Vec<u8>) -> Vec<u8> {
        v.reverse();
        v
    }
    fn serve(ctx: &mut Ctx<'_>) {
        ctx.push_read_with(Line::new(), |ctx, line| {
            let Ok(line) = line else { return };
            let len: usize = std::str::from_utf8(&line.line).unwrap().parse().unwrap();
            ctx.unshift_read_with(Chunk::new(len), move |ctx, data| {
                let data = reversed(data.unwrap().to_vec());
                ctx.write(format!("{}\n", data.len())).unwrap();
                ctx.write(data).unwrap();
                serve(ctx);
            });
        });
    }
    fn ask(ctx: &mut Ctx<'_>, i: usize, done: crossbeam_channel::Sender<Result<usize, String>>) {
        if i == ROUNDS {
            let _ = done.send(Ok(i));
            ctx.close();
            return;
        }
        let p = payload(i);
        ctx.write(format!("{}\n", p.len())).unwrap();
        ctx.write(p).unwrap();
        ctx.push_read_with(Line::new(), move |ctx, line| {
            let line = match line {
                Ok(l) => l,
                Err(e) => return drop(done.send(Err(format!("round {i}: {e}")))),
            };
            let len: usize = std::str::from_utf8(&line.line).unwrap().parse().unwrap();
            ctx.unshift_read_with(Chunk::new(len), move |ctx, data| match data {
                Ok(d) if d[..] == reversed(payload(i))[..] => ask(ctx, i + 1, done),
                Ok(_) => drop(done.send(Err(format!("round {i}: wrong payload")))),
                Err(e) => drop(done.send(Err(format!("round {i}: {e}")))),
            });
        });
    }

    let pki = Pki::new();
    let r = reactor(2);
    let l = tls_listener_with(&r, &pki, Options::new(), |ctx| {
        serve(ctx);
        |_: &mut Ctx<'_>, _: Event| {}
    });
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let sink = Sink::handler(move |ctx: &mut Ctx<'_>, ev: Event| match ev {
        Event::TlsEstablished => ask(ctx, 0, done_tx.clone()),
        Event::Error { error, fatal: true } => {
            let _ = done_tx.send(Err(error.to_string()));
        }
        _ => {}
    });
    let _conn = tls_connect(&r, &pki, l.local_addr(), sink);
    let got = done
        .recv_timeout(Duration::from_secs(60))
        .expect("the exchange did not finish");
    assert_eq!(got, Ok(ROUNDS));
}

#[test]
fn handles_and_handlers_see_what_the_handshake_established() {
    let pki = Pki::new();
    let server_cert = pki.server();
    let client_cert = pki.client("alice");
    let server_cfg = ServerBuilder::from_pem(
        server_cert.cert_pem.as_bytes(),
        server_cert.key_pem.as_bytes(),
    )
    .unwrap()
    .client_auth_required(pki.ca_pem.as_bytes())
    .unwrap()
    .alpn(["x-test"])
    .build()
    .unwrap();
    let client_cfg = ClientBuilder::new()
        .ca_pem(pki.ca_pem.as_bytes())
        .unwrap()
        .client_cert_pem(
            client_cert.cert_pem.as_bytes(),
            client_cert.key_pem.as_bytes(),
        )
        .unwrap()
        .alpn(["x-test"])
        .build()
        .unwrap();
    let r = reactor(2);
    let (seen_tx, seen) = crossbeam_channel::unbounded();
    let l = r
        .listen_with(
            any_port(),
            ListenOptions::new().tls(server_cfg),
            move |_| {
                let tx = seen_tx.clone();
                move |ctx: &mut Ctx<'_>, ev: Event| {
                    if let Event::TlsEstablished = ev {
                        let _ = tx.send((ctx.tls_info(), ctx.tls_cipher_suite()));
                    }
                }
            },
        )
        .unwrap();
    let (tx, events) = netactor::event_channel(16);
    let conn = r
        .connect(
            "localhost:".to_string() + &l.local_addr().port().to_string(),
            ConnectOptions::new().tls(client_cfg, None),
            tx,
        )
        .unwrap();
    assert!(conn.tls_info().is_none());
    wait_event(&events, |e| matches!(e, Event::TlsEstablished));
    // From a plain thread, no round trip.
    let info = conn.tls_info().expect("client TLS info");
    assert_eq!(info.alpn_protocol.as_deref(), Some(&b"x-test"[..]));
    assert!(info.protocol_version.is_some());
    assert!(info.cipher_suite.is_some());
    assert!(!info.peer_certificates.is_empty(), "the server's chain");
    assert_eq!(conn.peer_addr(), Some(l.local_addr()));
    // On the server's worker: SNI and the client's certificate (mTLS).
    let (sinfo, suite) = seen.recv_timeout(WAIT).unwrap();
    let sinfo: Arc<netactor::tls::TlsInfo> = sinfo.expect("server TLS info");
    assert_eq!(sinfo.server_name.as_deref(), Some("localhost"));
    assert_eq!(sinfo.cipher_suite, suite);
    assert_eq!(sinfo.cipher_suite, info.cipher_suite);
    let client_der =
        netactor::tls::certs_from_pem(client_cert.cert_pem.as_bytes()).unwrap()[0].to_vec();
    assert_eq!(
        sinfo.peer_certificates.first().map(|c| c.to_vec()),
        Some(client_der)
    );
}

#[test]
fn a_tls_connect_written_then_dropped_is_delivered() {
    // The handshake is part of connecting: `connect; write; drop` waits for
    // it, sends the bytes encrypted, then close_notify.
    let pki = Pki::new();
    let r = reactor(2);
    let (l, server) = recording_server_with(&r, &pki, false);
    let (tx, events) = netactor::event_channel(64);
    let target = format!("localhost:{}", l.local_addr().port());
    let conn = tls_connect(&r, &pki, target.as_str(), tx);
    conn.write(&b"fire and forget"[..]).unwrap();
    drop(conn);
    let seen = until(&server, "Eof");
    // close_notify is a clean EOF for this server.
    assert_eq!(seen, ["TlsEstablished", "tls:fire and forget", "Eof"]);
    let evs = until_closed(&events);
    assert!(fatal_error(&evs).is_none(), "{evs:?}");
    assert!(
        !evs.iter().any(|e| matches!(e, Event::Error { .. })),
        "{evs:?}"
    );
}
