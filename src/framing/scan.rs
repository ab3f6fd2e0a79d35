//! Resumable regex scanning over a read buffer that grows at the back.
//!
//! Shared by [`Regex`](super::Regex) and [`Line::with_eol_regex`](super::Line::with_eol_regex).
//!
//! Why not `regex::bytes::Regex::find` on the buffer: a read buffer is a
//! prefix of a stream, and `find` answers for the prefix as if it were the
//! whole haystack. A leftmost-first match found in a prefix can change when
//! more bytes arrive, even if it ends before the end of the buffer (`ab*c|a`
//! finds `a` in `abb`, but `abbc` in `abbc`), and rescanning the whole buffer
//! on every arrival is quadratic for a slow peer. So the patterns are compiled
//! to regex-automata's lazy DFA (the engine inside `regex`, linear time) and
//! walked one byte at a time, keeping the DFA state between calls; a result
//! is reported only once no continuation of the stream can change it:
//!
//! - the DFA went dead after a match (nothing can extend or pre-empt it), or
//! - the end of the buffer is *settled*: whatever the next byte is, the match
//!   status at the buffer end is the same as at end-of-stream and nothing
//!   after it can match (this is what lets `\r\n\r\n` complete at once
//!   instead of waiting for one more byte), or
//! - the stream ended (`eof`).
//!
//! Lazy DFA state ids are invalidated when its cache is cleared; a scan that
//! notices a clear it cannot account for rescans the window from its start.

use crate::error::Error;
use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::hybrid::LazyStateID;
use regex_automata::nfa::thompson;
use regex_automata::util::{start, syntax};
use regex_automata::{Anchored, MatchKind};

/// How many distinct successor states the end-of-buffer check examines before
/// it gives up and waits for more bytes (a conservative, always-correct answer).
const SETTLE_FANOUT: usize = 8;

/// One compiled pattern.
#[derive(Debug)]
pub(crate) struct Pattern {
    dfa: DFA,
    /// One byte from each byte equivalence class of the DFA.
    reps: Vec<u8>,
    source: String,
    /// The pattern is one literal string (`\r\n\r\n`, `END`, …): its
    /// first occurrence is its leftmost-first match, final as soon as it is
    /// seen (nothing can extend or pre-empt it), so a SIMD substring search
    /// (memchr's memmem) finds it instead of the DFA stepped byte by byte.
    literal: Option<memchr::memmem::Finder<'static>>,
}

/// The string `pattern` matches exactly, if it is a plain literal (the
/// parser folds concatenated literal characters and escapes into one).
fn exact_literal(pattern: &str) -> Option<Vec<u8>> {
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    match hir.kind() {
        regex_syntax::hir::HirKind::Literal(lit) if !lit.0.is_empty() => Some(lit.0.to_vec()),
        _ => None,
    }
}

impl Pattern {
    /// Compiles `pattern` with `regex::bytes` syntax.
    ///
    /// `LeftmostFirst` gives `regex`'s own match semantics (used for accept
    /// patterns, where the match end matters); `All` reports every position
    /// where some match ends (used where only the earliest end matters).
    pub(crate) fn new(pattern: &str, kind: MatchKind) -> Result<Pattern, Error> {
        let dfa = DFA::builder()
            .configure(DFA::config().match_kind(kind))
            // As regex::bytes: patterns may match arbitrary bytes.
            .syntax(syntax::Config::new().utf8(false))
            .thompson(thompson::Config::new().utf8(false))
            .build(pattern)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "regex {pattern:?} cannot be used for stream framing: {e} \
                     (Unicode \\b is not supported; use (?-u:\\b))"
                ))
            })?;
        let reps = dfa
            .byte_classes()
            .representatives(..)
            .filter_map(|u| u.as_u8())
            .collect();
        let literal = match kind {
            MatchKind::LeftmostFirst => {
                exact_literal(pattern).map(|lit| memchr::memmem::Finder::new(&lit).into_owned())
            }
            _ => None,
        };
        Ok(Pattern {
            dfa,
            reps,
            source: pattern.to_owned(),
            literal,
        })
    }

    /// The pattern text.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }
}

/// What a byte step says about the position just before that byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    /// A match ends at that position.
    pub matched: bool,
    /// No match can end at any later position.
    pub dead: bool,
}

/// What is known about the end of the buffer without the next byte.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AtEnd {
    /// A match ends at the end of the buffer, whatever follows.
    pub matched: bool,
    /// No match can end after the end of the buffer, whatever follows.
    pub settled: bool,
}

