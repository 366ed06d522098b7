//! hmac — HMAC-SHA256/SHA512 signatures for webhooks and request signing.
//!
//! The agent signs or checks messages, and the plugin never holds the shared key either: the
//! field is declared `access = "host"`, so the request carries it as nil and the MAC is
//! computed by Vultrino through the keys interface (`vultrino_pdk::keys`).

use data_encoding::{
    Encoding, BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXLOWER_PERMISSIVE,
};
use serde::{Deserialize, Serialize};
use vultrino_pdk::keys::{self, KeyError, KeyFormat};
use vultrino_pdk::{actions, Error, Result};

actions! {
    "sign" => sign,
    "verify" => verify,
}

/// The credential field the host keeps.
const KEY_FIELD: &str = "key";

/// The fields of the `hmac_key` credential type (`key` arrives as nil: the host keeps it).
#[derive(Deserialize)]
pub struct HmacKey {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
}

impl HmacKey {
    /// How the host must decode the key, from the `encoding` field.
    pub fn format(&self) -> Result<KeyFormat> {
        match self.encoding.as_deref().map(str::trim).unwrap_or("") {
            "" | "utf8" | "utf-8" | "text" => Ok(KeyFormat::Raw),
            "hex" => Ok(KeyFormat::Hex),
            "base64" => Ok(KeyFormat::Base64),
            _ => Err(Error::invalid_credential(
                "encoding must be one of utf8, hex, base64",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn parse(name: Option<&str>) -> Result<Algorithm> {
        match name
            .map(|n| n.trim().to_ascii_lowercase().replace('-', ""))
            .as_deref()
        {
            None | Some("") | Some("sha256") => Ok(Algorithm::Sha256),
            Some("sha512") => Ok(Algorithm::Sha512),
            _ => Err(Error::invalid_params("algorithm must be sha256 or sha512")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn output_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The MAC, computed by the host with the credential's key.
    fn sign(self, key: &HmacKey, message: &[u8]) -> Result<Vec<u8>> {
        let format = key.format()?;
        let mac = match self {
            Algorithm::Sha256 => keys::hmac_sha256_with(KEY_FIELD, format, message),
            Algorithm::Sha512 => keys::hmac_sha512_with(KEY_FIELD, format, message),
        };
        mac.map_err(|e| match e {
            KeyError::BadFormat => Error::invalid_credential("key does not decode with its encoding"),
            KeyError::UnknownField => Error::invalid_credential("key is empty"),
            other => Error::from(other),
        })
    }

    /// Constant-time comparison of the host's MAC with `signature`.
    fn verify(self, key: &HmacKey, message: &[u8], signature: &[u8]) -> Result<bool> {
        let expected = self.sign(key, message)?;
        if expected.len() != signature.len() {
            return Ok(false);
        }
        let diff = expected
            .iter()
            .zip(signature)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        Ok(diff == 0)
    }
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let all: [&Encoding; 4] = [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD];
    all.iter().find_map(|e| e.decode(text.as_bytes()).ok())
}

fn message_bytes(message: &str, encoding: Option<&str>) -> Result<Vec<u8>> {
    match encoding.map(str::trim).unwrap_or("") {
        "" | "utf8" | "utf-8" | "text" => Ok(message.as_bytes().to_vec()),
        "hex" => HEXLOWER_PERMISSIVE
            .decode(message.trim().as_bytes())
            .map_err(|_| Error::invalid_params("message is not valid hex")),
        "base64" => decode_base64(message.trim())
            .ok_or_else(|| Error::invalid_params("message is not valid base64")),
        _ => Err(Error::invalid_params(
            "message_encoding must be one of utf8, hex, base64",
        )),
    }
}

#[derive(Deserialize)]
pub struct SignParams {
    pub message: String,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub message_encoding: Option<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Signature {
    pub signature: String,
    pub algorithm: &'static str,
}

/// `sign`: the HMAC of `message`, hex (default) or base64.
pub fn sign(params: SignParams, key: HmacKey) -> Result<Signature> {
    let algorithm = Algorithm::parse(params.algorithm.as_deref())?;
    let message = message_bytes(&params.message, params.message_encoding.as_deref())?;
    let raw = algorithm.sign(&key, &message)?;
    let signature = match params.output.as_deref().map(str::trim).unwrap_or("hex") {
        "hex" | "" => HEXLOWER.encode(&raw),
        "base64" => BASE64.encode(&raw),
        _ => return Err(Error::invalid_params("output must be hex or base64")),
    };
    Ok(Signature {
        signature,
        algorithm: algorithm.name(),
    })
}

#[derive(Deserialize)]
pub struct VerifyParams {
    pub message: String,
    pub signature: String,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub encoding: Option<String>,
    #[serde(default)]
    pub message_encoding: Option<String>,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub valid: bool,
}

/// `verify`: does `signature` match `message`? Compared in constant time.
pub fn verify(params: VerifyParams, key: HmacKey) -> Result<Verdict> {
    let algorithm = Algorithm::parse(params.algorithm.as_deref())?;
    let message = message_bytes(&params.message, params.message_encoding.as_deref())?;
    let mut text = params.signature.trim();
    // Webhook headers often carry `sha256=<hex>`.
    if let Some(eq) = text.find('=').filter(|&i| i > 0 && i <= 6) {
        let prefix = text[..eq].to_ascii_lowercase();
        if prefix.starts_with("sha") {
            if prefix != algorithm.name() {
                return Err(Error::invalid_params(format!(
                    "the signature is marked {}= but algorithm is {}",
                    prefix,
                    algorithm.name()
                )));
            }
            text = &text[eq + 1..];
        }
    }
    let hex_len = 2 * algorithm.output_len();
    let decoded = match params.encoding.as_deref().map(str::trim).unwrap_or("") {
        "hex" => HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok(),
        "base64" => decode_base64(text),
        "" if text.len() == hex_len && text.bytes().all(|b| b.is_ascii_hexdigit()) => {
            HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()
        }
        "" => decode_base64(text).or_else(|| HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()),
        _ => return Err(Error::invalid_params("encoding must be hex or base64")),
    };
    let signature =
        decoded.ok_or_else(|| Error::invalid_params("signature is not valid hex or base64"))?;
    Ok(Verdict {
        valid: algorithm.verify(&key, &message, &signature)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use std::cell::RefCell;

    thread_local! {
        /// The key the stand-in host signs with (Vultrino does this on wasm).
        static KEY: RefCell<Vec<u8>> = RefCell::new(Vec::new());
    }

    /// A stand-in for the host's keys interface, natively: HMAC with the `hmac` crate over the
    /// key of this thread, decoded as the plugin asked.
    fn host(function: &str, field: &str, format: KeyFormat, data: &[u8]) -> std::result::Result<Vec<u8>, KeyError> {
        assert_eq!(field, KEY_FIELD);
        let raw = KEY.with(|k| k.borrow().clone());
        let key = match format {
            KeyFormat::Raw => raw,
            KeyFormat::Hex => HEXLOWER_PERMISSIVE.decode(&raw).map_err(|_| KeyError::BadFormat)?,
            _ => decode_base64(std::str::from_utf8(&raw).unwrap()).ok_or(KeyError::BadFormat)?,
        };
        Ok(match function {
            "hmac-sha256" => {
                let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            "hmac-sha512" => {
                let mut m = <Hmac<sha2::Sha512> as Mac>::new_from_slice(&key).unwrap();
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            other => panic!("unexpected key function {}", other),
        })
    }

    fn key(k: &str, encoding: &str) -> HmacKey {
        KEY.with(|key| *key.borrow_mut() = k.as_bytes().to_vec());
        keys::set_native_host(Some(host));
        HmacKey {
            key: None,
            encoding: Some(encoding.into()),
        }
    }

    fn sign_with(k: HmacKey, msg: &str, alg: &str, output: &str) -> String {
        let params = SignParams {
            message: msg.into(),
            algorithm: Some(alg.into()),
            output: Some(output.into()),
            message_encoding: None,
        };
        sign(params, k).unwrap().signature
    }

    #[test]
    fn rfc4231_case_2() {
        // Key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            sign_with(
                key("Jefe", "utf8"),
                "what do ya want for nothing?",
                "sha256",
                "hex"
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign_with(
                key("4a656665", "hex"),
                "what do ya want for nothing?",
                "sha256",
                "hex"
            ),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn verify_accepts_prefixes_and_both_encodings() {
        for output in ["hex", "base64"] {
            let sig = sign_with(key("k", "utf8"), "body", "sha512", output);
            let params = |s: String| VerifyParams {
                message: "body".into(),
                signature: s,
                algorithm: Some("sha512".into()),
                encoding: None,
                message_encoding: None,
            };
            assert!(verify(params(sig.clone()), key("k", "utf8")).unwrap().valid);
            assert!(
                verify(params(format!("sha512={}", sig)), key("k", "utf8"))
                    .unwrap()
                    .valid
            );
            assert!(
                !verify(params(sig.clone()), key("other", "utf8"))
                    .unwrap()
                    .valid
            );
            assert!(verify(params(format!("sha256={}", sig)), key("k", "utf8")).is_err());
        }
    }

    #[test]
    fn key_errors_do_not_quote_the_key() {
        let k = key("zz-not-hex", "hex");
        let err = Algorithm::Sha256.sign(&k, b"m").unwrap_err();
        assert_eq!(err.code(), vultrino_pdk::ErrorCode::InvalidCredential);
        assert!(!err.message().contains("zz-not-hex"));
    }
}
