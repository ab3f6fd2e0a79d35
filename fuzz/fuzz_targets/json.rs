#![no_main]
use libfuzzer_sys::fuzz_target;
use netactor::framing::Json;
use netactor_fuzz::{check, Input};

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let max = input.max;
    match input.select % 3 {
        0 => check(|| Json::new().max_len(max), &input),
        1 => check(|| Json::<Vec<i32>>::typed().max_len(max), &input),
        _ => check(
            || Json::<(String, Option<bool>)>::typed().max_len(max),
            &input,
        ),
    }
});
