//! A plain-threads application talking to many connections at once.
//!
//! ```text
//! cargo run --release --example select_clients -- [--connections N] [--lines N]
//! ```
//!
//! It starts a small line server (handler mode: it answers every line with
//! the line upper-cased), then opens N client connections from the main
//! thread. The main thread never blocks on one connection: it keeps one line
//! read outstanding per connection and waits on all of their replies — plus a
//! shared events channel and a progress ticker — with crossbeam's
//! `Select`/`select!`. No async, no thread per connection.

use anyhow::{bail, Context};
use crossbeam_channel::{select, tick, Select};
use netactor::framing::{Line, LineFrame};
use netactor::{ConnectOptions, Connection, Event, ListenOptions, Reactor, Reply};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut connections = 50usize;
    let mut lines = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--connections" => {
                connections = args
                    .next()
                    .context("--connections needs a value")?
                    .parse()?
            }
            "--lines" => lines = args.next().context("--lines needs a value")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }

    let reactor = Reactor::builder().build()?;
    // The server: every line comes back upper-cased.
    let server = reactor.listen_with("127.0.0.1:0".parse()?, ListenOptions::new(), |ctx| {
        ctx.set_streaming(Some(Line::new()));
        |ctx: &mut netactor::Ctx<'_>, ev: Event| match ev {
            Event::Read(netactor::framing::Frame::Line(l)) => {
                let mut out = l.line.to_ascii_uppercase();
                out.extend_from_slice(b"\n");
                let _ = ctx.write(out);
            }
            Event::Eof => {
                let _ = ctx.shutdown();
            }
            _ => {}
        }
    })?;

    // The clients: one shared events channel for all of them.
    let (events_tx, events) = netactor::event_channel(1024);
    let conns: Vec<Connection> = (0..connections)
        .map(|_| {
            reactor.connect(
                server.local_addr(),
                ConnectOptions::new(),
                events_tx.clone(),
            )
        })
        .collect::<Result<_, _>>()?;

    // One outstanding read per connection; `sent[i]` lines written so far.
    let mut pending: Vec<Option<Reply<LineFrame>>> = Vec::with_capacity(connections);
    let mut sent = vec![0usize; connections];
    for (i, c) in conns.iter().enumerate() {
        c.write(format!("hello {i} line 0\n"))?;
        sent[i] = 1;
        pending.push(Some(c.push_read(Line::new())?));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let ticker = tick(Duration::from_millis(500));
    let mut answered = 0usize;
    let total = connections * lines;
    while answered < total {
        if Instant::now() > deadline {
            bail!("timed out with {answered}/{total} answers");
        }
        // Non-reply happenings first, without blocking.
        select! {
            recv(events) -> ev => {
                if let Ok((id, Event::Error { error, .. })) = ev {
                    bail!("{id}: {error}");
                }
                continue;
            }
            recv(ticker) -> _ => {
                println!("progress: {answered}/{total} answers");
                continue;
            }
            default => {}
        }
        // Wait for whichever connection answers first.
        let mut index = Vec::new();
        let ready = {
            let mut sel = Select::new();
            for (i, p) in pending.iter().enumerate() {
                if let Some(r) = p {
                    sel.recv(r.receiver());
                    index.push(i);
                }
            }
            sel.ready_timeout(Duration::from_millis(200))
        };
        let Ok(k) = ready else { continue };
        let i = index[k];
        let result = match pending[i].as_ref().map(|r| r.try_recv()) {
            // Readiness can be spurious: select again.
            None | Some(Err(netactor::TryReplyError::Empty)) => continue,
            Some(result) => result,
        };
        pending[i] = None;
        let line = result?;
        let expect = format!("HELLO {i} LINE {}", sent[i] - 1);
        assert_eq!(line.line, expect.as_bytes(), "connection {i}");
        answered += 1;
        if sent[i] < lines {
            conns[i].write(format!("hello {i} line {}\n", sent[i]))?;
            sent[i] += 1;
            pending[i] = Some(conns[i].push_read(Line::new())?);
        } else {
            conns[i].shutdown()?;
        }
    }
    println!(
        "{total} request/response pairs over {connections} connections in {:?}",
        started.elapsed()
    );
    drop(conns);
    reactor.shutdown();
    Ok(())
}
