//! Unix-domain sockets: listen, connect and adopt on real sockets, with
//! third-party clients (python3's `socket.AF_UNIX`, socat), the reference's
//! stale-file and ownership rules, Linux's abstract namespace and peer
//! credentials.

mod common;

use common::*;
use netactor::framing::{Line, Raw};
use netactor::{Ctx, Error, Event, ListenOptions, Options, Reactor};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A fresh socket path in the temp dir (removed on drop).
struct SockPath(PathBuf);

impl SockPath {
    fn new(tag: &str) -> SockPath {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("na-{}-{tag}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&p);
        SockPath(p)
    }
}

impl Drop for SockPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn echo_server(r: &Reactor, path: &std::path::Path) -> netactor::Listener {
    r.listen_unix_with(path, ListenOptions::new(), |ctx| {
        ctx.set_streaming(Some(Raw));
        |ctx: &mut Ctx<'_>, ev: Event| match ev {
            Event::Read(f) => {
                let _ = ctx.write(f.into_bytes().unwrap());
            }
            Event::Eof => {
                let _ = ctx.shutdown();
            }
            _ => {}
        }
    })
    .unwrap()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn python_talks_to_a_unix_echo_server() {
    let r = reactor(2);
    let p = SockPath::new("py");
    let _l = echo_server(&r, &p.0);
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import socket,sys\n\
             s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM)\n\
             s.settimeout(10)\n\
             s.connect(sys.argv[1])\n\
             s.sendall(b'hello from python')\n\
             s.shutdown(socket.SHUT_WR)\n\
             d=b''\n\
             while True:\n\
             \x20   c=s.recv(4096)\n\
             \x20   if not c: break\n\
             \x20   d+=c\n\
             sys.stdout.write(d.decode())\n",
        )
        .arg(&p.0)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from python");
}

