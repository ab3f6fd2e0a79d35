//! TLS 1.3 record keys that an idle connection gives back.
//!
//! Why: after its handshake an idle TLS connection holds little besides
//! rustls's state, and the largest part of that is the two AEAD contexts
//! (one per direction) the provider builds from the traffic keys: about
//! 1.2 KiB of the ~5 KiB a connection took with aws-lc-rs (its AES-GCM
//! contexts carry the expanded key and the GHASH table). They are needed
//! only while records flow.
//!
//! How: the cipher suites of netactor's own provider are wrapped (once per
//! process; [`wrap`]) so that rustls's encrypter and decrypter keep the raw
//! key (32 bytes at most, wiped when dropped) and build the AEAD context on
//! first use. The session collects the key slots its engine creates (a
//! thread-local list filled only while the session calls into rustls:
//! [`Collector`]), and the connection releases the contexts when it has
//! been idle for a while (`conn/actor/tls.rs`); the next record builds them
//! again (well under a microsecond).
//!
//! The record protection itself is the one rustls's providers implement
//! (RFC 8446 §5.2: nonce = IV ⊕ sequence number, the record header as
//! additional data, the content type inside), done with the same provider
//! crate's AEAD (`LessSafeKey`; rustls's aws-lc-rs provider uses aws-lc's
//! TLS key type, which also refuses a nonce that does not increase — a
//! check a key rebuilt mid-stream could not keep; rustls's record layer
//! numbers the records either way). Only rustls's public provider
//! interface is used. Not wrapped: TLS 1.2 suites, FIPS providers, and any
//! provider the application brings itself.

use parking_lot::Mutex;
use rustls::crypto::cipher::{
    make_tls13_aad, AeadKey, InboundOpaqueMessage, InboundPlainMessage, Iv, MessageDecrypter,
    MessageEncrypter, Nonce, OutboundOpaqueMessage, OutboundPlainMessage, PrefixedPayload,
    Tls13AeadAlgorithm, UnsupportedOperationError,
};
use rustls::crypto::CryptoProvider;
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion};
use rustls::{SupportedCipherSuite, Tls13CipherSuite};
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use zeroize::Zeroize;

