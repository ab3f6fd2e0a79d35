//! The smtp example, driven over real sockets: the RFC 5321/3207 subset,
//! STARTTLS (with an independent rustls client, openssl s_client, curl and
//! Python's smtplib), injection, --require-tls, --max-line, --idle-timeout,
//! what is (and is not) stored, and SIGTERM.

mod tls_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tls_support::*;

struct Server {
    proc: Proc,
    addr: SocketAddr,
    maildir: TempDir,
    files: TempDir,
    pki: Arc<Pki>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let pki = Arc::new(Pki::new());
        let files = TempDir::new("smtp-certs");
        let cert = pki.server();
        let c = files.write("cert.pem", &cert.cert_pem);
        let k = files.write("key.pem", &cert.key_pem);
        files.write("ca.pem", &pki.ca_pem);
        let maildir = TempDir::new("smtp-mail");
        let (proc, addr) = Self::spawn(&c, &k, maildir.path(), extra);
        Server {
            proc,
            addr,
            maildir,
            files,
            pki,
        }
    }

    fn spawn(cert: &Path, key: &Path, maildir: &Path, extra: &[&str]) -> (Proc, SocketAddr) {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--maildir",
            maildir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        start_server(&example_bin("smtp"), &args)
    }

    /// `kill -9`, then a new server on the same maildir (and a new port).
    fn kill9_and_restart(&mut self) {
        self.proc.signal(libc::SIGKILL);
        self.proc
            .wait_timeout(Duration::from_secs(10))
            .expect("no exit after SIGKILL");
        let (c, k) = (
            self.files.path().join("cert.pem"),
            self.files.path().join("key.pem"),
        );
        let (proc, addr) = Self::spawn(&c, &k, self.maildir.path(), &[]);
        self.proc = proc;
        self.addr = addr;
    }

    fn ca(&self) -> PathBuf {
        self.files.path().join("ca.pem")
    }

    fn client(&self) -> Client {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        let mut c = Client {
            s: Box::new(s),
            buf: Vec::new(),
        };
        assert!(c.reply().starts_with("220 "));
        c
    }

    /// Stored messages (contents), sorted.
    fn messages(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = files_under(&self.maildir.path().join("new"))
            .iter()
            .map(|p| std::fs::read(p).unwrap())
            .collect();
        v.sort();
        v
    }

    /// Every regular file anywhere under the maildir.
    fn all_files(&self) -> Vec<PathBuf> {
        files_under(self.maildir.path())
    }
}

fn files_under(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A line-oriented SMTP client over any stream.
struct Client {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
}

impl Client {
    fn send(&mut self, data: &[u8]) {
        self.s.write_all(data).unwrap();
        self.s.flush().unwrap();
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&l).into_owned());
            }
            let mut b = [0u8; 4096];
            match self.s.read(&mut b) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&b[..n]),
            }
        }
    }

    /// One complete (possibly multi-line) reply, lines joined.
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let l = self
                .line()
                .unwrap_or_else(|| panic!("connection closed; got {all:?}"));
            all.push_str(&l);
            if l.len() >= 4 && l.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    fn expect(&mut self, line: &str, code: &str) -> String {
        let r = self.cmd(line);
        assert!(r.starts_with(code), "{line:?} → {r:?}, expected {code}");
        r
    }

    /// Whether the server closed the connection (EOF, nothing more).
    fn closed(&mut self) -> bool {
        self.line().is_none()
    }

    /// STARTTLS, then a TLS client (rustls) verifying the server.
    fn starttls(mut self, pki: &Pki) -> Client {
        self.expect("STARTTLS", "220");
        assert!(self.buf.is_empty(), "data after the 220");
        Client {
            s: Box::new(rustls::StreamOwned::new(rustls_session(pki), self.s)),
            buf: Vec::new(),
        }
    }
}

fn send_mail(c: &mut Client, body: &[u8]) -> String {
    c.expect("MAIL FROM:<alice@example.org>", "250");
    c.expect("RCPT TO:<bob@example.net>", "250");
    c.expect("DATA", "354");
    c.send(body);
    c.send(b".\r\n");
    c.reply()
}

