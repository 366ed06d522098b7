//! ecdsa — Ethereum-style secp256k1 signatures with a key the plugin never holds.
//!
//! The `private_key` field is declared `access = "host"`: the request carries it as nil, and
//! Vultrino signs (RFC 6979 nonce, low `s`, recovery id) and derives the public key through the
//! keys interface (`vultrino_pdk::keys`). The plugin does the Ethereum parts around them: the
//! data's encoding, the hash (Keccak-256 or SHA-256, also computed by the host), the EIP-191
//! prefix, the address and its EIP-55 checksum.
//!
//! Every signature is recoverable: `v` is 27 + the recovery id (27 or 28), as `ecrecover`,
//! `personal_sign` and EIP-712 tooling expect, and `signature` is `r || s || v`, 65 bytes.

use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXLOWER_PERMISSIVE};
use serde::{Deserialize, Serialize};
use vultrino_pdk::keys::{self, KeyError, KeyFormat};
use vultrino_pdk::{actions, Error, NoParams, Result};

actions! {
    "sign" => sign,
    "get_address" => get_address,
    "sign_message" => sign_message,
}

/// The credential field the host keeps.
const KEY_FIELD: &str = "private_key";
/// What EIP-191 (version 0x45, `personal_sign`) puts before the message's length and bytes.
const EIP191_PREFIX: &[u8] = b"\x19Ethereum Signed Message:\n";

/// A checkbox arrives as a boolean; a value typed by hand may be text.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

/// The fields of the `ecdsa_key` credential type (`private_key` arrives as nil).
#[derive(Deserialize)]
pub struct EcdsaKey {
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub testnet: Option<Flag>,
}

impl EcdsaKey {
    fn testnet(&self) -> Result<bool> {
        match &self.testnet {
            None => Ok(false),
            Some(Flag::Bool(b)) => Ok(*b),
            Some(Flag::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
                "" | "false" | "no" | "0" => Ok(false),
                "true" | "yes" | "1" => Ok(true),
                _ => Err(Error::invalid_credential("testnet must be true or false")),
            },
        }
    }
}

/// What the host's refusal means for this plugin's one key; never any part of the key.
fn key_error(e: KeyError) -> Error {
    match e {
        KeyError::BadFormat => Error::invalid_credential(
            "private_key is not hex: write the 32-byte key as 64 hex digits, with or without 0x",
        ),
        KeyError::BadKey => Error::invalid_credential(
            "private_key is not a secp256k1 private key: it must be 32 bytes (64 hex digits, \
             with or without 0x), not zero and below the curve order",
        ),
        KeyError::UnknownField | KeyError::NoCredential => {
            Error::invalid_credential("private_key is not set: store the key in the credential")
        }
        KeyError::BadInput => Error::invalid_params("the digest to sign must be 32 bytes"),
    }
}

fn hex0x(bytes: &[u8]) -> String {
    format!("0x{}", HEXLOWER.encode(bytes))
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let all = [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD];
    all.iter().find_map(|e| e.decode(text.as_bytes()).ok())
}

/// `data` written as `format` (hex with an optional 0x, utf8, base64), as bytes.
fn data_bytes(data: &str, format: Option<&str>, default: &str, what: &str) -> Result<Vec<u8>> {
    match format.map(str::trim).filter(|f| !f.is_empty()).unwrap_or(default) {
        "hex" => {
            let t = data.trim();
            let t = t
                .strip_prefix("0x")
                .or_else(|| t.strip_prefix("0X"))
                .unwrap_or(t);
            HEXLOWER_PERMISSIVE.decode(t.as_bytes()).map_err(|_| {
                Error::invalid_params(format!(
                    "{} is not hex: write an even number of hex digits, with or without 0x \
                     (or set format to utf8 or base64)",
                    what
                ))
            })
        }
        "utf8" | "utf-8" | "text" => Ok(data.as_bytes().to_vec()),
        "base64" => decode_base64(data.trim()).ok_or_else(|| {
            Error::invalid_params(format!("{} is not base64 (standard or URL-safe)", what))
        }),
        other => Err(Error::invalid_params(format!(
            "format must be hex, utf8 or base64, not {:?}",
            other
        ))),
    }
}