#[test]
fn socat_talks_to_a_unix_echo_server() {
    if !have("socat") {
        // .ci/run installs it (and CI must not skip); a developer machine
        // may not have it.
        assert!(std::env::var_os("CI").is_none(), "socat missing in CI");
        eprintln!("socat not installed: skipped");
        return;
    }
    let r = reactor(1);
    let p = SockPath::new("socat");
    let _l = echo_server(&r, &p.0);
    let mut child = Command::new("socat")
        .arg("-t5")
        .arg("-")
        .arg(format!("UNIX-CONNECT:{}", p.0.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"ping\n").unwrap();
    let mut got = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(got, "ping\n");
}

#[test]
fn connect_unix_and_peer_credentials() {
    let r = reactor(2);
    let p = SockPath::new("cred");
    let l = r.listen_unix(&p.0, ListenOptions::new()).unwrap();
    assert_eq!(l.unix_path(), Some(p.0.as_path()));
    let (tx, _events) = netactor::event_channel(16);
    let client = r.connect_unix(&p.0, Options::new(), tx).unwrap();
    let server = l.accept_timeout(WAIT).unwrap();
    client.write(&b"over unix\n"[..]).unwrap();
    let line = server
        .push_read(Line::new())
        .unwrap()
        .recv_timeout(WAIT)
        .unwrap();
    assert_eq!(&line.line[..], b"over unix");
    // Both ends are this process.
    let me = std::process::id() as i32;
    let uid = rustix::process::getuid().as_raw();
    let cred = server.peer_credentials().expect("server side credentials");
    assert_eq!((cred.pid, cred.uid), (me, uid));
    assert_eq!(client.peer_credentials().map(|c| c.pid), Some(me));
    assert_eq!(server.peer_addr(), None, "no IP address on a Unix socket");
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_in_use() {
    let r = reactor(1);
    let p = SockPath::new("stale");
    // A server that died: its socket file stays behind.
    drop(UnixListener::bind(&p.0).unwrap());
    assert!(p.0.exists());
    let l = echo_server(&r, &p.0);
    let mut c = UnixStream::connect(&p.0).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    c.read_exact(&mut b).unwrap();
    // A live server is not replaced.
    match r.listen_unix(&p.0, ListenOptions::new()) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("expected AddrInUse, got {other:?}"),
    }
    // Nor is a file that is not a socket.
    let f = SockPath::new("regular");
    std::fs::write(&f.0, b"data").unwrap();
    assert!(r.listen_unix(&f.0, ListenOptions::new()).is_err());
    assert_eq!(std::fs::read(&f.0).unwrap(), b"data");
    drop(l);
}

#[test]
fn the_socket_file_is_removed_on_close_only_if_still_ours() {
    let p = SockPath::new("own");
    let q = SockPath::new("replaced");
    {
        let r = reactor(1);
        let l1 = r.listen_unix(&p.0, ListenOptions::new()).unwrap();
        let l2 = r.listen_unix(&q.0, ListenOptions::new()).unwrap();
        // Someone replaces the second file meanwhile.
        std::fs::remove_file(&q.0).unwrap();
        std::fs::write(&q.0, b"someone else's").unwrap();
        drop(l1);
        drop(l2);
        r.shutdown();
    }
    assert!(!p.0.exists(), "our socket file was left behind");
    assert_eq!(std::fs::read(&q.0).unwrap(), b"someone else's");
}

#[test]
fn the_abstract_namespace_needs_no_file() {
    let r = reactor(1);
    let name = format!("@netactor-test-{}", std::process::id());
    let _l = echo_server(&r, std::path::Path::new(&name));
    let (tx, events) = netactor::event_channel(16);
    let c = r.connect_unix(&name, Options::new(), tx).unwrap();
    c.set_streaming(Some(Raw)).unwrap();
    c.write(&b"abstract"[..]).unwrap();
    let mut got = Vec::new();
    while got.len() < 8 {
        if let Event::Read(f) = next_event(&events, WAIT) {
            got.extend_from_slice(f.bytes().unwrap());
        }
    }
    assert_eq!(got, b"abstract");
}

#[test]
fn connecting_to_nothing_is_the_os_error() {
    let r = reactor(1);
    let p = SockPath::new("none");
    let (tx, _e) = netactor::event_channel(4);
    match r.connect_unix(&p.0, Options::new(), tx) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// The examples' command lines: `echo --listen unix:PATH` prints
/// `listening on unix:PATH` and echoes; `ncat --connect unix:PATH` talks to
/// it; SIGTERM exits 0 and the socket file goes with the server.
#[test]
fn echo_and_ncat_examples_speak_unix_sockets() {
    use std::io::BufRead;
    let p = SockPath::new("examples");
    let mut echo = Command::new(example_bin("echo"))
        .arg("--listen")
        .arg(format!("unix:{}", p.0.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(echo.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(
        first.trim_end(),
        format!("listening on unix:{}", p.0.display())
    );
    let mut ncat = Command::new(example_bin("ncat"))
        .arg("--connect")
        .arg(format!("unix:{}", p.0.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    ncat.stdin
        .take()
        .unwrap()
        .write_all(b"through the examples\n")
        .unwrap();
    let mut got = String::new();
    ncat.stdout
        .take()
        .unwrap()
        .read_to_string(&mut got)
        .unwrap();
    assert!(ncat.wait().unwrap().success());
    assert_eq!(got, "through the examples\n");
    // SAFETY: kill(2) with a pid of our own live child and SIGTERM.
    let rc = unsafe { libc::kill(echo.id() as i32, libc::SIGTERM) };
    assert_eq!(rc, 0);
    assert!(echo.wait().unwrap().success(), "echo exits 0 on SIGTERM");
    assert!(!p.0.exists(), "the socket file is removed on exit");
}

#[test]
fn adopting_a_datagram_unix_socket_is_refused() {
    let r = reactor(1);
    let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let fd: std::os::fd::OwnedFd = a.into();
    let not_a_stream = UnixStream::from(fd);
    let (tx, _e) = netactor::event_channel(4);
    match r.adopt_unix(not_a_stream, Options::new(), tx) {
        Err(Error::InvalidInput(why)) => assert!(why.contains("stream"), "{why}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}
