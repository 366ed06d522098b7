//! totp — time-based one-time passwords (RFC 6238) from a stored secret.
//!
//! The agent asks for a code, and the plugin never holds the secret either: the field is
//! declared `access = "host"`, so the request carries it as nil and the HMAC of each counter
//! is computed by Vultrino over the base32 secret (`vultrino_pdk::keys`, key format `base32`).
//! The plugin does the rest: the counter, the dynamic truncation and the digits.

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};
use vultrino_pdk::keys::{self, KeyError, KeyFormat};
use vultrino_pdk::{actions, Error, Result};

actions! {
    "code" => code,
}

/// The credential field the host keeps.
const SECRET_FIELD: &str = "secret";

/// The fields of the `totp` credential type.
#[derive(Deserialize)]
pub struct TotpKey {
    /// nil: the host keeps the value. Still required, so that a credential without it says so.
    pub secret: IgnoredAny,
    #[serde(default)]
    pub digits: Option<Number>,
    #[serde(default)]
    pub period: Option<Number>,
    #[serde(default)]
    pub algorithm: Option<String>,
}

#[derive(Deserialize)]
pub struct CodeParams {
    /// Unix seconds to compute the code for; now when absent.
    #[serde(default)]
    pub time: Option<i64>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Code {
    pub code: String,
    pub expires_in: u64,
}

/// `code`: the one-time code for `time` (default: now) and seconds left in its period.
pub fn code(params: CodeParams, key: TotpKey) -> Result<Code> {
    let settings = Settings::from_key(&key);
    let now = match params.time {
        Some(t) if t < 0 => Err(Error::invalid_params("time must not be negative")),
        Some(t) => Ok(t as u64),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::failed("the clock is before 1970"))
            .map(|d| d.as_secs()),
    };
    // The secret's refusals come first, as when the plugin decoded it itself: the host's MAC
    // is asked for before the settings' and the time's errors are reported.
    let (algorithm, counter) = match (&settings, &now) {
        (Ok(s), Ok(t)) => (s.algorithm, t / s.period),
        (Ok(s), Err(_)) => (s.algorithm, 0),
        (Err(_), _) => (Algorithm::Sha1, 0),
    };
    let mac = host_hmac(algorithm, counter)?;
    let settings = settings?;
    let now = now?;
    Ok(Code {
        code: truncate(&mac, settings.digits),
        expires_in: settings.period - now % settings.period,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

pub struct Settings {
    pub digits: u32,
    pub period: u64,
    pub algorithm: Algorithm,
}

impl Settings {
    pub fn from_key(key: &TotpKey) -> Result<Settings> {
        let digits = whole(key.digits.as_ref(), "digits", 6, 1, 10)? as u32;
        let period = whole(key.period.as_ref(), "period", 30, 1, 86_400)?;
        let algorithm = match key.algorithm.as_deref().map(str::trim) {
            None | Some("") => Algorithm::Sha1,
            Some(name) => match name.to_ascii_uppercase().replace('-', "").as_str() {
                "SHA1" => Algorithm::Sha1,
                "SHA256" => Algorithm::Sha256,
                "SHA512" => Algorithm::Sha512,
                _ => {
                    return Err(Error::invalid_credential(
                        "algorithm must be one of SHA1, SHA256, SHA512",
                    ))
                }
            },
        };
        Ok(Settings {
            digits,
            period,
            algorithm,
        })
    }
}

/// RFC 4226 HOTP of `counter` with the dynamic truncation of section 5.3; the MAC is the
/// host's, over the credential's base32 secret.
pub fn hotp(settings: &Settings, counter: u64) -> Result<String> {
    Ok(truncate(
        &host_hmac(settings.algorithm, counter)?,
        settings.digits,
    ))
}

/// The HMAC of the counter (8 bytes, big-endian) keyed by the secret, computed by the host.
fn host_hmac(algorithm: Algorithm, counter: u64) -> Result<Vec<u8>> {
    let message = counter.to_be_bytes();
    let format = KeyFormat::Base32;
    let mac = match algorithm {
        Algorithm::Sha1 => keys::hmac_sha1_with(SECRET_FIELD, format, &message),
        Algorithm::Sha256 => keys::hmac_sha256_with(SECRET_FIELD, format, &message),
        Algorithm::Sha512 => keys::hmac_sha512_with(SECRET_FIELD, format, &message),
    };
    mac.map_err(|e| match e {
        KeyError::BadFormat => Error::invalid_credential("secret is not valid base32 (A-Z, 2-7)"),
        KeyError::UnknownField => Error::invalid_credential("secret is empty"),
        other => Error::from(other),
    })
}

/// Section 5.3's dynamic truncation of `mac` to `digits` decimal digits.
fn truncate(mac: &[u8], digits: u32) -> String {
    let offset = (mac[mac.len() - 1] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    let value = u64::from(binary) % 10u64.pow(digits);
    format!("{:0width$}", value, width = digits as usize)
}

/// A credential number field: an integer, a float with no fraction, or a numeric string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct NumberVisitor;
        impl<'de> Visitor<'de> for NumberVisitor {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Number, E> {
                v.trim()
                    .parse::<f64>()
                    .map(Number)
                    .map_err(|_| E::custom("expected a number"))
            }
        }
        deserializer.deserialize_any(NumberVisitor)
    }
}

/// A whole number within `[min, max]`, or `default` when the field is unset.
fn whole(value: Option<&Number>, name: &str, default: u64, min: u64, max: u64) -> Result<u64> {
    let n = match value {
        None => return Ok(default),
        Some(n) => n.0,
    };
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(Error::invalid_credential(format!(
            "{} must be a whole number from {} to {}",
            name, min, max
        )));
    }
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use std::cell::RefCell;

    thread_local! {
        /// The secret's text the stand-in host signs with (Vultrino does this on wasm).
        static SECRET: RefCell<String> = RefCell::new(String::new());
    }

    /// A stand-in for the host's keys interface, natively: base32 as the host reads it, HMAC
    /// with the `hmac` crate.
    fn host(
        function: &str,
        field: &str,
        format: KeyFormat,
        data: &[u8],
    ) -> std::result::Result<Vec<u8>, KeyError> {
        assert_eq!((field, format), (SECRET_FIELD, KeyFormat::Base32));
        let text = SECRET.with(|s| s.borrow().clone());
        if text.is_empty() {
            return Err(KeyError::UnknownField);
        }
        let key = base32_decode(&text).ok_or(KeyError::BadFormat)?;
        fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Ok(match function {
            "hmac-sha1" => mac::<Hmac<sha1::Sha1>>(&key, data),
            "hmac-sha256" => mac::<Hmac<sha2::Sha256>>(&key, data),
            "hmac-sha512" => mac::<Hmac<sha2::Sha512>>(&key, data),
            other => panic!("unexpected key function {}", other),
        })
    }

    fn base32_decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let (mut buffer, mut bits) = (0u64, 0u32);
        for ch in text.chars() {
            let value = match ch.to_ascii_uppercase() {
                c @ 'A'..='Z' => c as u64 - 'A' as u64,
                c @ '2'..='7' => c as u64 - '2' as u64 + 26,
                ' ' | '-' | '=' | '\t' | '\n' | '\r' => continue,
                _ => return None,
            };
            buffer = (buffer << 5) | value;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
                buffer &= (1 << bits) - 1;
            }
        }
        Some(out).filter(|o| !o.is_empty())
    }

    fn base32_encode(data: &[u8]) -> String {
        const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let mut out = String::new();
        let (mut buffer, mut bits) = (0u32, 0u32);
        for &byte in data {
            buffer = (buffer << 8) | u32::from(byte);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
            }
        }
        if bits > 0 {
            out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
        }
        out
    }

    fn key_text(secret: &str, digits: Option<u32>, algorithm: Option<&str>) -> TotpKey {
        SECRET.with(|s| *s.borrow_mut() = secret.to_string());
        keys::set_native_host(Some(host));
        TotpKey {
            secret: IgnoredAny,
            digits: digits.map(|d| Number(f64::from(d))),
            period: None,
            algorithm: algorithm.map(String::from),
        }
    }

    fn key(secret: &[u8], digits: u32, algorithm: &str) -> TotpKey {
        key_text(&base32_encode(secret), Some(digits), Some(algorithm))
    }

    #[test]
    fn rfc6238_appendix_b() {
        let sha1 = b"12345678901234567890";
        let sha256 = b"12345678901234567890123456789012";
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234";
        let table: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (time, c1, c256, c512) in table {
            for (secret, alg, want) in [
                (&sha1[..], "SHA1", c1),
                (&sha256[..], "SHA256", c256),
                (&sha512[..], "SHA512", c512),
            ] {
                let out = code(CodeParams { time: Some(time) }, key(secret, 8, alg)).unwrap();
                assert_eq!(out.code, want, "{} at {}", alg, time);
                assert_eq!(out.expires_in, 30 - (time as u64 % 30));
            }
        }
    }

    #[test]
    fn the_secrets_refusals_come_first() {
        // a bad secret and a bad algorithm: the secret's error, as before the move
        let k = key_text("!!", None, Some("MD5"));
        let err = code(CodeParams { time: Some(59) }, k).err().unwrap();
        assert_eq!(err.message(), "secret is not valid base32 (A-Z, 2-7)");
        assert!(!err.message().contains("!!"));
        let k = key_text("", Some(6), None);
        let err = code(CodeParams { time: Some(-1) }, k).err().unwrap();
        assert_eq!(err.message(), "secret is empty");
    }

    #[test]
    fn bad_settings_are_credential_errors() {
        let k = key(b"12345678901234567890", 6, "MD5");
        assert_eq!(
            code(CodeParams { time: Some(59) }, k).err().unwrap().code(),
            vultrino_pdk::ErrorCode::InvalidCredential
        );
        let mut k = key(b"12345678901234567890", 6, "SHA1");
        k.digits = Some(Number(6.5));
        assert!(Settings::from_key(&k).is_err());
        let k = key(b"12345678901234567890", 6, "SHA1");
        let err = code(CodeParams { time: Some(-1) }, k).err().unwrap();
        assert_eq!(err.code(), vultrino_pdk::ErrorCode::InvalidParams);
    }
}
