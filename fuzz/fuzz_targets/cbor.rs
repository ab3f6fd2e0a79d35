#![no_main]
use libfuzzer_sys::fuzz_target;
use netactor::framing::{Cbor, CborAs};
use netactor_fuzz::{check, Input};

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let max = input.max;
    match input.select % 3 {
        0 => check(|| Cbor::new().max_len(max), &input),
        1 => check(|| CborAs::<Vec<u32>>::new().max_len(max), &input),
        _ => check(
            || CborAs::<(String, Option<bool>, Vec<i64>)>::new().max_len(max),
            &input,
        ),
    }
});