/// An AEAD implementation from one provider crate.
trait Backend: Send + Sync + 'static {
    type Alg: Sync + 'static;
    type Key: Send + Sync + 'static;
    fn key(alg: &'static Self::Alg, key: &[u8]) -> Option<Self::Key>;
    fn tag_len(alg: &'static Self::Alg) -> usize;
    fn key_len(alg: &'static Self::Alg) -> usize;
    fn seal(k: &Self::Key, nonce: [u8; 12], aad: [u8; 5], buf: &mut PrefixedPayload) -> Option<()>;
    fn open(k: &Self::Key, nonce: [u8; 12], aad: [u8; 5], buf: &mut [u8]) -> Option<usize>;
}

/// One provider crate's AEAD: aws-lc-rs and ring share ring's API.
#[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
macro_rules! backend {
    ($name:ident, $krate:ident) => {
        struct $name;
        impl Backend for $name {
            type Alg = $krate::aead::Algorithm;
            type Key = $krate::aead::LessSafeKey;
            fn key(alg: &'static Self::Alg, key: &[u8]) -> Option<Self::Key> {
                let k = $krate::aead::UnboundKey::new(alg, key).ok()?;
                Some($krate::aead::LessSafeKey::new(k))
            }
            fn tag_len(alg: &'static Self::Alg) -> usize {
                alg.tag_len()
            }
            fn key_len(alg: &'static Self::Alg) -> usize {
                alg.key_len()
            }
            fn seal(
                k: &Self::Key,
                nonce: [u8; 12],
                aad: [u8; 5],
                buf: &mut PrefixedPayload,
            ) -> Option<()> {
                let nonce = $krate::aead::Nonce::assume_unique_for_key(nonce);
                k.seal_in_place_append_tag(nonce, $krate::aead::Aad::from(aad), buf)
                    .ok()
            }
            fn open(k: &Self::Key, nonce: [u8; 12], aad: [u8; 5], buf: &mut [u8]) -> Option<usize> {
                let nonce = $krate::aead::Nonce::assume_unique_for_key(nonce);
                k.open_in_place(nonce, $krate::aead::Aad::from(aad), buf)
                    .ok()
                    .map(|p| p.len())
            }
        }
    };
}

#[cfg(feature = "aws-lc-rs")]
backend!(AwsLc, aws_lc);
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
backend!(Ring, ring_aead);

/// What the connection holds of a key slot: it can release the context.
pub(crate) trait KeySlot: Send + Sync {
    /// Drops the AEAD context (if built); true if there was one.
    fn release(&self) -> bool;
    /// A sending key (else a receiving one).
    fn sends(&self) -> bool;
}

/// One direction's key (`SENDS`: the sending one): the raw material, and
/// the AEAD context while it is in use. The lock is only ever taken by the
/// connection's own turn (rustls calls in, or the release), so it is never
/// contended. 72 bytes with its reference counts: it stays with an idle
/// connection.
struct Slot<B: Backend, const SENDS: bool> {
    alg: &'static B::Alg,
    raw: [u8; 32],
    key: Mutex<Option<Box<B::Key>>>,
}

impl<B: Backend, const SENDS: bool> Slot<B, SENDS> {
    /// Runs `f` with the context, building it first if it was released.
    fn with<R>(&self, f: impl FnOnce(&B::Key) -> Option<R>) -> Option<R> {
        let mut k = self.key.lock();
        if k.is_none() {
            *k = Some(Box::new(B::key(
                self.alg,
                &self.raw[..B::key_len(self.alg)],
            )?));
        }
        f(k.as_ref()?)
    }
}

impl<B: Backend, const SENDS: bool> KeySlot for Slot<B, SENDS> {
    fn release(&self) -> bool {
        self.key.lock().take().is_some()
    }
    fn sends(&self) -> bool {
        SENDS
    }
}

impl<B: Backend, const SENDS: bool> Drop for Slot<B, SENDS> {
    fn drop(&mut self) {
        self.raw.zeroize();
    }
}

thread_local! {
    /// Set while a session calls into its engine.
    static COLLECTING: Cell<bool> = const { Cell::new(false) };
    /// `MADE` holds slots (most engine calls make none: only those that
    /// derive traffic keys do, and the list is then left alone).
    static ANY_MADE: Cell<bool> = const { Cell::new(false) };
    /// Key slots made while collecting, for the session to take.
    static MADE: RefCell<Vec<Arc<dyn KeySlot>>> = const { RefCell::new(Vec::new()) };
}

fn made(slot: Arc<dyn KeySlot>) {
    if COLLECTING.with(Cell::get) {
        MADE.with(|m| m.borrow_mut().push(slot));
        ANY_MADE.with(|a| a.set(true));
    }
}

/// The newest key of each direction a session's engine made.
#[derive(Default)]
pub(crate) struct Collector {
    send: Option<Arc<dyn KeySlot>>,
    recv: Option<Arc<dyn KeySlot>>,
    /// The contexts were released and nothing has run since.
    released: bool,
    /// The engine ran after a release (the connection woke from idle).
    woke: bool,
}

impl Collector {
    /// Runs `f` (a call into the engine), keeping the key slots it makes.
    pub(crate) fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // Also on a panic inside rustls (an application's verifier or key
        // log runs there; the worker survives it): nothing is left for the
        // next session on this thread to take.
        // The list is empty here: every call takes what it made, and one
        // that panicked leaves nothing.
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                COLLECTING.with(|c| c.set(false));
                if std::thread::panicking() && ANY_MADE.with(|a| a.replace(false)) {
                    MADE.with(|m| m.borrow_mut().clear());
                }
            }
        }
        COLLECTING.with(|c| c.set(true));
        let r = {
            let _reset = Reset;
            f()
        };
        if ANY_MADE.with(|a| a.replace(false)) {
            MADE.with(|m| {
                let mut m = m.borrow_mut();
                for s in m.drain(..) {
                    if s.sends() {
                        self.send = Some(s);
                    } else {
                        self.recv = Some(s);
                    }
                }
            });
        }
        self.woke |= self.released;
        self.released = false;
        r
    }

    /// Whether the engine ran after a release since the last call.
    pub(crate) fn take_woke(&mut self) -> bool {
        std::mem::take(&mut self.woke)
    }

    /// Whether the engine's keys can be released at all.
    pub(crate) fn has_keys(&self) -> bool {
        self.send.is_some() || self.recv.is_some()
    }

    /// Drops both AEAD contexts until the next record; true if any was held.
    pub(crate) fn release(&mut self) -> bool {
        let mut any = false;
        for s in [&self.send, &self.recv].into_iter().flatten() {
            any |= s.release();
        }
        self.released = true;
        any
    }

    /// Released, and no record has been through the engine since.
    pub(crate) fn is_released(&self) -> bool {
        self.released
    }
}

/// A TLS 1.3 AEAD whose contexts are built on first use.
struct Lazy<B: Backend> {
    alg: &'static B::Alg,
    /// The provider's own algorithm: key length, secret extraction, FIPS.
    inner: &'static dyn Tls13AeadAlgorithm,
}

