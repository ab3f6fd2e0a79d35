#![no_main]
use libfuzzer_sys::fuzz_target;
use netactor::framing::Netstring;
use netactor_fuzz::{check, Input};

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let max = input.max;
    check(|| Netstring::new().max_len(max), &input);
});
