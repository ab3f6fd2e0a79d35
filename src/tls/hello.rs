//! The SNI name from the start of a TLS stream (the client's first
//! ClientHello, RFC 8446 §4.1.2, RFC 6066 §3).
//!
//! rustls's unbuffered server connection has no `server_name()`, so the
//! session reads the name from the plaintext records before rustls
//! consumes them. It is only reported once rustls has accepted that
//! hello, so this needs to be right for valid hellos only, and never to
//! panic on others. It mirrors rustls: the first `host_name` entry of the
//! `server_name` extension; an IP address there counts as no name; a DNS
//! name is lower-cased.

use rustls::pki_types::ServerName;

/// What the bytes so far say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The ClientHello is not complete yet.
    More,
    /// The hello's SNI name, if it had a usable one.
    Done(Option<String>),
}

/// Stop looking after this much (rustls limits handshake messages to 64 KiB).
const MAX_SCAN: usize = 70 << 10;

/// Reads the SNI name from the first bytes a client sends, fed as they
/// arrive. Each byte is looked at once (records are joined as they
/// complete), so a hello dribbled in one byte at a time costs no more than
/// one sent whole.
#[derive(Debug, Default)]
pub(crate) struct HelloScan {
    /// The start of a record not yet complete.
    pending: Vec<u8>,
    /// The handshake payload of the complete records so far.
    msg: Vec<u8>,
    /// Bytes fed in all.
    fed: usize,
}

impl HelloScan {
    /// Takes the next bytes of the stream.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Scan {
        self.fed += data.len();
        self.pending.extend_from_slice(data);
        let mut pos = 0;
        let found = loop {
            let p = &self.pending[pos..];
            if p.len() < 5 {
                break None;
            }
            let len = u16::from_be_bytes([p[3], p[4]]) as usize;
            if p[0] == 21 && self.msg.is_empty() {
                // An alert before the hello (a warning rustls would
                // accept): not part of it.
                if p.len() < 5 + len {
                    break None;
                }
                pos += 5 + len;
                continue;
            }
            if p[0] != 22 {
                break Some(Scan::Done(None));
            }
            if p.len() < 5 + len {
                break None;
            }
            self.msg.extend_from_slice(&p[5..5 + len]);
            pos += 5 + len;
            if self.msg.len() >= 4 {
                if self.msg[0] != 1 {
                    break Some(Scan::Done(None));
                }
                let m = &self.msg;
                let need = 4 + ((m[1] as usize) << 16 | (m[2] as usize) << 8 | m[3] as usize);
                if m.len() >= need {
                    break Some(Scan::Done(client_hello_sni(&m[4..need])));
                }
            }
        };
        self.pending.drain(..pos);
        match found {
            Some(done) => done,
            None if self.fed > MAX_SCAN => Scan::Done(None),
            None => Scan::More,
        }
    }
}

/// What [`HelloScan::feed`] would say of `data`, the first bytes a client
/// sent, when its first record holds the whole hello (as a client's
/// single write does) or is no handshake record at all — read where it
/// is, with nothing copied or kept; `None` otherwise (the hello spans
/// records or has not all arrived, or an alert came first: feed it).
pub(crate) fn whole(data: &[u8]) -> Option<Scan> {
    // A record header first, as `feed` wants.
    let head = data.get(..5)?;
    if head[0] == 21 {
        return None;
    }
    if head[0] != 22 {
        return Some(Scan::Done(None));
    }
    let len = u16::from_be_bytes([head[3], head[4]]) as usize;
    let m = data.get(5..5 + len)?;
    if m.len() < 4 {
        return None;
    }
    if m[0] != 1 {
        return Some(Scan::Done(None));
    }
    let need = 4 + ((m[1] as usize) << 16 | (m[2] as usize) << 8 | m[3] as usize);
    let body = m.get(4..need)?;
    Some(Scan::Done(client_hello_sni(body)))
}

/// Reads the SNI name from `stream`, the first bytes a client sent.
#[cfg(test)]
pub(crate) fn sni(stream: &[u8]) -> Scan {
    HelloScan::default().feed(stream)
}