#[test]
fn session_basics_and_exact_storage() {
    let srv = Server::start(&[]);
    let mut c = srv.client();
    c.expect("MAIL FROM:<a@b>", "503"); // before EHLO
    let ehlo = c.expect("EHLO client.example", "250");
    assert!(ehlo.contains("250-") && ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.lines().last().unwrap().starts_with("250 "));
    c.expect("HELO client.example", "250");
    c.expect("NOOP", "250");
    c.expect("FROBNICATE", "500");
    c.expect("VRFY bob", "502");
    c.expect("RCPT TO:<x@y>", "503"); // before MAIL
    c.expect("MAIL FROM:<a@b>", "250");
    c.expect("DATA", "503"); // before RCPT
    c.expect("RSET", "250");
    c.expect("RCPT TO:<x@y>", "503"); // RSET dropped the MAIL
                                      // A body with dot-stuffed lines, 8-bit bytes and a last line with CRLF.
    let body: &[u8] = b"Subject: test\r\n\r\n..leading dot\r\n.\xff\xfe8bit\r\nend\r\n";
    let r = send_mail(&mut c, body);
    assert!(r.starts_with("250 "), "{r}");
    // Durable before the 250: the file is there the moment we read it.
    assert_eq!(
        srv.messages(),
        vec![b"Subject: test\r\n\r\n.leading dot\r\n\xff\xfe8bit\r\nend\r\n".to_vec()]
    );
    // The envelope sidecar.
    let env = files_under(&srv.maildir.path().join("envelope"));
    assert_eq!(env.len(), 1);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&env[0]).unwrap()).unwrap();
    assert_eq!(v["mail_from"], "alice@example.org");
    assert_eq!(v["rcpt_to"][0], "bob@example.net");
    assert_eq!(v["helo"], "client.example");
    assert_eq!(v["tls"], false);
    // Nothing left in tmp/.
    assert!(files_under(&srv.maildir.path().join("tmp")).is_empty());
    c.expect("QUIT", "221");
    assert!(c.closed());
}

#[test]
fn pipelined_transaction_and_large_message() {
    let srv = Server::start(&[]);
    let mut c = srv.client();
    c.expect("EHLO x", "250");
    c.send(b"MAIL FROM:<a@b> SIZE=100\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\n");
    for code in ["250", "250", "250", "354"] {
        let r = c.reply();
        assert!(r.starts_with(code), "{r}");
    }
    // 3 MiB of lines, some starting with a dot.
    let mut body = Vec::new();
    let mut i = 0u64;
    while body.len() < 3 << 20 {
        if i.is_multiple_of(7) {
            body.extend_from_slice(b".");
        }
        body.extend_from_slice(
            format!("line {i} {}\r\n", "x".repeat((i % 90) as usize)).as_bytes(),
        );
        i += 1;
    }
    let stuffed: Vec<u8> = body
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|l| {
            let mut v = Vec::new();
            if l.first() == Some(&b'.') {
                v.push(b'.');
            }
            v.extend_from_slice(l);
            v
        })
        .collect();
    c.send(&stuffed);
    c.send(b".\r\nNOOP\r\n");
    assert!(c.reply().starts_with("250 "));
    assert!(c.reply().starts_with("250 ")); // the pipelined NOOP, in order
    assert!(srv.messages() == vec![body]);
}

#[test]
fn starttls_resets_the_session_and_hides_starttls() {
    let srv = Server::start(&[]);
    let mut c = srv.client();
    c.expect("EHLO x", "250");
    c.expect("MAIL FROM:<before@tls>", "250");
    let mut c = c.starttls(&srv.pki);
    c.expect("MAIL FROM:<a@b>", "503"); // need a new EHLO
    let ehlo = c.expect("EHLO x", "250");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.expect("STARTTLS", "503"); // a second STARTTLS is refused
                                 // The MAIL from before TLS was forgotten: a new one is not "nested".
    let r = send_mail(&mut c, b"secret\r\n");
    assert!(r.starts_with("250 "), "{r}");
    assert_eq!(srv.messages(), vec![b"secret\r\n".to_vec()]);
    let env = files_under(&srv.maildir.path().join("envelope"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&env[0]).unwrap()).unwrap();
    assert_eq!(v["tls"], true);
    assert_eq!(v["mail_from"], "alice@example.org");
    c.expect("QUIT", "221");
}

#[test]
fn commands_pipelined_behind_starttls_are_never_executed() {
    let srv = Server::start(&[]);
    let mut c = srv.client();
    c.expect("EHLO x", "250");
    c.send(b"STARTTLS\r\nNOOP\r\n");
    let r = c.reply();
    assert!(r.starts_with("220 "), "{r}");
    // The NOOP went to the TLS engine as a bogus ClientHello: the server
    // fails the handshake (an alert at most) and closes — no 250.
    let mut rest = Vec::new();
    let _ = c.s.read_to_end(&mut rest);
    rest.splice(0..0, c.buf.drain(..));
    assert!(
        !rest.windows(3).any(|w| w == b"250"),
        "NOOP answered: {rest:?}"
    );
    assert!(rest.is_empty() || rest[0] == 21, "{rest:?}");
}

