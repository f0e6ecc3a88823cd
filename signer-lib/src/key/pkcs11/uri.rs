//! `pkcs11:` URIs ([RFC 7512](https://www.rfc-editor.org/rfc/rfc7512)), which name a token and
//! an object on it:
//!
//! ```text
//! pkcs11:token=ent-001;object=sign-key;id=%01%02;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so
//! ```
//!
//! RFC 7512 §2.3, in short:
//!
//! ```text
//! pk11-URI    = "pkcs11:" pk11-path [ "?" pk11-query ]
//! pk11-path   = [ pk11-pattr *(";" pk11-pattr) ]
//! pk11-pattr  = pk11-token / pk11-manuf / pk11-serial / pk11-model / pk11-lib-manuf /
//!               pk11-lib-ver / pk11-lib-desc / pk11-object / pk11-type / pk11-id /
//!               pk11-slot-desc / pk11-slot-manuf / pk11-slot-id / pk11-v-pattr
//! pk11-query  = [ pk11-qattr *("&" pk11-qattr) ]
//! pk11-qattr  = pk11-pin-source / pk11-pin-value / pk11-module-name /
//!               pk11-module-path / pk11-v-qattr
//! pk11-v-pattr = "x-" 1*pk11-pchar "=" *pk11-pchar    ; vendor-specific
//! ```
//!
//! Values are percent-encoded UTF-8, except `id`, which is raw bytes and is always written
//! percent-encoded (`id=%01%02`). Parsing is strict where a mistake could select the wrong key
//! or leak a secret: unknown attributes (other than vendor `x-` ones), repeated attributes,
//! bad `%` escapes, a non-numeric `slot-id` and an unknown `type` are refused, and so is
//! `pin-value`: a PIN never goes in a URI, which ends up in configuration files, logs and
//! shell histories. It is lenient about characters the RFC wants escaped but whose meaning is
//! unambiguous (a space in a label). [`fmt::Display`] writes the canonical form, which parses
//! back to an equal value.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The class of object a URI names (`type=`, RFC 7512 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `type=private`: a private key (CKO_PRIVATE_KEY).
    Private,
    /// `type=public`: a public key (CKO_PUBLIC_KEY).
    Public,
    /// `type=cert`: a certificate (CKO_CERTIFICATE).
    Cert,
    /// `type=secret-key`: a secret key (CKO_SECRET_KEY).
    SecretKey,
    /// `type=data`: a data object (CKO_DATA).
    Data,
}

impl ObjectType {
    /// The value as written in a URI.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Private => "private",
            Self::Public => "public",
            Self::Cert => "cert",
            Self::SecretKey => "secret-key",
            Self::Data => "data",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "private" => Some(Self::Private),
            "public" => Some(Self::Public),
            "cert" => Some(Self::Cert),
            "secret-key" => Some(Self::SecretKey),
            "data" => Some(Self::Data),
            _ => None,
        }
    }
}

/// A parsed `pkcs11:` URI (RFC 7512). Every field is optional: an absent attribute matches
/// anything. Build one with [`str::parse`] or as a struct literal with `..Default::default()`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token=`: the token label (CK_TOKEN_INFO.label). Tokens are found by label because slot
    /// ids change when tokens are added or re-initialised.
    pub token: Option<String>,
    /// `manufacturer=`: the token manufacturer (CK_TOKEN_INFO.manufacturerID).
    pub manufacturer: Option<String>,
    /// `model=`: the token model (CK_TOKEN_INFO.model).
    pub model: Option<String>,
    /// `serial=`: the token serial number (CK_TOKEN_INFO.serialNumber).
    pub serial: Option<String>,
    /// `object=`: the object label (CKA_LABEL).
    pub object: Option<String>,
    /// `id=`: the object identifier (CKA_ID), raw bytes.
    pub id: Option<Vec<u8>>,
    /// `type=`: the object class.
    pub object_type: Option<ObjectType>,
    /// `library-manufacturer=` (CK_INFO.manufacturerID).
    pub library_manufacturer: Option<String>,
    /// `library-description=` (CK_INFO.libraryDescription).
    pub library_description: Option<String>,
    /// `library-version=`, `M` or `M.N` (CK_INFO.libraryVersion).
    pub library_version: Option<String>,
    /// `slot-description=` (CK_SLOT_INFO.slotDescription).
    pub slot_description: Option<String>,
    /// `slot-manufacturer=` (CK_SLOT_INFO.manufacturerID).
    pub slot_manufacturer: Option<String>,
    /// `slot-id=`: a slot number. Discouraged: slot ids are not stable.
    pub slot_id: Option<u64>,
    /// Vendor-specific path attributes (`x-name=value`), name with its `x-` prefix, in order.
    pub vendor_path: Vec<(String, String)>,
    /// `?module-name=`: the module's name without path or suffix (`softhsm2`).
    pub module_name: Option<String>,
    /// `?module-path=`: the module's file (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module_path: Option<String>,
    /// `?pin-source=`: where the PIN comes from (`file:/run/secrets/pin`, or a name the
    /// application defines). The PIN itself is never in the URI.
    pub pin_source: Option<String>,
    /// Vendor-specific query attributes (`x-name=value`), in order.
    pub vendor_query: Vec<(String, String)>,
}