/// A cursor that fails (None) instead of running past the end.
struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn client_hello_sni(body: &[u8]) -> Option<String> {
    let mut r = Rd(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    let mut exts = Rd(r.vec16()?);
    while !exts.0.is_empty() {
        let typ = exts.u16()?;
        let data = exts.vec16()?;
        if typ != 0 {
            continue;
        }
        // The first entry decides: a host_name, or a type whose encoding
        // is unknown (rustls stops reading there too).
        let mut list = Rd(Rd(data).vec16()?);
        if list.u8()? != 0 {
            return None;
        }
        let name = list.vec16()?;
        return match ServerName::try_from(name).ok()? {
            // What `to_lowercase_owned` makes, in one allocation.
            ServerName::DnsName(d) => Some(d.as_ref().to_ascii_lowercase()),
            _ => None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{sni, HelloScan, Scan};

    /// A ClientHello handshake message with the given extensions.
    fn hello(exts: &[u8]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0]); // session id
        body.extend_from_slice(&[0, 2, 0x13, 0x01]); // one suite
        body.extend_from_slice(&[1, 0]); // null compression
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(exts);
        let mut m = vec![1, 0];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn sni_ext(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend_from_slice(&entry);
        let mut e = vec![0xff, 0x01, 0, 1, 0]; // another extension first
        e.extend_from_slice(&[0, 0]);
        e.extend_from_slice(&(list.len() as u16).to_be_bytes());
        e.extend_from_slice(&list);
        e
    }

    fn records(msg: &[u8], split: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in msg.chunks(split) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    #[test]
    fn finds_the_name_lower_cased_across_records() {
        let m = hello(&sni_ext(b"Mail.Example.COM"));
        for split in [m.len(), 7, 1] {
            let s = records(&m, split);
            for cut in 0..s.len() {
                assert_eq!(sni(&s[..cut]), Scan::More, "split {split} cut {cut}");
            }
            assert_eq!(sni(&s), Scan::Done(Some("mail.example.com".into())));
        }
    }

    #[test]
    fn no_name_for_an_ip_address_none_or_garbage() {
        let s = records(&hello(&sni_ext(b"127.0.0.1")), 4096);
        assert_eq!(sni(&s), Scan::Done(None));
        let s = records(&hello(&[]), 4096);
        assert_eq!(sni(&s), Scan::Done(None));
        assert_eq!(sni(b"GET / HTTP/1.1\r\n"), Scan::Done(None));
        let mut bad = hello(&sni_ext(b"x.example"));
        let n = bad.len();
        bad[n - 12] = 0xff; // a length that runs past the end
        assert_eq!(sni(&records(&bad, 4096)), Scan::Done(None));
    }

    #[test]
    fn fed_a_byte_at_a_time_finds_the_same_name() {
        let m = hello(&sni_ext(b"a.example"));
        for split in [m.len(), 3] {
            let s = records(&m, split);
            let mut scan = HelloScan::default();
            for (i, b) in s.iter().enumerate() {
                let r = scan.feed(std::slice::from_ref(b));
                if i + 1 < s.len() {
                    assert_eq!(r, Scan::More, "split {split} byte {i}");
                } else {
                    assert_eq!(r, Scan::Done(Some("a.example".into())));
                }
            }
            // Nothing is kept but the payload: the records are joined as
            // they complete.
            assert!(scan.pending.len() < 5 + split);
        }
    }

    /// The one-record fast path says what feeding the bytes says, for
    /// every cut and record split of a hello (and for garbage), or leaves
    /// it to the feed.
    #[test]
    fn a_whole_hello_is_read_in_place_as_feeding_it_would() {
        let mut streams = Vec::new();
        for name in [&b"Mail.Example.COM"[..], b"127.0.0.1", b"x"] {
            let m = hello(&sni_ext(name));
            for split in [m.len(), 40, 3] {
                streams.push(records(&m, split));
            }
        }
        streams.push(records(&hello(&[]), 4096));
        streams.push(b"GET / HTTP/1.1\r\n".to_vec());
        streams.push(vec![22, 3, 1, 0, 4, 2, 0, 0, 0]); // a ServerHello
        let mut warned = vec![21, 3, 1, 0, 2, 1, 0];
        warned.extend_from_slice(&records(&hello(&sni_ext(b"b.example")), 4096));
        streams.push(warned);
        let mut quick = 0;
        for s in &streams {
            for cut in 0..=s.len() {
                if let Some(r) = super::whole(&s[..cut]) {
                    assert_eq!(r, sni(&s[..cut]), "{s:?} cut {cut}");
                    quick += 1;
                }
            }
        }
        // The common case takes it: a hello in one record, whole.
        let one = records(&hello(&sni_ext(b"A.example")), 4096);
        assert_eq!(
            super::whole(&one),
            Some(Scan::Done(Some("a.example".into())))
        );
        assert!(quick > 0);
    }

    #[test]
    fn a_warning_alert_before_the_hello_is_skipped() {
        let mut s = vec![21, 3, 1, 0, 2, 1, 0]; // warning close... as rustls reads it
        s.extend_from_slice(&records(&hello(&sni_ext(b"b.example")), 50));
        assert_eq!(sni(&s), Scan::Done(Some("b.example".into())));
    }
}