/// The walk of one pattern over one window.
#[derive(Clone, Debug)]
pub(crate) struct Scanner {
    cache: Cache,
    sid: LazyStateID,
    /// `sid` may be invalid (the cache was cleared while it was not the
    /// state being stepped): the window must be rescanned.
    stale: bool,
}

fn gave_up() -> Error {
    Error::BadMessage("regex engine gave up".into())
}

impl Scanner {
    pub(crate) fn new(p: &Pattern) -> Result<Scanner, Error> {
        let mut cache = p.dfa.create_cache();
        let sid = Self::start(p, &mut cache)?;
        Ok(Scanner {
            cache,
            sid,
            stale: false,
        })
    }

    fn start(p: &Pattern, cache: &mut Cache) -> Result<LazyStateID, Error> {
        // No look-behind byte: `^` matches at the start of every window.
        p.dfa
            .start_state(cache, &start::Config::new().anchored(Anchored::No))
            .map_err(|_| gave_up())
    }

    /// Back to the start state, for a new window.
    pub(crate) fn restart(&mut self, p: &Pattern) -> Result<(), Error> {
        self.sid = Self::start(p, &mut self.cache)?;
        self.stale = false;
        Ok(())
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.stale
    }

    /// Consumes one byte.
    #[inline]
    pub(crate) fn step(&mut self, p: &Pattern, byte: u8) -> Result<Step, Error> {
        // A cache clear inside next_state keeps the state being stepped from,
        // and the returned id is valid: nothing to track here.
        let next = p
            .dfa
            .next_state(&mut self.cache, self.sid, byte)
            .map_err(|_| gave_up())?;
        self.sid = next;
        if next.is_tagged() {
            if next.is_quit() {
                return Err(gave_up());
            }
            return Ok(Step {
                matched: next.is_match(),
                dead: next.is_dead(),
            });
        }
        Ok(Step {
            matched: false,
            dead: false,
        })
    }

    /// Whether a match ends at the end of the stream (after all consumed bytes).
    /// Leaves the scanner where it was (marked stale if its state was lost).
    pub(crate) fn at_eof(&mut self, p: &Pattern) -> Result<bool, Error> {
        let clears = self.cache.clear_count();
        let e = p
            .dfa
            .next_eoi_state(&mut self.cache, self.sid)
            .map_err(|_| gave_up())?;
        if self.cache.clear_count() != clears {
            self.stale = true;
        }
        Ok(e.is_match())
    }

    /// Examines the end of the buffer without consuming anything. `None`: it
    /// depends on bytes not yet received (or the state was lost to a cache
    /// clear, see [`Scanner::is_stale`]).
    pub(crate) fn at_end(&mut self, p: &Pattern) -> Result<Option<AtEnd>, Error> {
        let clears = self.cache.clear_count();
        let r = self.at_end_inner(p, clears);
        if self.cache.clear_count() != clears {
            self.stale = true;
            return Ok(None);
        }
        r
    }

    fn at_end_inner(&mut self, p: &Pattern, clears: usize) -> Result<Option<AtEnd>, Error> {
        let dfa = &p.dfa;
        let cur = self.sid;
        if cur.is_dead() {
            return Ok(Some(AtEnd {
                matched: false,
                settled: true,
            }));
        }
        let eoi = dfa
            .next_eoi_state(&mut self.cache, cur)
            .map_err(|_| gave_up())?;
        let matched = eoi.is_match();
        let mut settled = true;
        let mut seen: Vec<LazyStateID> = Vec::new();
        for &b in &p.reps {
            let t = dfa
                .next_state(&mut self.cache, cur, b)
                .map_err(|_| gave_up())?;
            if self.cache.clear_count() != clears {
                return Ok(None);
            }
            // Look-ahead at the end (`$`, `\b`) would make the answer depend
            // on the next byte.
            if t.is_match() != matched {
                return Ok(None);
            }
            if !settled || t.is_dead() || seen.contains(&t) {
                continue;
            }
            if seen.len() == SETTLE_FANOUT {
                settled = false;
                continue;
            }
            seen.push(t);
            // `t` is the state one byte past the end: settled if no byte and
            // not the end of stream can produce a match from there.
            let t_eoi = dfa
                .next_eoi_state(&mut self.cache, t)
                .map_err(|_| gave_up())?;
            if self.cache.clear_count() != clears {
                return Ok(None);
            }
            if t_eoi.is_match() {
                settled = false;
                continue;
            }
            for &c in &p.reps {
                let u = dfa
                    .next_state(&mut self.cache, t, c)
                    .map_err(|_| gave_up())?;
                if self.cache.clear_count() != clears {
                    return Ok(None);
                }
                if !u.is_dead() {
                    settled = false;
                    break;
                }
            }
        }
        Ok(Some(AtEnd { matched, settled }))
    }
}