impl<B: Backend> Lazy<B> {
    fn slot<const SENDS: bool>(&self, key: &AeadKey) -> Arc<Slot<B, SENDS>> {
        // rustls hands over exactly `key_len()` bytes (32 at most); they are
        // copied straight into the slot (no copy left on the stack).
        let k = key.as_ref();
        let mut slot = Arc::new(Slot {
            alg: self.alg,
            raw: [0u8; 32],
            key: Mutex::new(None),
        });
        if let Some(s) = Arc::get_mut(&mut slot) {
            s.raw[..k.len()].copy_from_slice(k);
        }
        made(slot.clone());
        slot
    }
}

impl<B: Backend> Tls13AeadAlgorithm for Lazy<B> {
    fn encrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageEncrypter> {
        Box::new(Seal {
            slot: self.slot::<true>(&key),
            iv,
        })
    }

    fn decrypter(&self, key: AeadKey, iv: Iv) -> Box<dyn MessageDecrypter> {
        Box::new(Open {
            slot: self.slot::<false>(&key),
            iv,
        })
    }

    fn key_len(&self) -> usize {
        self.inner.key_len()
    }

    fn extract_keys(
        &self,
        key: AeadKey,
        iv: Iv,
    ) -> Result<ConnectionTrafficSecrets, UnsupportedOperationError> {
        self.inner.extract_keys(key, iv)
    }

    fn fips(&self) -> bool {
        false
    }
}

struct Seal<B: Backend> {
    slot: Arc<Slot<B, true>>,
    iv: Iv,
}

struct Open<B: Backend> {
    slot: Arc<Slot<B, false>>,
    iv: Iv,
}

impl<B: Backend> MessageEncrypter for Seal<B> {
    fn encrypt(
        &mut self,
        msg: OutboundPlainMessage<'_>,
        seq: u64,
    ) -> Result<OutboundOpaqueMessage, rustls::Error> {
        let total_len = self.encrypted_payload_len(msg.payload.len());
        let mut payload = PrefixedPayload::with_capacity(total_len);
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(total_len);
        payload.extend_from_chunks(&msg.payload);
        payload.extend_from_slice(&msg.typ.to_array());
        self.slot
            .with(|k| B::seal(k, nonce, aad, &mut payload))
            .ok_or(rustls::Error::EncryptError)?;
        // TLS 1.3 records carry the legacy version 0x0303 (RFC 8446 §5.1).
        Ok(OutboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        ))
    }

    fn encrypted_payload_len(&self, payload_len: usize) -> usize {
        payload_len + 1 + B::tag_len(self.slot.alg)
    }
}

impl<B: Backend> MessageDecrypter for Open<B> {
    fn decrypt<'a>(
        &mut self,
        mut msg: InboundOpaqueMessage<'a>,
        seq: u64,
    ) -> Result<InboundPlainMessage<'a>, rustls::Error> {
        let payload = &mut msg.payload;
        if payload.len() < B::tag_len(self.slot.alg) {
            return Err(rustls::Error::DecryptError);
        }
        let nonce = Nonce::new(&self.iv, seq).0;
        let aad = make_tls13_aad(payload.len());
        let plain = self
            .slot
            .with(|k| B::open(k, nonce, aad, &mut payload[..]))
            .ok_or(rustls::Error::DecryptError)?;
        payload.truncate(plain);
        msg.into_tls13_unpadded_message()
    }
}

/// The lazy version of TLS 1.3 suite `s`, with backend `B` for its AEAD
/// (`None`: not an AEAD `B` is given here). Leaked: rustls wants `'static`
/// suites; made once per process ([`own_provider`]).
fn lazy_suite<B: Backend>(
    s: &'static Tls13CipherSuite,
    alg: impl Fn(rustls::CipherSuite) -> Option<&'static B::Alg>,
) -> Option<&'static Tls13CipherSuite> {
    let aead: &'static dyn Tls13AeadAlgorithm = Box::leak(Box::new(Lazy::<B> {
        alg: alg(s.common.suite)?,
        inner: s.aead_alg,
    }));
    Some(Box::leak(Box::new(Tls13CipherSuite {
        common: rustls::CipherSuiteCommon {
            suite: s.common.suite,
            hash_provider: s.common.hash_provider,
            confidentiality_limit: s.common.confidentiality_limit,
        },
        hkdf_provider: s.hkdf_provider,
        aead_alg: aead,
        quic: s.quic,
    })))
}

/// `provider` (built by the crate behind `B`) with its TLS 1.3 suites lazy.
#[allow(dead_code)] // without a provider feature
fn wrap<B: Backend>(
    mut provider: CryptoProvider,
    alg: impl Fn(rustls::CipherSuite) -> Option<&'static B::Alg> + Copy,
) -> CryptoProvider {
    for s in &mut provider.cipher_suites {
        if let SupportedCipherSuite::Tls13(t) = s {
            if let Some(w) = lazy_suite::<B>(t, alg) {
                *s = SupportedCipherSuite::Tls13(w);
            }
        }
    }
    provider
}

