#![no_main]
use libfuzzer_sys::fuzz_target;
use netactor::framing::Regex;
use netactor_fuzz::{check, Input};

/// (accept, reject, skip): none matches the empty string (an empty frame
/// takes no bytes, so its count legitimately depends on the read pattern).
const SETS: [(&str, Option<&str>, Option<&str>); 10] = [
    (r"\r\n\r\n", None, None),
    (r"\d+;", None, None),
    (r"ab*c|a", None, None),
    (r"a.*z|b", None, None),
    (r"[;,]+", Some("x"), None),
    (r"\n", Some(r"(?-u:\xff)"), Some(r"^[^\n]+")),
    ("END", Some("BAD"), Some("E")),
    (r"(?m)^\.$", None, None),
    (r"x(?-u:\b)", Some(r"\d{3}"), None),
    (r"(?s)c.{0,3}d|\w+\s", None, Some("a+")),
];

thread_local! {
    // Compiled once: compiling per input would dominate the run time.
    static COMPILED: Vec<Regex> = SETS
        .iter()
        .map(|(a, r, s)| {
            let mut re = Regex::new(a).unwrap();
            if let Some(r) = r {
                re = re.reject(r).unwrap();
            }
            if let Some(s) = s {
                re = re.skip(s).unwrap();
            }
            re
        })
        .collect();
}

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let proto = COMPILED.with(|c| c[usize::from(input.select) % SETS.len()].clone());
    let proto = proto.max_len(input.max);
    check(|| proto.clone(), &input);
});