/// The patterns of one regex read.
#[derive(Debug)]
pub(crate) struct Patterns {
    pub accept: Pattern,
    pub reject: Option<Pattern>,
    pub skip: Option<Pattern>,
}

/// A decision about the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The accept pattern's leftmost-first match ends at `end` (absolute
    /// offset in the buffer; bytes skipped before it belong to the frame).
    Accept { end: usize },
    /// The reject pattern matched first, ending at `end` (absolute).
    Reject { end: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No pattern has matched in the window yet.
    Searching,
    /// Accept matched (its earliest end is known); following it to the
    /// end of its leftmost-first match. `last` is window-relative.
    Committed { last: usize },
}

/// The resumable state of an accept/reject/skip scan.
///
/// Semantics (prefix-stable, so the same whatever the stream's split into
/// reads): the window starts at the front of the buffer; positions are
/// examined in stream order; at the first position where some pattern's
/// match ends, accept wins over reject, reject over skip. An accept then
/// extends to the end of its leftmost-first match. A skip (of at least one
/// byte) moves the window start to its end: later matches begin there, and
/// `^` matches there.
#[derive(Clone, Debug)]
pub(crate) struct Engine {
    accept: Scanner,
    reject: Option<Scanner>,
    skip: Option<Scanner>,
    /// Window start (absolute offset in the buffer).
    win: usize,
    /// Window bytes consumed by the scanners.
    pos: usize,
    phase: Phase,
    accept_dead: bool,
    reject_dead: bool,
    skip_dead: bool,
}

impl Engine {
    pub(crate) fn new(p: &Patterns) -> Result<Engine, Error> {
        Ok(Engine {
            accept: Scanner::new(&p.accept)?,
            reject: p.reject.as_ref().map(Scanner::new).transpose()?,
            skip: p.skip.as_ref().map(Scanner::new).transpose()?,
            win: 0,
            pos: 0,
            phase: Phase::Searching,
            accept_dead: false,
            reject_dead: p.reject.is_none(),
            skip_dead: p.skip.is_none(),
        })
    }

    /// Forgets everything: the next scan starts at the front of the buffer.
    pub(crate) fn reset(&mut self, p: &Patterns) -> Result<(), Error> {
        self.win = 0;
        self.rewind(p)
    }

    /// Rescans the current window from its start.
    fn rewind(&mut self, p: &Patterns) -> Result<(), Error> {
        self.pos = 0;
        self.phase = Phase::Searching;
        self.accept.restart(&p.accept)?;
        self.accept_dead = false;
        if let (Some(s), Some(pat)) = (self.reject.as_mut(), p.reject.as_ref()) {
            s.restart(pat)?;
        }
        self.reject_dead = p.reject.is_none();
        if let (Some(s), Some(pat)) = (self.skip.as_mut(), p.skip.as_ref()) {
            s.restart(pat)?;
        }
        self.skip_dead = p.skip.is_none();
        Ok(())
    }

    fn stale(&self) -> bool {
        self.accept.is_stale()
            || self.reject.as_ref().is_some_and(Scanner::is_stale)
            || self.skip.as_ref().is_some_and(Scanner::is_stale)
    }

    /// Scans what is new in `buf`. `Ok(None)`: undecided, more bytes needed.
    ///
    /// A decision never needs more than `max + 1` bytes: a frame would end
    /// beyond `max` otherwise, which is reported as [`Error::NoSpace`] by the
    /// caller when this returns `Err(Limit)`.
    pub(crate) fn poll(
        &mut self,
        p: &Patterns,
        buf: &[u8],
        eof: bool,
        max: usize,
    ) -> Result<Option<Decision>, Halt> {
        if self.win + self.pos > buf.len() {
            // The buffer shrank under us (a contract breach by the caller):
            // start over rather than index out of bounds.
            self.reset(p)?;
        }
        if let (Some(lit), None, None) = (&p.accept.literal, &p.reject, &p.skip) {
            return self.poll_literal(lit, buf, max);
        }
        if self.stale() {
            self.rewind(p)?;
        }
        loop {
            match self.scan(p, buf, eof, max)? {
                Scan::Decided(d) => return Ok(Some(d)),
                Scan::Pending => return Ok(None),
                Scan::Skip(end) => {
                    // `end` is window-relative and > 0.
                    self.win += end;
                    self.rewind(p)?;
                }
            }
        }
    }

