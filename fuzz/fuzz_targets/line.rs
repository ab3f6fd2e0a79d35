#![no_main]
use libfuzzer_sys::fuzz_target;
use netactor::framing::Line;
use netactor_fuzz::{check, Input};

const EOLS: [&str; 6] = [
    r"[;,]+",
    r"\r?\n",
    r"\r\n|\n|\r",
    r"ab*c|a",
    r"(?m)\.$",
    r"\d{2,3}",
];

thread_local! {
    // Compiled once: compiling per input would dominate the run time.
    static COMPILED: Vec<Line> = EOLS.iter().map(|e| Line::with_eol_regex(e).unwrap()).collect();
}

fuzz_target!(|raw: &[u8]| {
    let Some(input) = Input::parse(raw) else {
        return;
    };
    let max = input.max;
    let sel = usize::from(input.select);
    if sel < 128 {
        let proto = COMPILED.with(|c| c[sel % EOLS.len()].clone()).max_len(max);
        check(|| proto.clone(), &input);
    } else if sel < 192 {
        check(|| Line::new().max_len(max), &input);
    } else {
        check(|| Line::with_eol("aba").max_len(max), &input);
    }
});