impl Pkcs11Uri {
    /// A URI naming the object `object` on the token labelled `token`.
    #[must_use]
    pub fn for_object(token: &str, object: &str) -> Self {
        Self { token: Some(token.to_owned()), object: Some(object.to_owned()), ..Self::default() }
    }
}

/// Characters written as they are in a path value (RFC 3986 unreserved and most of
/// `pk11-path-res-avail`); `=`, `;`, `&`, `?`, `/`, `%` and everything else are escaped.
fn path_char_is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,".contains(&b)
}

/// As [`path_char_is_plain`], plus `/` (`pk11-query-res-avail`), so module paths stay readable.
fn query_char_is_plain(b: u8) -> bool {
    path_char_is_plain(b) || b == b'/'
}

fn encode(out: &mut String, bytes: &[u8], plain: fn(u8) -> bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if plain(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

fn encode_all(out: &mut String, bytes: &[u8]) {
    encode(out, bytes, |_| false);
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::<String>::new();
        let mut text = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                let mut s = format!("{name}=");
                encode(&mut s, v.as_bytes(), path_char_is_plain);
                path.push(s);
            }
        };
        text("library-manufacturer", &self.library_manufacturer);
        text("library-description", &self.library_description);
        text("library-version", &self.library_version);
        text("slot-manufacturer", &self.slot_manufacturer);
        text("slot-description", &self.slot_description);
        text("manufacturer", &self.manufacturer);
        text("model", &self.model);
        text("serial", &self.serial);
        text("token", &self.token);
        text("object", &self.object);
        if let Some(slot_id) = self.slot_id {
            path.push(format!("slot-id={slot_id}"));
        }
        if let Some(id) = &self.id {
            let mut s = String::from("id=");
            encode_all(&mut s, id);
            path.push(s);
        }
        if let Some(t) = self.object_type {
            path.push(format!("type={}", t.as_str()));
        }
        for (name, value) in &self.vendor_path {
            let mut s = String::new();
            encode(&mut s, name.as_bytes(), path_char_is_plain);
            s.push('=');
            encode(&mut s, value.as_bytes(), path_char_is_plain);
            path.push(s);
        }

        let mut query = Vec::<String>::new();
        let mut qtext = |name: &str, value: &Option<String>| {
            if let Some(v) = value {
                let mut s = format!("{name}=");
                encode(&mut s, v.as_bytes(), query_char_is_plain);
                query.push(s);
            }
        };
        qtext("module-name", &self.module_name);
        qtext("module-path", &self.module_path);
        qtext("pin-source", &self.pin_source);
        for (name, value) in &self.vendor_query {
            let mut s = String::new();
            encode(&mut s, name.as_bytes(), query_char_is_plain);
            s.push('=');
            encode(&mut s, value.as_bytes(), query_char_is_plain);
            query.push(s);
        }

        write!(f, "pkcs11:{}", path.join(";"))?;
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

/// The URI with the value of any `pin-value` attribute blanked out, for error messages.
fn redact(uri: &str) -> String {
    fn blank(attrs: &str, sep: char) -> String {
        attrs
            .split(sep)
            .map(|attr| match attr.split_once('=') {
                // The first path attribute still carries the "pkcs11:" scheme.
                Some((name, _)) if name.rsplit(':').next().is_some_and(|n| n.eq_ignore_ascii_case("pin-value")) => {
                    format!("{name}=(redacted)")
                }
                _ => attr.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(&sep.to_string())
    }
    match uri.split_once('?') {
        Some((path, query)) => format!("{}?{}", blank(path, ';'), blank(query, '&')),
        None => blank(uri, ';'),
    }
}

fn percent_decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| format!("truncated %-escape in {value:?}"))?;
            let hex = std::str::from_utf8(hex).map_err(|_| format!("bad %-escape in {value:?}"))?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape %{hex} in {value:?}"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn decode_text(name: &str, value: &str) -> Result<String, String> {
    String::from_utf8(percent_decode(value)?).map_err(|_| format!("{name} is not UTF-8 once %-decoded"))
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("attribute {name} appears twice"));
    }
    *slot = Some(value);
    Ok(())
}

