//! What both comparison benches need from the host: the machine and source
//! description for the report, the open-files limit, building and copying
//! the server binaries, a temp dir that cleans up after itself.

use std::path::{Path, PathBuf};
use std::process::Command;

fn read_first(path: &str, key: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "{cores} CPUs ({}), {} RAM, Linux {}, {date}",
        read_first("/proc/cpuinfo", "model name"),
        read_first("/proc/meminfo", "MemTotal"),
        kernel.trim()
    )
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Raises the soft open-files limit to the hard one (servers inherit it).
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 0;
        }
        if rl.rlim_cur < rl.rlim_max {
            rl.rlim_cur = rl.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
            let _ = libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        }
        rl.rlim_cur
    }
}

/// `target/release/examples` next to this bench binary (which lives in
/// `target/release/deps`), so `CARGO_TARGET_DIR` is honoured.
pub fn examples_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("examples")))
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/examples")
        })
}

/// Builds the server examples (`cargo build --release --workspace
/// --example …`): they belong to two workspace members (netactor's own
/// examples, this package's peers), and `--workspace` finds each where it
/// lives.
pub fn build_examples(examples: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--release", "--workspace"]);
    for e in examples {
        cmd.args(["--example", e]);
    }
    eprintln!("building the servers: {cmd:?}");
    let st = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !st.success() {
        return Err(format!("cargo build failed: {st}"));
    }
    Ok(())
}

/// Copies the server binaries so the run uses one build of each.
pub fn snapshot_binaries(from: &Path, to: &Path, names: &[&str]) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for n in names {
        std::fs::copy(from.join(n), to.join(n))?;
    }
    Ok(())
}

/// The crypto library the binary at `bin` links, from its symbols' prefixes:
/// `aws-lc-rs` (netactor picks it whenever it is compiled in), else `ring`.
/// A TLS comparison needs the same one in every server: built on its own
/// (`cargo build -p netactor-examples`) the echo example links ring, while
/// the peers always link aws-lc-rs — and a full TLS 1.3 handshake costs
/// them differently (ring has no post-quantum key exchange).
pub fn crypto_of(bin: &Path) -> std::io::Result<&'static str> {
    let bytes = std::fs::read(bin)?;
    Ok(if memchr::memmem::find(&bytes, b"aws_lc_0_").is_some() {
        "aws-lc-rs"
    } else if memchr::memmem::find(&bytes, b"ring_core_0_").is_some() {
        "ring"
    } else {
        "none"
    })
}

/// The git revision and whether `src/` had uncommitted changes (read-only
/// git commands), so a result can be tied to the code it measured.
pub fn source_state() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(rev) => {
            let dirty = git(&[
                "status",
                "--porcelain",
                "--",
                "../src",
                "../examples",
                "examples",
            ])
            .is_some_and(|s| !s.is_empty());
            format!(
                "git {rev}{}",
                if dirty {
                    " + uncommitted changes in src/ or examples/"
                } else {
                    ""
                }
            )
        }
        None => "unknown (no git)".into(),
    }
}

/// The report's title and its first lines (command, machine, source).
pub fn report_header(bench: &str, command: &str) -> String {
    format!(
        "## {bench} results\n\n- command: `{command}`\n- machine: {}\n- source: {}\n",
        machine(),
        source_state()
    )
}

/// Where a bench writes, next to the examples in `built`
/// (`target/<profile>/examples`): the servers' log `{bench}-servers.log`
/// (emptied) and the report `{bench}.md`.
pub fn output_paths(built: &Path, bench: &str) -> (PathBuf, PathBuf) {
    let target = built
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("target"));
    let log = target.join(format!("{bench}-servers.log"));
    let _ = std::fs::remove_file(&log);
    (log, target.join(format!("{bench}.md")))
}

/// Prints the report and writes it to `path`.
pub fn publish(report: &str, path: &Path) {
    println!("\n{report}");
    match std::fs::write(path, report) {
        Ok(()) => eprintln!("written to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// Removes the temp dir on the way out (also on panic).
pub struct TempDir(pub PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
