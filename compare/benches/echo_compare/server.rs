//! The servers under test: separate processes (so their CPU time and RSS can
//! be read from /proc), started from the release example binaries and
//! killed when their guard drops — also on a panic, and by the kernel if
//! this driver dies (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Worker threads for every pooled server (the target machine has 2 cores).
pub const WORKERS: usize = 2;
/// Stack of the thread-per-connection server's threads, in KiB.
pub const THREAD_STACK_KIB: usize = 64;

/// The servers, in the order they run within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Netactor,
    Tokio,
    Mio,
    Thread,
    May,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Netactor,
        Kind::Tokio,
        Kind::Mio,
        Kind::Thread,
        Kind::May,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Netactor => "netactor",
            Kind::Tokio => "tokio",
            Kind::Mio => "mio",
            Kind::Thread => "thread",
            Kind::May => "may",
        }
    }

    /// The example that implements it.
    pub fn example(self) -> &'static str {
        match self {
            Kind::Netactor => "echo",
            Kind::Tokio => "peer_tokio_echo",
            Kind::Mio => "peer_mio_echo",
            Kind::Thread => "peer_thread_echo",
            Kind::May => "peer_may_echo",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Certificate and key files for the TLS scenario.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

impl Server {
    /// Starts `kind` from `dir` on an ephemeral loopback port and waits (at
    /// most `timeout`) for its `listening on` line. stderr goes to `log`.
    pub fn spawn(
        dir: &Path,
        kind: Kind,
        tls: Option<&TlsFiles>,
        log: &Path,
        timeout: Duration,
    ) -> io::Result<Server> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if kind == Kind::Thread {
            args.extend(["--stack".into(), THREAD_STACK_KIB.to_string().into()]);
        }
        // For experiments: extra flags for netactor's echo, e.g.
        // ECHO_COMPARE_NETACTOR_ARGS="--workers 1" (later flags win).
        if kind == Kind::Netactor {
            if let Ok(extra) = std::env::var("ECHO_COMPARE_NETACTOR_ARGS") {
                args.extend(extra.split_whitespace().map(Into::into));
            }
        }
        if let Some(t) = tls {
            args.extend([
                "--cert".into(),
                t.cert.clone().into(),
                "--key".into(),
                t.key.clone().into(),
            ]);
        }
        Server::start(&dir.join(kind.example()), &args, kind.name(), log, timeout)
    }

    /// Starts `bin --listen 127.0.0.1:0 --workers WORKERS ARGS…` and waits
    /// (at most `timeout`) for its `listening on` line. stderr goes to `log`.
    pub fn start(
        bin: &Path,
        args: &[std::ffi::OsString],
        name: &str,
        log: &Path,
        timeout: Duration,
    ) -> io::Result<Server> {
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--workers"])
            .arg(WORKERS.to_string())
            .args(args);
        let err = File::options().create(true).append(true).open(log)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .env_remove("RUST_LOG");
        // For debugging a server: ECHO_COMPARE_RUST_LOG=debug becomes its RUST_LOG.
        if let Ok(v) = std::env::var("ECHO_COMPARE_RUST_LOG") {
            cmd.env("RUST_LOG", v);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // it makes the kernel kill the server if the driver dies first.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bin.display())))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        // Read the first line on a helper thread (so the wait is bounded),
        // then keep draining so the server can never block on stdout.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let mut server = Server {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = match rx.recv_timeout(timeout) {
            Ok(Some(Ok(l))) => l,
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{name} exited before listening (see {})",
                    log.display()
                )))
            }
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{name} did not print `listening on` in {timeout:?}"),
                ))
            }
        };
        server.addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("{name}: unexpected first line {line:?}")))?;
        Ok(server)
    }

    fn proc_file(&self, name: &str) -> io::Result<String> {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.pid))
    }

    /// User + system CPU seconds of the whole process (all threads).
    pub fn cpu_secs(&self) -> io::Result<f64> {
        let stat = self.proc_file("stat")?;
        // Fields after the command name (which may hold spaces) start at
        // field 3 (state); utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, r)| r)
            .ok_or_else(|| io::Error::other("bad /proc/PID/stat"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| -> io::Result<f64> {
            f.get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v as f64)
                .ok_or_else(|| io::Error::other("bad /proc/PID/stat field"))
        };
        Ok((num(11)? + num(12)?) / clk_tck())
    }

    /// Resident set size in bytes.
    pub fn rss_bytes(&self) -> io::Result<u64> {
        let status = self.proc_file("status")?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
    }

    /// Open file descriptors (accepted connections show up here).
    pub fn fd_count(&self) -> io::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/fd", self.pid))?.count())
    }

    /// Fails if the server has exited.
    pub fn check_alive(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(st) => Err(io::Error::other(format!("server exited: {st}"))),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