    /// [`poll`](Self::poll) for an accept pattern that is one literal and
    /// nothing else: the same decisions, found by substring search. `pos`
    /// is where the next search starts (a match cannot start earlier).
    fn poll_literal(
        &mut self,
        lit: &memchr::memmem::Finder<'_>,
        buf: &[u8],
        max: usize,
    ) -> Result<Option<Decision>, Halt> {
        let n = lit.needle().len();
        let w = &buf[self.win..];
        let limit = max.saturating_sub(self.win);
        // Only matches ending at `limit` or before may end a frame.
        let upto = w.len().min(limit);
        let from = self.pos.min(upto);
        if let Some(i) = lit.find(&w[from..upto]) {
            let end = from + i + n;
            self.pos = 0;
            return Ok(Some(Decision::Accept {
                end: self.win + end,
            }));
        }
        if w.len() > limit {
            return Err(Halt::Limit);
        }
        // Searched up to here: a match can only start in the last n-1 bytes.
        self.pos = upto.saturating_sub(n - 1);
        Ok(None)
    }

    fn scan(&mut self, p: &Patterns, buf: &[u8], eof: bool, max: usize) -> Result<Scan, Halt> {
        let w = &buf[self.win..];
        // Window position i is decided by stepping window byte i (matches are
        // reported one byte late, so look-ahead assertions can be checked).
        // Positions up to `limit` may end a frame.
        let limit = max.saturating_sub(self.win);
        while self.pos < w.len() {
            let at = self.pos;
            if at > limit {
                // Only a committed accept may look one byte past the limit,
                // to learn that its match is over.
                return match self.phase {
                    Phase::Searching => Err(Halt::Limit),
                    Phase::Committed { .. } => {
                        let s = self.accept.step(&p.accept, w[at])?;
                        self.pos += 1;
                        if s.dead && !s.matched {
                            Ok(self.accepted())
                        } else {
                            Err(Halt::Limit)
                        }
                    }
                };
            }
            let b = w[at];
            self.pos += 1;
            match self.phase {
                Phase::Committed { .. } => {
                    let s = self.accept.step(&p.accept, b)?;
                    if s.matched {
                        self.phase = Phase::Committed { last: at };
                    }
                    if s.dead {
                        return Ok(self.accepted());
                    }
                }
                Phase::Searching => {
                    let mut reject_at = false;
                    let mut skip_at = false;
                    if !self.accept_dead {
                        let s = self.accept.step(&p.accept, b)?;
                        if s.matched {
                            self.phase = Phase::Committed { last: at };
                            if s.dead {
                                return Ok(self.accepted());
                            }
                            continue;
                        }
                        self.accept_dead = s.dead;
                    }
                    if let (false, Some(sc), Some(pat)) =
                        (self.reject_dead, self.reject.as_mut(), p.reject.as_ref())
                    {
                        let s = sc.step(pat, b)?;
                        reject_at = s.matched;
                        self.reject_dead = s.dead;
                    }
                    if let (false, Some(sc), Some(pat)) =
                        (self.skip_dead, self.skip.as_mut(), p.skip.as_ref())
                    {
                        let s = sc.step(pat, b)?;
                        skip_at = s.matched && at > 0;
                        self.skip_dead = s.dead;
                    }
                    if reject_at {
                        return Ok(Scan::Decided(Decision::Reject { end: self.win + at }));
                    }
                    if skip_at {
                        return Ok(Scan::Skip(at));
                    }
                    if self.accept_dead && self.reject_dead && self.skip_dead {
                        return Err(Halt::NoMatch);
                    }
                }
            }
        }
        // Every buffered byte is consumed: what about the position at the end?
        let at = w.len();
        if at > limit {
            // One past the limit (the loop stops there): only a committed
            // accept whose match is over can still complete.
            return match self.phase {
                Phase::Searching => Err(Halt::Limit),
                Phase::Committed { .. } if eof => {
                    if self.accept.at_eof(&p.accept)? {
                        Err(Halt::Limit)
                    } else {
                        Ok(self.accepted())
                    }
                }
                Phase::Committed { .. } => match self.accept.at_end(&p.accept)? {
                    Some(e) if e.settled && !e.matched => Ok(self.accepted()),
                    Some(e) if e.settled || e.matched => Err(Halt::Limit),
                    _ => Ok(Scan::Pending),
                },
            };
        }
        if eof {
            return self.decide_at_eof(p, at);
        }
        match self.phase {
            Phase::Committed { last } => match self.accept.at_end(&p.accept)? {
                Some(e) if e.settled => {
                    let end = if e.matched { at } else { last };
                    Ok(Scan::Decided(Decision::Accept {
                        end: self.win + end,
                    }))
                }
                _ => Ok(Scan::Pending),
            },
            Phase::Searching => {
                if !self.accept_dead {
                    match self.accept.at_end(&p.accept)? {
                        None => return Ok(Scan::Pending),
                        Some(e) if e.matched => {
                            if e.settled {
                                return Ok(Scan::Decided(Decision::Accept { end: self.win + at }));
                            }
                            self.phase = Phase::Committed { last: at };
                            return Ok(Scan::Pending);
                        }
                        Some(_) => {}
                    }
                }
                if let (false, Some(sc), Some(pat)) =
                    (self.reject_dead, self.reject.as_mut(), p.reject.as_ref())
                {
                    match sc.at_end(pat)? {
                        None => return Ok(Scan::Pending),
                        Some(e) if e.matched => {
                            return Ok(Scan::Decided(Decision::Reject { end: self.win + at }))
                        }
                        Some(_) => {}
                    }
                }
                if let (false, Some(sc), Some(pat)) =
                    (self.skip_dead, self.skip.as_mut(), p.skip.as_ref())
                {
                    if at > 0 {
                        if let Some(e) = sc.at_end(pat)? {
                            if e.matched {
                                return Ok(Scan::Skip(at));
                            }
                        }
                    }
                }
                Ok(Scan::Pending)
            }
        }
    }

