#![no_main]
// OCSP request parser (bounded DER OCSPRequest → CertIDs and nonce).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ocsp_responder::request::parse(data);
});