impl Pkcs11Uri {
    fn parse_path_attribute(&mut self, name: &str, value: &str) -> Result<(), String> {
        let text = |v: &str| decode_text(name, v);
        match name {
            "token" => set_once(&mut self.token, name, text(value)?),
            "manufacturer" => set_once(&mut self.manufacturer, name, text(value)?),
            "model" => set_once(&mut self.model, name, text(value)?),
            "serial" => set_once(&mut self.serial, name, text(value)?),
            "object" => set_once(&mut self.object, name, text(value)?),
            "id" => set_once(&mut self.id, name, percent_decode(value)?),
            "type" => {
                let t = ObjectType::parse(&text(value)?)
                    .ok_or_else(|| format!("type={value} is not one of private, public, cert, secret-key, data"))?;
                set_once(&mut self.object_type, name, t)
            }
            "library-manufacturer" => set_once(&mut self.library_manufacturer, name, text(value)?),
            "library-description" => set_once(&mut self.library_description, name, text(value)?),
            "library-version" => set_once(&mut self.library_version, name, text(value)?),
            "slot-description" => set_once(&mut self.slot_description, name, text(value)?),
            "slot-manufacturer" => set_once(&mut self.slot_manufacturer, name, text(value)?),
            "slot-id" => {
                let id = text(value)?;
                let id = (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| id.parse::<u64>().ok())
                    .flatten()
                    .ok_or_else(|| format!("slot-id={value} is not a decimal number"))?;
                set_once(&mut self.slot_id, name, id)
            }
            _ if name.starts_with("x-") => {
                if self.vendor_path.iter().any(|(n, _)| n == name) {
                    return Err(format!("attribute {name} appears twice"));
                }
                self.vendor_path.push((name.to_owned(), text(value)?));
                Ok(())
            }
            "pin-value" | "pin-source" | "module-name" | "module-path" => {
                Err(format!("{name} belongs in the query part (after '?'), not the path"))
            }
            _ => Err(format!("unknown path attribute {name:?}")),
        }
    }

    fn parse_query_attribute(&mut self, name: &str, value: &str) -> Result<(), String> {
        match name {
            "pin-value" => Err("pin-value is refused: a PIN never goes in a URI (use pin-source, or pass the PIN \
                                from an environment variable)"
                .to_owned()),
            "pin-source" => set_once(&mut self.pin_source, name, decode_text(name, value)?),
            "module-name" => set_once(&mut self.module_name, name, decode_text(name, value)?),
            "module-path" => set_once(&mut self.module_path, name, decode_text(name, value)?),
            _ if name.starts_with("x-") => {
                if self.vendor_query.iter().any(|(n, _)| n == name) {
                    return Err(format!("attribute {name} appears twice"));
                }
                self.vendor_query.push((name.to_owned(), decode_text(name, value)?));
                Ok(())
            }
            _ => Err(format!("unknown query attribute {name:?}")),
        }
    }
}

/// Splits `name=value`; the name is case-sensitive ASCII as in RFC 7512.
fn split_attribute(attr: &str) -> Result<(&str, &str), String> {
    let (name, value) = attr.split_once('=').ok_or_else(|| format!("attribute {attr:?} has no '='"))?;
    if name.is_empty() {
        return Err(format!("attribute {attr:?} has no name"));
    }
    Ok((name, value))
}

impl FromStr for Pkcs11Uri {
    type Err = Error;