#[test]
fn require_tls_gives_530_before_starttls() {
    let srv = Server::start(&["--require-tls"]);
    let mut c = srv.client();
    c.expect("MAIL FROM:<a@b>", "530"); // 530 wins over 503
    c.expect("EHLO x", "250");
    c.expect("MAIL FROM:<a@b>", "530");
    c.expect("RCPT TO:<a@b>", "530");
    c.expect("DATA", "530");
    c.expect("NOOP", "250");
    c.expect("RSET", "250");
    let mut c = c.starttls(&srv.pki);
    c.expect("EHLO x", "250");
    assert!(send_mail(&mut c, b"ok\r\n").starts_with("250 "));
    assert_eq!(srv.messages().len(), 1);
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn over_long_lines_get_500_with_bounded_memory() {
    let srv = Server::start(&["--max-line", "100"]);
    let mut c = srv.client();
    c.expect("EHLO x", "250");
    // Exactly at the limit is fine; one more byte is not.
    c.expect(&format!("NOOP {}", "x".repeat(95)), "250");
    let r = c.cmd(&format!("NOOP {}", "x".repeat(96)));
    assert!(r.starts_with("500"), "{r}");
    // A 64 MiB line: the server must not buffer it.
    let before = rss_kib(srv.proc.child.id());
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        c.send(&chunk);
    }
    c.send(b"\r\n");
    let r = c.reply();
    assert!(r.starts_with("500"), "{r}");
    let after = rss_kib(srv.proc.child.id());
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // The session goes on.
    c.expect("NOOP", "250");
}

#[test]
fn idle_timeout_gives_421_and_stores_nothing() {
    let srv = Server::start(&["--idle-timeout", "1"]);
    // Idle at the prompt.
    let mut c = srv.client();
    let start = Instant::now();
    let r = c.reply();
    assert!(r.starts_with("421"), "{r}");
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(c.closed());
    // Activity restarts the period: keep talking for longer than one period.
    let mut c = srv.client();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        c.expect("NOOP", "250");
    }
    // Stalled inside DATA (and after STARTTLS): 421, nothing stored.
    c.expect("EHLO x", "250");
    let mut c = c.starttls(&srv.pki);
    c.expect("EHLO x", "250");
    c.expect("MAIL FROM:<a@b>", "250");
    c.expect("RCPT TO:<c@d>", "250");
    c.expect("DATA", "354");
    c.send(b"partial body\r\n");
    let r = c.reply();
    assert!(r.starts_with("421"), "{r}");
    assert!(srv.all_files().is_empty(), "{:?}", srv.all_files());
}

