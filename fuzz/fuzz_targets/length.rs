#![no_main]
use libfuzzer_sys::fuzz_target;
use netactor::framing::{LengthPrefixed, Prefix};
use netactor_fuzz::{check, Input};

const PREFIXES: [Prefix; 8] = [
    Prefix::U8,
    Prefix::U16Be,
    Prefix::U16Le,
    Prefix::U32Be,
    Prefix::U32Le,
    Prefix::U64Be,
    Prefix::U64Le,
    Prefix::Ber,
];

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let prefix = PREFIXES[usize::from(input.select) % PREFIXES.len()];
    let max = input.max;
    check(|| LengthPrefixed::new(prefix).max_len(max), &input);
});
