//! Addresses as users write them: `host:port`, `[v6]:port`, `host port`,
//! a bare IPv6 literal, `unix:PATH` — the reference's `parse_hostport`.
//!
//! A pure function with a table of tests; nothing here touches the network.

use crate::error::{Error, Result};
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// Where an address string points: a host and port to resolve and connect
/// to, or a Unix-domain socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPort {
    /// A host name or IP literal (IPv6 without brackets) and a port.
    Tcp {
        /// Host name, IPv4 literal or IPv6 literal (no brackets).
        host: String,
        /// Port number.
        port: u16,
    },
    /// `unix:PATH`, or a string starting with `/`.
    Unix(PathBuf),
}

impl HostPort {
    /// `host:port` in the form `std::net::ToSocketAddrs` accepts (IPv6
    /// literals bracketed).
    pub fn to_resolvable(&self) -> Option<String> {
        match self {
            HostPort::Tcp { host, port } if host.contains(':') => Some(format!("[{host}]:{port}")),
            HostPort::Tcp { host, port } => Some(format!("{host}:{port}")),
            HostPort::Unix(_) => None,
        }
    }
}

/// Parses an address the way the reference's `parse_hostport` does, with
/// numeric ports (service names are refused):
///
/// | input | result |
/// |---|---|
/// | `localhost:443`, `localhost 443`, `[localhost]:443` | `localhost`, 443 |
/// | `localhost` with default 443 | `localhost`, 443 |
/// | `::1` with default 80 | `::1`, 80 (an IPv6 literal alone) |
/// | `::1:80` with default 443 | `::1:80`, 443 (still one IPv6 literal) |
/// | `[::1]:80`, `[::1] 80`, `::1 80` | `::1`, 80 |
/// | `[::1]:`, `host:`, `:80`, `[::1`, `a:b:c` | `InvalidInput` |
/// | `unix:/run/x.sock`, `/run/x.sock` | the Unix socket path |
///
/// ```
/// use netactor::{parse_host_port, HostPort};
/// assert_eq!(
///     parse_host_port("[::1]:8080", None)?,
///     HostPort::Tcp { host: "::1".into(), port: 8080 }
/// );
/// assert_eq!(
///     parse_host_port("example.org", Some(443))?,
///     HostPort::Tcp { host: "example.org".into(), port: 443 }
/// );
/// assert!(parse_host_port("[::1]:", None).is_err());
/// # Ok::<(), netactor::Error>(())
/// ```
pub fn parse_host_port(s: &str, default_port: Option<u16>) -> Result<HostPort> {
    let bad = |why: &str| Error::InvalidInput(format!("address {s:?}: {why}"));
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(bad("empty Unix socket path"));
        }
        return Ok(HostPort::Unix(PathBuf::from(path)));
    }
    if s.starts_with('/') {
        return Ok(HostPort::Unix(PathBuf::from(s)));
    }
    let t = s.trim_start();
    // A leading IPv6 literal without brackets: the longest run of hex
    // digits, colons and dots with at least two colons that parses as one.
    let v6_len = t
        .find(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .unwrap_or(t.len());
    let (host, rest) =
        if t[..v6_len].matches(':').count() >= 2 && t[..v6_len].parse::<Ipv6Addr>().is_ok() {
            (&t[..v6_len], &t[v6_len..])
        } else if let Some(inner) = t.strip_prefix('[') {
            let end = inner.find(']').ok_or_else(|| bad("missing ']'"))?;
            let host = &inner[..end];
            if host.is_empty() || host.contains('[') {
                return Err(bad("empty or malformed bracketed host"));
            }
            (host, &inner[end + 1..])
        } else {
            let end = t
                .find(|c: char| c == ':' || c == '[' || c == ']' || c.is_whitespace())
                .unwrap_or(t.len());
            if end == 0 {
                return Err(bad("no host"));
            }
            (&t[..end], &t[end..])
        };
    // The port: after whitespace, ':' or '#', up to trailing whitespace.
    let port_text = if let Some(p) = rest
        .strip_prefix(':')
        .or_else(|| rest.strip_prefix('#'))
        .or_else(|| {
            let trimmed = rest.trim_start();
            (trimmed.len() < rest.len()).then_some(trimmed)
        }) {
        let p = p.trim_end();
        if p.is_empty() || p.contains(|c: char| c == ':' || c.is_whitespace()) {
            return Err(bad("malformed port"));
        }
        Some(p)
    } else if rest.trim().is_empty() {
        None
    } else {
        return Err(bad("unexpected text after the host"));
    };
    let port = match (port_text, default_port) {
        (Some(p), _) => p
            .parse::<u16>()
            .map_err(|_| bad("the port must be a number from 0 to 65535"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(bad("no port")),
    };
    Ok(HostPort::Tcp {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> HostPort {
        HostPort::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn the_reference_table() {
        let ok: &[(&str, Option<u16>, HostPort)] = &[
            ("localhost:443", None, tcp("localhost", 443)),
            ("localhost", Some(443), tcp("localhost", 443)),
            ("localhost 443", None, tcp("localhost", 443)),
            ("  localhost 443  ", None, tcp("localhost", 443)),
            ("::1#80", None, tcp("::1", 80)),
            ("[::1]#80", None, tcp("::1", 80)),
            ("[localhost]:443", None, tcp("localhost", 443)),
            ("127.0.0.1:80", None, tcp("127.0.0.1", 80)),
            ("127.0.0.1", Some(80), tcp("127.0.0.1", 80)),
            ("::1", Some(80), tcp("::1", 80)),
            ("::1:80", Some(443), tcp("::1:80", 443)),
            ("[::1]:80", None, tcp("::1", 80)),
            ("[::1] 80", None, tcp("::1", 80)),
            ("::1 80", None, tcp("::1", 80)),
            ("[::1]", Some(7), tcp("::1", 7)),
            ("[fe80::1%eth0]:7", None, tcp("fe80::1%eth0", 7)),
            ("::ffff:127.0.0.1", Some(1), tcp("::ffff:127.0.0.1", 1)),
            ("example.org:0", None, tcp("example.org", 0)),
            (
                "unix:/tmp/s.sock",
                None,
                HostPort::Unix("/tmp/s.sock".into()),
            ),
            ("/tmp/s.sock", None, HostPort::Unix("/tmp/s.sock".into())),
        ];
        for (input, default, want) in ok {
            assert_eq!(
                parse_host_port(input, *default).ok().as_ref(),
                Some(want),
                "{input:?} (default {default:?})"
            );
        }
        let bad: &[(&str, Option<u16>)] = &[
            ("[::1]:", None),
            ("localhost:", None),
            ("localhost", None),
            (":80", None),
            ("", Some(1)),
            ("[::1", None),
            ("[]:80", None),
            ("a:b:c", None),
            ("host:80:90", None),
            ("host:http", None),
            ("host:65536", None),
            ("host 80 90", None),
            ("unix:", None),
        ];
        for (input, default) in bad {
            match parse_host_port(input, *default) {
                Err(Error::InvalidInput(_)) => {}
                other => panic!("{input:?}: expected InvalidInput, got {other:?}"),
            }
        }
    }

    #[test]
    fn resolvable_forms_bracket_ipv6() {
        assert_eq!(tcp("::1", 80).to_resolvable().as_deref(), Some("[::1]:80"));
        assert_eq!(tcp("a.b", 80).to_resolvable().as_deref(), Some("a.b:80"));
    }
}