#[test]
fn disconnect_mid_data_leaves_nothing_behind() {
    let srv = Server::start(&[]);
    for tls in [false, true] {
        let mut c = srv.client();
        c.expect("EHLO x", "250");
        if tls {
            c = c.starttls(&srv.pki);
            c.expect("EHLO x", "250");
        }
        c.expect("MAIL FROM:<a@b>", "250");
        c.expect("RCPT TO:<c@d>", "250");
        c.expect("DATA", "354");
        c.send(&vec![b'z'; 200_000]);
        drop(c); // TCP close (under TLS: without close_notify)
    }
    // The server notices and cleans up: tmp/ empties, nothing in new/.
    let end = Instant::now() + WAIT;
    while !srv.all_files().is_empty() {
        assert!(Instant::now() < end, "left behind: {:?}", srv.all_files());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Still serving.
    let mut c = srv.client();
    c.expect("EHLO x", "250");
    assert!(send_mail(&mut c, b"after\r\n").starts_with("250 "));
    assert_eq!(srv.messages(), vec![b"after\r\n".to_vec()]);
}

#[test]
fn sigterm_finishes_data_in_flight_and_exits_zero() {
    let mut srv = Server::start(&[]);
    let mut idle = srv.client();
    let mut busy = srv.client();
    busy.expect("EHLO x", "250");
    busy.expect("MAIL FROM:<a@b>", "250");
    busy.expect("RCPT TO:<c@d>", "250");
    busy.expect("DATA", "354");
    busy.send(b"first half\r\n");
    srv.proc.signal(libc::SIGTERM);
    // The idle session is told and closed.
    let r = idle.reply();
    assert!(r.starts_with("421"), "{r}");
    assert!(idle.closed());
    // New connections are no longer served.
    let refused = match TcpStream::connect(srv.addr) {
        Err(_) => true,
        Ok(mut s) => {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut b = [0u8; 64];
            matches!(s.read(&mut b), Ok(0) | Err(_)) || b.starts_with(b"421")
        }
    };
    assert!(refused, "a connection made after SIGTERM was served");
    // The DATA under way completes: stored, 250, then 421.
    busy.send(b"second half\r\n.\r\n");
    let r = busy.reply();
    assert!(r.starts_with("250 "), "{r}");
    let r = busy.reply();
    assert!(r.starts_with("421"), "{r}");
    assert_eq!(
        srv.messages(),
        vec![b"first half\r\nsecond half\r\n".to_vec()]
    );
    let st = srv
        .proc
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit within 10 s of SIGTERM");
    assert!(st.success(), "{st:?}");
}

#[test]
fn openssl_s_client_starttls_smtp() {
    assert!(have("openssl"), "openssl is required");
    let srv = Server::start(&["--require-tls"]);
    let mut p = Proc::spawn(
        Command::new("openssl")
            .args([
                "s_client",
                "-starttls",
                "smtp",
                "-connect",
                &srv.addr.to_string(),
            ])
            .args([
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
                "-quiet",
            ])
            .arg("-CAfile")
            .arg(srv.ca())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    // s_client sends EHLO and STARTTLS itself; we talk over TLS.
    let script = "EHLO openssl\r\nMAIL FROM:<o@s>\r\nRCPT TO:<r@s>\r\nDATA\r\n";
    let mut stdin = p.child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).unwrap();
    let mut out = p.child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut b = [0u8; 1024];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Send the body once the 354 has arrived.
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("354") {
        seen.extend(rx.recv_timeout(WAIT).expect("no 354 from the server"));
    }
    stdin.write_all(b"via openssl\r\n.\r\nQUIT\r\n").unwrap();
    let st = p
        .wait_timeout(Duration::from_secs(10))
        .expect("s_client hung");
    let _ = st;
    while let Ok(more) = rx.recv_timeout(Duration::from_secs(2)) {
        seen.extend(more);
    }
    let out = String::from_utf8_lossy(&seen).into_owned();
    assert!(out.contains("354"), "{out}");
    assert!(out.contains("221"), "{out}");
    // Reply codes start a line; a queue id elsewhere may contain "530".
    assert!(!out.lines().any(|l| l.starts_with("530")), "{out}");
    assert_eq!(srv.messages(), vec![b"via openssl\r\n".to_vec()]);
}

#[test]
fn curl_sends_mail_with_ssl_reqd() {
    assert!(have("curl"), "curl is required");
    let srv = Server::start(&["--require-tls"]);
    let mail = srv.files.write(
        "mail.txt",
        "From: a@example.org\r\nSubject: curl\r\n\r\n.hello from curl\r\n",
    );
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--ssl-reqd", "--max-time", "10"])
        .arg("--cacert")
        .arg(srv.ca())
        .args([
            "--mail-from",
            "a@example.org",
            "--mail-rcpt",
            "b@example.net",
        ])
        .arg("--upload-file")
        .arg(&mail)
        .arg(format!("smtp://localhost:{}", srv.addr.port()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        srv.messages(),
        vec![b"From: a@example.org\r\nSubject: curl\r\n\r\n.hello from curl\r\n".to_vec()]
    );
}

#[test]
fn python_smtplib_with_starttls() {
    assert!(have("python3"), "python3 is required");
    let srv = Server::start(&[]);
    let script = r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
with smtplib.SMTP("localhost", int(sys.argv[1]), timeout=10) as s:
    s.ehlo()
    assert s.has_extn("starttls")
    s.starttls(context=ctx)
    s.ehlo()
    assert not s.has_extn("starttls")
    s.sendmail("py@example.org", ["one@example.net", "two@example.net"],
               b"Subject: py\r\n\r\n.dot\r\nbody\r\n")
print("sent")
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(srv.addr.port().to_string())
        .arg(srv.ca())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        srv.messages(),
        vec![b"Subject: py\r\n\r\n.dot\r\nbody\r\n".to_vec()]
    );
    let env = files_under(&srv.maildir.path().join("envelope"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&env[0]).unwrap()).unwrap();
    assert_eq!(v["rcpt_to"].as_array().unwrap().len(), 2);
    assert_eq!(v["tls"], true);
}

#[test]
fn kill_9_mid_data_leaves_no_temporaries_after_restart() {
    let mut srv = Server::start(&[]);
    let tmp = srv.maildir.path().join("tmp");
    // Two sessions killed mid-DATA: one with a body under way, one with
    // nothing sent after the 354 (an empty temporary).
    let mut a = srv.client();
    a.expect("EHLO x", "250");
    a.expect("MAIL FROM:<a@b>", "250");
    a.expect("RCPT TO:<c@d>", "250");
    a.expect("DATA", "354");
    a.send(&vec![b'z'; 300_000]);
    let mut b = srv.client();
    b.expect("EHLO x", "250");
    b.expect("MAIL FROM:<a@b>", "250");
    b.expect("RCPT TO:<c@d>", "250");
    b.expect("DATA", "354");
    // The server has the temporaries open (the 354 came after the create).
    assert_eq!(files_under(&tmp).len(), 2, "{:?}", files_under(&tmp));
    srv.kill9_and_restart();
    drop((a, b));
    assert!(
        files_under(&tmp).is_empty(),
        "left behind: {:?}",
        files_under(&tmp)
    );
    // And the restarted server delivers.
    let mut c = srv.client();
    c.expect("EHLO x", "250");
    assert!(send_mail(&mut c, b"after restart\r\n").starts_with("250 "));
    assert_eq!(srv.messages(), vec![b"after restart\r\n".to_vec()]);
    assert!(files_under(&tmp).is_empty(), "{:?}", files_under(&tmp));
}

#[test]
fn a_stalled_starttls_handshake_is_closed_at_the_idle_timeout() {
    // The idle timeout of 1 s must close the connection, with or without
    // part of a ClientHello — not the 10 s TLS handshake timeout, and not
    // the 5 s linger on top of the idle timeout (the fault found by fault
    // injection: closed at idle + 5 s), hence the bound of 4 s.
    let srv = Server::start(&["--idle-timeout", "1"]);
    // A whole ClientHello too: the server answers with its flight and then
    // waits for the client's.
    let mut tls = rustls_session(&srv.pki);
    let mut hello = Vec::new();
    tls.write_tls(&mut hello).unwrap();
    for sent in [&b""[..], b"\x16\x03\x01\x02\x00\x01", &hello] {
        let mut c = srv.client();
        c.expect("EHLO x", "250");
        c.expect("STARTTLS", "220");
        c.send(sent);
        let start = Instant::now();
        // Whatever the server's TLS engine sends, then EOF (or a reset).
        let mut b = [0u8; 4096];
        while matches!(c.s.read(&mut b), Ok(n) if n > 0) {}
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{} bytes sent: closed after {took:?} (idle timeout 1 s, linger 5 s, \
             handshake timeout 10 s)",
            sent.len()
        );
    }
}