    /// Parses an RFC 7512 URI.
    ///
    /// # Errors
    /// [`Error::InvalidPkcs11Uri`] (with any `pin-value` blanked out of the quoted URI) for a
    /// scheme other than `pkcs11:`, a malformed or unknown attribute, a repeated attribute, a bad
    /// `%` escape, text that is not UTF-8, or a `pin-value`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidPkcs11Uri { uri: redact(s), reason };
        let rest = s
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
            .and_then(|_| s.get(7..))
            .ok_or_else(|| invalid("does not start with \"pkcs11:\"".into()))?;
        if rest.contains('#') {
            return Err(invalid("a PKCS#11 URI has no fragment ('#' must be written %23)".into()));
        }
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Self::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, value) = split_attribute(attr).map_err(invalid)?;
            uri.parse_path_attribute(name, value).map_err(invalid)?;
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            let (name, value) = split_attribute(attr).map_err(invalid)?;
            uri.parse_query_attribute(name, value).map_err(invalid)?;
        }
        Ok(uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_token_object_and_percent_encoded_id() {
        let uri: Pkcs11Uri = "pkcs11:token=ent-001;object=sign-key;id=%01%02".parse().unwrap();
        assert_eq!(uri.token.as_deref(), Some("ent-001"));
        assert_eq!(uri.object.as_deref(), Some("sign-key"));
        assert_eq!(uri.id.as_deref(), Some(&[1u8, 2][..]));
        assert_eq!(uri.to_string(), "pkcs11:token=ent-001;object=sign-key;id=%01%02");
    }

    #[test]
    fn parses_the_query_with_module_path_and_pin_source() {
        let s = "pkcs11:token=a%20b;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin";
        let uri: Pkcs11Uri = s.parse().unwrap();
        assert_eq!(uri.token.as_deref(), Some("a b"));
        assert_eq!(uri.object_type, Some(ObjectType::Private));
        assert_eq!(uri.module_path.as_deref(), Some("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(uri.pin_source.as_deref(), Some("file:/run/pin"));
        assert_eq!(uri.to_string(), s);
    }

    #[test]
    fn display_round_trips_every_attribute_and_awkward_characters() {
        let uri = Pkcs11Uri {
            token: Some("Ent;001=α/β?&%".into()),
            manufacturer: Some("SoftHSM project".into()),
            model: Some("SoftHSM v2".into()),
            serial: Some("0123abcd".into()),
            object: Some("sign key #1".into()),
            id: Some(vec![0x00, 0xff, b'a', b';']),
            object_type: Some(ObjectType::SecretKey),
            library_manufacturer: Some("SoftHSM".into()),
            library_description: Some("Implementation of PKCS11".into()),
            library_version: Some("2.6".into()),
            slot_description: Some("SoftHSM slot ID 0x0".into()),
            slot_manufacturer: Some("SoftHSM project".into()),
            slot_id: Some(42),
            vendor_path: vec![("x-vendor".into(), "v;1".into())],
            module_name: Some("softhsm2".into()),
            module_path: Some("/opt/lib dir/libsofthsm2.so".into()),
            pin_source: Some("file:/run/secrets/pin?x=1&y".into()),
            vendor_query: vec![("x-q".into(), "1".into())],
        };
        let text = uri.to_string();
        assert!(!text.contains(' '), "{text}");
        let back: Pkcs11Uri = text.parse().unwrap();
        assert_eq!(back, uri);
        assert_eq!(back.to_string(), text);
    }

    #[test]
    fn an_empty_uri_names_everything() {
        let uri: Pkcs11Uri = "pkcs11:".parse().unwrap();
        assert_eq!(uri, Pkcs11Uri::default());
        assert_eq!(uri.to_string(), "pkcs11:");
        assert_eq!("PKCS11:token=x".parse::<Pkcs11Uri>().unwrap().token.as_deref(), Some("x"));
    }

    #[test]
    fn refuses_pin_value_without_repeating_the_pin() {
        let err = "pkcs11:token=t;object=k?pin-value=123456".parse::<Pkcs11Uri>().unwrap_err();
        assert!(matches!(err, Error::InvalidPkcs11Uri { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("pin-value"), "{msg}");
        assert!(!msg.contains("123456"), "the PIN leaked into the message: {msg}");
        let err = "pkcs11:token=t?pin-source=file:/x&pin-value=99887766".parse::<Pkcs11Uri>().unwrap_err();
        assert!(!format!("{err:?}").contains("99887766"));
        // In the path it is refused as well, and blanked there too.
        for uri in ["pkcs11:token=t;pin-value=24681357", "pkcs11:pin-value=24681357"] {
            let err = uri.parse::<Pkcs11Uri>().unwrap_err();
            assert!(!err.to_string().contains("24681357"), "{err}");
        }
    }

    #[test]
    fn refuses_malformed_uris() {
        for bad in [
            "pkcs12:token=x",
            "token=x",
            "pkcs11:token=x;token=y",
            "pkcs11:objekt=typo",
            "pkcs11:token",
            "pkcs11:=x",
            "pkcs11:id=%0",
            "pkcs11:id=%zz",
            "pkcs11:token=%ff%fe",
            "pkcs11:slot-id=0x1",
            "pkcs11:slot-id=",
            "pkcs11:type=key",
            "pkcs11:token=x?module-path=a&module-path=b",
            "pkcs11:token=x?unknown=1",
            "pkcs11:token=x#frag",
            "pkcs11:module-path=/lib/x.so",
        ] {
            let err = bad.parse::<Pkcs11Uri>().expect_err(bad);
            assert!(matches!(err, Error::InvalidPkcs11Uri { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn keeps_vendor_attributes_in_order() {
        let uri: Pkcs11Uri = "pkcs11:x-b=2;x-a=1?x-z=9".parse().unwrap();
        assert_eq!(uri.vendor_path, vec![("x-b".into(), "2".into()), ("x-a".into(), "1".into())]);
        assert_eq!(uri.vendor_query, vec![("x-z".into(), "9".into())]);
        assert_eq!(uri.to_string(), "pkcs11:x-b=2;x-a=1?x-z=9");
    }
}
