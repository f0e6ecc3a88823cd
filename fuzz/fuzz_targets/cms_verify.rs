#![no_main]
// CMS SignedData parser and verifier: any bytes, attached or with detached content.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signer_lib::envelope::verify(data, None);
    let _ = signer_lib::envelope::verify(data, Some(b"content"));
});