#[test]
fn sigterm_gives_a_pipelining_client_every_reply_then_eof() {
    let mut srv = Server::start(&[]);
    let s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // NOOPs pipelined without pause, as fast as the server takes them.
    let writer = std::thread::spawn(move || {
        let burst = b"NOOP\r\n".repeat(512);
        let mut sent = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::Acquire) {
            if let Err(e) = w.write_all(&burst) {
                // Part of this burst may have gone out (and been answered).
                return (sent + 512, Some(e));
            }
            sent += 512;
        }
        (sent, None)
    });
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let mut ok = 0usize;
    let mut saw_421 = false;
    let end = loop {
        line.clear();
        match std::io::BufRead::read_line(&mut r, &mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => {
                if line.starts_with("250 ") && line.ends_with("\r\n") && !saw_421 {
                    ok += 1;
                    if ok == 20_000 {
                        // Stop reading for a while first: replies pile up on
                        // the server and NOOPs in the kernel buffers.
                        std::thread::sleep(Duration::from_millis(500));
                        srv.proc.signal(libc::SIGTERM);
                    }
                } else if line.starts_with("421 ") && !saw_421 && line.ends_with("\r\n") {
                    saw_421 = true;
                } else if !line.starts_with("220 ") {
                    panic!("unexpected line {line:?} after {ok} replies");
                }
            }
            Err(e) => break Err(e),
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Release);
    let _ = s.shutdown(std::net::Shutdown::Both);
    let (sent, write_error) = writer.join().unwrap();
    if let Err(e) = end {
        panic!("the client saw {e} after {ok} replies instead of EOF");
    }
    // A reset can pass for EOF when the writer's `send` takes the socket
    // error first; after our own shutdown the writer sees `BrokenPipe`.
    if let Some(e) = write_error.filter(|e| e.kind() == std::io::ErrorKind::ConnectionReset) {
        panic!("the server reset the connection: {e}");
    }
    assert!(ok >= 20_000 && ok <= sent, "{ok} replies to {sent} NOOPs");
    assert!(saw_421, "no 421 before the EOF");
    let st = srv
        .proc
        .wait_timeout(Duration::from_secs(10))
        .expect("no exit within 10 s of SIGTERM");
    assert!(st.success(), "{st:?}");
}