/// The compiled-in provider (aws-lc-rs, else ring) with lazy TLS 1.3 keys,
/// made once; `None` without either, or when it is a FIPS build. Used when
/// the application chose no provider (none passed to a builder, no process
/// default): a provider the application chose is used as it is.
pub(crate) fn own_provider() -> Option<Arc<CryptoProvider>> {
    #[cfg(any(feature = "aws-lc-rs", feature = "ring"))]
    use rustls::CipherSuite as Cs;
    static OWN: std::sync::OnceLock<Option<Arc<CryptoProvider>>> = std::sync::OnceLock::new();
    OWN.get_or_init(|| {
        #[cfg(feature = "aws-lc-rs")]
        let p = {
            use aws_lc::aead;
            let p = rustls::crypto::aws_lc_rs::default_provider();
            (!p.fips()).then(|| {
                wrap::<AwsLc>(p, |s| match s {
                    Cs::TLS13_AES_128_GCM_SHA256 => Some(&aead::AES_128_GCM),
                    Cs::TLS13_AES_256_GCM_SHA384 => Some(&aead::AES_256_GCM),
                    Cs::TLS13_CHACHA20_POLY1305_SHA256 => Some(&aead::CHACHA20_POLY1305),
                    _ => None,
                })
            })
        };
        #[cfg(all(not(feature = "aws-lc-rs"), feature = "ring"))]
        let p = {
            use ring_aead::aead;
            Some(wrap::<Ring>(
                rustls::crypto::ring::default_provider(),
                |s| match s {
                    Cs::TLS13_AES_128_GCM_SHA256 => Some(&aead::AES_128_GCM),
                    Cs::TLS13_AES_256_GCM_SHA384 => Some(&aead::AES_256_GCM),
                    Cs::TLS13_CHACHA20_POLY1305_SHA256 => Some(&aead::CHACHA20_POLY1305),
                    _ => None,
                },
            ))
        };
        #[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
        let p = None;
        p.map(Arc::new)
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in provider's TLS 1.3 suites are all wrapped, once per
    /// process; its TLS 1.2 ones are not.
    #[test]
    fn wraps_the_compiled_in_providers_tls13_suites_once() {
        let p = crate::tls::crypto_provider().unwrap();
        let a = own_provider().unwrap();
        let b = own_provider().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.cipher_suites.len(), p.cipher_suites.len());
        let mut tls13 = 0;
        for (o, x) in p.cipher_suites.iter().zip(&a.cipher_suites) {
            assert_eq!(o.suite(), x.suite());
            match (o, x) {
                (SupportedCipherSuite::Tls13(o), SupportedCipherSuite::Tls13(x)) => {
                    tls13 += 1;
                    assert!(
                        !std::ptr::eq(o.aead_alg, x.aead_alg),
                        "{:?}",
                        o.common.suite
                    );
                    assert_eq!(o.aead_alg.key_len(), x.aead_alg.key_len());
                }
                (SupportedCipherSuite::Tls12(o), SupportedCipherSuite::Tls12(x)) => {
                    assert!(std::ptr::eq(*o, *x));
                }
                _ => panic!("suite kinds differ"),
            }
        }
        assert!(tls13 >= 3, "{tls13} TLS 1.3 suites");
    }

    /// Key slots made by an engine call that panicked (an application's
    /// verifier runs inside rustls) are not handed to the next session on
    /// the thread; those of a call that returns are.
    #[test]
    fn a_panicking_engine_call_leaves_no_slots_behind() {
        let p = own_provider().unwrap();
        let aead = p
            .cipher_suites
            .iter()
            .find_map(|s| match s {
                SupportedCipherSuite::Tls13(t) => Some(t.aead_alg),
                _ => None,
            })
            .unwrap();
        let make = || {
            let enc = aead.encrypter(AeadKey::from([7u8; 32]), Iv::from([1u8; 12]));
            let dec = aead.decrypter(AeadKey::from([7u8; 32]), Iv::from([1u8; 12]));
            (enc, dec)
        };
        let mut dead = Collector::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dead.run(|| {
                let _keys = make();
                panic!("a verifier panicked");
            })
        }));
        assert!(r.is_err());
        let mut next = Collector::default();
        next.run(|| ());
        assert!(
            !next.has_keys(),
            "the next session took a dead engine's keys"
        );
        // Outside a session's call nothing is collected; inside, both are.
        let _outside = make();
        next.run(|| ());
        assert!(!next.has_keys());
        let _kept = next.run(make);
        assert!(next.send.is_some() && next.recv.is_some());
    }
}