    fn decide_at_eof(&mut self, p: &Patterns, at: usize) -> Result<Scan, Halt> {
        match self.phase {
            Phase::Committed { last } => {
                let end = if self.accept.at_eof(&p.accept)? {
                    at
                } else {
                    last
                };
                Ok(Scan::Decided(Decision::Accept {
                    end: self.win + end,
                }))
            }
            Phase::Searching => {
                if !self.accept_dead && self.accept.at_eof(&p.accept)? {
                    return Ok(Scan::Decided(Decision::Accept { end: self.win + at }));
                }
                if let (false, Some(sc), Some(pat)) =
                    (self.reject_dead, self.reject.as_mut(), p.reject.as_ref())
                {
                    if sc.at_eof(pat)? {
                        return Ok(Scan::Decided(Decision::Reject { end: self.win + at }));
                    }
                }
                if let (false, Some(sc), Some(pat)) =
                    (self.skip_dead, self.skip.as_mut(), p.skip.as_ref())
                {
                    if at > 0 && sc.at_eof(pat)? {
                        return Ok(Scan::Skip(at));
                    }
                }
                Ok(Scan::Pending)
            }
        }
    }

    fn accepted(&self) -> Scan {
        match self.phase {
            Phase::Committed { last } => Scan::Decided(Decision::Accept {
                end: self.win + last,
            }),
            // Only called in the committed phase.
            Phase::Searching => Scan::Pending,
        }
    }
}

enum Scan {
    Decided(Decision),
    Pending,
    /// Skip the window up to this window-relative offset (> 0).
    Skip(usize),
}

/// Why a scan cannot go on.
#[derive(Debug)]
pub(crate) enum Halt {
    /// A decision would need bytes beyond the frame limit.
    Limit,
    /// No pattern can match any more in this window.
    NoMatch,
    /// The engine failed.
    Engine(Error),
}

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Engine(e)
    }
}

#[cfg(test)]
mod literal_tests {
    use super::exact_literal;

    #[test]
    fn plain_literals_are_recognised_and_nothing_else() {
        assert_eq!(
            exact_literal(r"\r\n\r\n").as_deref(),
            Some(&b"\r\n\r\n"[..])
        );
        assert_eq!(exact_literal("END").as_deref(), Some(&b"END"[..]));
        assert_eq!(exact_literal(r"a\.b").as_deref(), Some(&b"a.b"[..]));
        assert_eq!(
            exact_literal(r"(?-u:\xff)\n").as_deref(),
            Some(&b"\xff\n"[..])
        );
        for not in ["a+", "(?i)end", "a|b", "^END", r"x\b", "", "a.b", r"\d"] {
            assert_eq!(exact_literal(not), None, "{not}");
        }
    }
}
