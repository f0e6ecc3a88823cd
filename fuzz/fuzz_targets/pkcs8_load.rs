#![no_main]
// PKCS#8 private keys, plain and encrypted (the passphrase path stops at decryption).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signer_lib::key::software::SoftwareKey::from_pkcs8_der(data, Some(b"fuzz"));
});
