#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| nas_fuzz::checks::llm_answer(data));