/// The 32-byte digest that is signed: `data` hashed as `hash` says, or `data` itself.
fn digest(data: &[u8], hash: Option<&str>) -> Result<Vec<u8>> {
    match hash.map(str::trim).filter(|h| !h.is_empty()).unwrap_or("keccak256") {
        "keccak256" | "keccak-256" => Ok(keys::keccak256(data)),
        "sha256" | "sha-256" => Ok(keys::sha256(data)),
        "none" if data.len() == 32 => Ok(data.to_vec()),
        "none" => Err(Error::invalid_params(format!(
            "with hash \"none\" the data is the digest itself and must be exactly 32 bytes, \
             got {} bytes: pass a 32-byte digest, or choose hash keccak256 or sha256",
            data.len()
        ))),
        other => Err(Error::invalid_params(format!(
            "hash must be keccak256, sha256 or none, not {:?}",
            other
        ))),
    }
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Signed {
    /// 32 bytes, 0x hex.
    pub r: String,
    /// 32 bytes, 0x hex; low s (at most half the curve order).
    pub s: String,
    /// 27 + recovery_id.
    pub v: u8,
    /// Which of the two candidate public keys signed (0 or 1).
    pub recovery_id: u8,
    /// `r || s || v`, 65 bytes, 0x hex.
    pub signature: String,
    /// The 32-byte digest that was signed, 0x hex.
    pub digest: String,
}

/// The host's `r || s || recovery id` over `digest`, in this plugin's output form.
fn sign_digest(digest: &[u8]) -> Result<Signed> {
    let raw = keys::secp256k1_sign_with(KEY_FIELD, KeyFormat::Hex, digest).map_err(key_error)?;
    if raw.len() != 65 || raw[64] > 1 {
        return Err(Error::failed("the host returned a malformed secp256k1 signature"));
    }
    let recovery_id = raw[64];
    let v = 27 + recovery_id;
    let mut full = raw[..64].to_vec();
    full.push(v);
    Ok(Signed {
        r: hex0x(&raw[..32]),
        s: hex0x(&raw[32..64]),
        v,
        recovery_id,
        signature: hex0x(&full),
        digest: hex0x(digest),
    })
}

#[derive(Deserialize)]
pub struct SignParams {
    pub data: String,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub hash: Option<String>,
}

/// `sign`: the signature of `data` hashed with `hash` (default keccak256).
pub fn sign(params: SignParams, _key: EcdsaKey) -> Result<Signed> {
    let data = data_bytes(&params.data, params.format.as_deref(), "hex", "data")?;
    sign_digest(&digest(&data, params.hash.as_deref())?)
}

#[derive(Deserialize)]
pub struct MessageParams {
    pub message: String,
    #[serde(default)]
    pub format: Option<String>,
}

/// The EIP-191 `personal_sign` bytes of `message`: prefix, decimal length, message.
pub fn eip191(message: &[u8]) -> Vec<u8> {
    let mut out = EIP191_PREFIX.to_vec();
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.extend_from_slice(message);
    out
}

/// `sign_message`: `personal_sign` — the Keccak-256 of the EIP-191 prefixed message, signed.
pub fn sign_message(params: MessageParams, _key: EcdsaKey) -> Result<Signed> {
    let message = data_bytes(&params.message, params.format.as_deref(), "utf8", "message")?;
    sign_digest(&keys::keccak256(&eip191(&message)))
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Address {
    /// EIP-55 checksummed.
    pub address: String,
    /// SEC 1 uncompressed, 65 bytes, 0x hex.
    pub public_key: String,
    pub testnet: bool,
}

/// EIP-55: each hex letter of the address upper case where the nibble of the Keccak-256 of the
/// lower-case hex address is 8 or more.
pub fn checksum(address: &[u8]) -> String {
    let lower = HEXLOWER.encode(address);
    let hash = keys::keccak256(lower.as_bytes());
    let mut out = String::with_capacity(2 + lower.len());
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

/// `get_address`: the account's address (the last 20 bytes of the Keccak-256 of the public
/// key's x || y) and the uncompressed public key.
pub fn get_address(_params: NoParams, key: EcdsaKey) -> Result<Address> {
    let testnet = key.testnet()?;
    let public = keys::secp256k1_public_key_with(KEY_FIELD, KeyFormat::Hex).map_err(key_error)?;
    if public.len() != 65 || public[0] != 4 {
        return Err(Error::failed("the host returned a malformed public key"));
    }
    let hash = keys::keccak256(&public[1..]);
    Ok(Address {
        address: checksum(&hash[12..]),
        public_key: hex0x(&public),
        testnet,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_keccak::{Hasher, Keccak};

    /// A stand-in for the host natively: Keccak-256 only (signing is tested on wasm against
    /// Vultrino, see tests/integration/test_ecdsa_plugin.py).
    fn host(function: &str, _: &str, _: KeyFormat, data: &[u8]) -> std::result::Result<Vec<u8>, KeyError> {
        assert_eq!(function, "keccak256");
        let mut k = Keccak::v256();
        k.update(data);
        let mut out = [0u8; 32];
        k.finalize(&mut out);
        Ok(out.to_vec())
    }

    #[test]
    fn eip55_published_vectors() {
        keys::set_native_host(Some(host));
        // From EIP-55's own test cases.
        for want in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let raw = HEXLOWER_PERMISSIVE.decode(want[2..].as_bytes()).unwrap();
            assert_eq!(checksum(&raw), want);
        }
    }

    #[test]
    fn hash_none_needs_32_bytes() {
        let err = digest(&[0u8; 31], Some("none")).unwrap_err();
        assert_eq!(err.code(), vultrino_pdk::ErrorCode::InvalidParams);
        assert!(err.message().contains("got 31 bytes"));
        assert_eq!(digest(&[7u8; 32], Some("none")).unwrap(), vec![7u8; 32]);
    }

    #[test]
    fn eip191_prefix_counts_bytes() {
        assert_eq!(eip191("é".as_bytes()), b"\x19Ethereum Signed Message:\n2\xc3\xa9".to_vec());
    }
}
