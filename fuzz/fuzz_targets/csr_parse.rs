#![no_main]
// PKCS#10 parser and proof-of-possession check.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signer_lib::csr::parse_and_verify(data);
});
