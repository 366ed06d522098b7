//! Keys that stay in the host (world 1.2.0, `interface keys` of `wit/vultrino-plugin.wit`;
//! 1.3.0 adds OpenPGP keys, signature checks, base32 keys and HMAC-SHA384).
//!
//! Each function names a field of the credential the host bound to the current call; the host
//! decodes the field's value (as [`KeyFormat`] says), runs the operation and hands back only
//! its output. A field declared `access = "host"` in plugin.toml reaches the plugin as nil and
//! can be used only this way. See docs/plugins/host-keys.md.
//!
//! ```ignore
//! let mac = vultrino_pdk::keys::hmac_sha256("secret", b"message")?;
//! ```
//!
//! Only the functions a plugin calls become imports of its module. Natively (`cargo test`)
//! there is no host: the functions answer what a stand-in set with [`set_native_host`] answers,
//! or [`KeyError::NoCredential`] without one.

use std::fmt;

/// How the field's text becomes the key's bytes (the WIT enum `key-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum KeyFormat {
    /// The value's UTF-8 bytes as they are.
    Raw = 0,
    /// Hex digits (an optional `0x` and whitespace are ignored).
    Hex = 1,
    /// Base64, standard or URL-safe, padding optional.
    Base64 = 2,
    /// PEM text (PKCS#8, SEC 1 or PKCS#1).
    Pem = 3,
    /// An ASCII-armored OpenPGP secret key (v4, RSA or Ed25519), unlocked with the field the
    /// manifest names in `passphrase_field` (world 1.3.0).
    OpenPgp = 4,
    /// Base32 (RFC 4648) as authenticator apps show a TOTP secret: either case, padding
    /// optional, spaces and `-` ignored (world 1.3.0).
    Base32 = 5,
}

/// Why the host refused (the WIT enum `key-error`). Never carries any part of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The call has no credential.
    NoCredential,
    /// The credential's type declares no field of that name, or it is not set.
    UnknownField,
    /// The value is not written in the format given.
    BadFormat,
    /// The decoded bytes are not a key of that kind.
    BadKey,
    /// The data is not what the operation takes (e.g. a digest that is not 32 bytes).
    BadInput,
}

impl KeyError {
    /// The case's name, as the WIT enum spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyError::NoCredential => "no-credential",
            KeyError::UnknownField => "unknown-field",
            KeyError::BadFormat => "bad-format",
            KeyError::BadKey => "bad-key",
            KeyError::BadInput => "bad-input",
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn from_case(case: u8) -> KeyError {
        match case {
            0 => KeyError::NoCredential,
            1 => KeyError::UnknownField,
            2 => KeyError::BadFormat,
            3 => KeyError::BadKey,
            _ => KeyError::BadInput,
        }
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the host refused the key operation: {}", self.as_str())
    }
}

impl std::error::Error for KeyError {}

/// `?` in an action: `bad-input` is the caller's (`invalid_params`), the rest the
/// credential's (`invalid_credential`).
impl From<KeyError> for crate::Error {
    fn from(e: KeyError) -> crate::Error {
        match e {
            KeyError::BadInput => crate::Error::invalid_params(e),
            _ => crate::Error::invalid_credential(e),
        }
    }
}

/// What a native build's key functions answer: `(function, field, format, data)`.
pub type NativeHost = fn(&str, &str, KeyFormat, &[u8]) -> Result<Vec<u8>, KeyError>;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE: std::cell::Cell<Option<NativeHost>> = std::cell::Cell::new(None);
}

/// For native tests only: answer this thread's key operations with `host` (a stand-in for
/// Vultrino, which computes them on wasm). No effect in a wasm build.
pub fn set_native_host(host: Option<NativeHost>) {
    #[cfg(not(target_arch = "wasm32"))]
    NATIVE.with(|n| n.set(host));
    #[cfg(target_arch = "wasm32")]
    let _ = host;
}

#[cfg(not(target_arch = "wasm32"))]
fn native(function: &str, field: &str, format: KeyFormat, data: &[u8]) -> Result<Vec<u8>, KeyError> {
    match NATIVE.with(|n| n.get()) {
        Some(host) => host(function, field, format, data),
        None => Err(KeyError::NoCredential),
    }
}

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "vultrino:plugin/keys@1.3.0")]
    extern "C" {
        #[link_name = "hmac-sha1"]
        pub fn hmac_sha1(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "hmac-sha256"]
        pub fn hmac_sha256(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "hmac-sha512"]
        pub fn hmac_sha512(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "hmac-sha384"]
        pub fn hmac_sha384(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "ed25519-sign"]
        pub fn ed25519_sign(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "p256-sign"]
        pub fn p256_sign(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "secp256k1-sign"]
        pub fn secp256k1_sign(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "rsa-sign-pkcs1-sha256"]
        pub fn rsa_sign_pkcs1_sha256(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "rsa-sign-pss-sha256"]
        pub fn rsa_sign_pss_sha256(f: *const u8, fl: usize, fmt: i32, d: *const u8, dl: usize, r: *mut u8);
        #[link_name = "ed25519-public-key"]
        pub fn ed25519_public_key(f: *const u8, fl: usize, fmt: i32, r: *mut u8);
        #[link_name = "p256-public-key"]
        pub fn p256_public_key(f: *const u8, fl: usize, fmt: i32, r: *mut u8);
        #[link_name = "secp256k1-public-key"]
        pub fn secp256k1_public_key(f: *const u8, fl: usize, fmt: i32, r: *mut u8);
        #[link_name = "rsa-public-key"]
        pub fn rsa_public_key(f: *const u8, fl: usize, fmt: i32, r: *mut u8);
        #[link_name = "openpgp-public-key"]
        pub fn openpgp_public_key(f: *const u8, fl: usize, fmt: i32, r: *mut u8);
        #[link_name = "ed25519-verify"]
        pub fn ed25519_verify(k: *const u8, kl: usize, m: *const u8, ml: usize, s: *const u8, sl: usize) -> i32;
        #[link_name = "rsa-verify-pkcs1-sha256"]
        pub fn rsa_verify_pkcs1_sha256(k: *const u8, kl: usize, m: *const u8, ml: usize, s: *const u8, sl: usize) -> i32;
        #[link_name = "rsa-verify-pkcs1-sha512"]
        pub fn rsa_verify_pkcs1_sha512(k: *const u8, kl: usize, m: *const u8, ml: usize, s: *const u8, sl: usize) -> i32;
        pub fn sha256(d: *const u8, dl: usize, r: *mut u8);
        pub fn sha512(d: *const u8, dl: usize, r: *mut u8);
        pub fn keccak256(d: *const u8, dl: usize, r: *mut u8);
    }
}

/// The `result<list<u8>, key-error>` the host wrote in `ret` (12 bytes, aligned 4).
#[cfg(target_arch = "wasm32")]
fn lift(ret: &[u32; 3]) -> Result<Vec<u8>, KeyError> {
    let tag = ret[0] & 0xff;
    if tag != 0 {
        return Err(KeyError::from_case((ret[1] & 0xff) as u8));
    }
    Ok(take(ret[1], ret[2]))
}

/// The bytes the host placed with our `cabi_realloc(0, 0, 1, len)`: ours to own and free.
#[cfg(target_arch = "wasm32")]
fn take(ptr: u32, len: u32) -> Vec<u8> {
    let len = len as usize;
    if len == 0 {
        return Vec::new();
    }
    // SAFETY: the host allocated exactly `len` bytes, align 1, through `cabi_realloc`.
    unsafe { Vec::from_raw_parts(ptr as *mut u8, len, len) }
}

macro_rules! sign_fns {
    ($($(#[$doc:meta])* $name:ident / $with:ident = $wit:literal;)*) => {$(
        $(#[$doc])*
        /// `_with` names the field's [`KeyFormat`]; this form uses [`KeyFormat::Raw`].
        pub fn $name(field: &str, data: &[u8]) -> Result<Vec<u8>, KeyError> {
            $with(field, KeyFormat::Raw, data)
        }

        $(#[$doc])*
        pub fn $with(field: &str, format: KeyFormat, data: &[u8]) -> Result<Vec<u8>, KeyError> {
            #[cfg(target_arch = "wasm32")]
            {
                let mut ret = [0u32; 3];
                // SAFETY: the host reads the two ranges during the call and writes 12 bytes
                // at `ret`, which is 4-aligned.
                unsafe {
                    imports::$name(
                        field.as_ptr(), field.len(), format as i32,
                        data.as_ptr(), data.len(), ret.as_mut_ptr() as *mut u8,
                    )
                };
                lift(&ret)
            }
            #[cfg(not(target_arch = "wasm32"))]
            native($wit, field, format, data)
        }
    )*};
}

macro_rules! public_fns {
    ($($(#[$doc:meta])* $name:ident / $with:ident = $wit:literal;)*) => {$(
        $(#[$doc])*
        /// `_with` names the field's [`KeyFormat`]; this form uses [`KeyFormat::Raw`].
        pub fn $name(field: &str) -> Result<Vec<u8>, KeyError> {
            $with(field, KeyFormat::Raw)
        }

        $(#[$doc])*
        pub fn $with(field: &str, format: KeyFormat) -> Result<Vec<u8>, KeyError> {
            #[cfg(target_arch = "wasm32")]
            {
                let mut ret = [0u32; 3];
                // SAFETY: as for the signing functions.
                unsafe {
                    imports::$name(field.as_ptr(), field.len(), format as i32,
                                   ret.as_mut_ptr() as *mut u8)
                };
                lift(&ret)
            }
            #[cfg(not(target_arch = "wasm32"))]
            native($wit, field, format, &[])
        }
    )*};
}

macro_rules! hash_fns {
    ($($(#[$doc:meta])* $name:ident = $wit:literal;)*) => {$(
        $(#[$doc])*
        pub fn $name(data: &[u8]) -> Vec<u8> {
            #[cfg(target_arch = "wasm32")]
            {
                let mut ret = [0u32; 2];
                // SAFETY: the host reads `data` and writes 8 bytes at `ret`.
                unsafe { imports::$name(data.as_ptr(), data.len(), ret.as_mut_ptr() as *mut u8) };
                take(ret[0], ret[1])
            }
            #[cfg(not(target_arch = "wasm32"))]
            native($wit, "", KeyFormat::Raw, data).unwrap_or_default()
        }
    )*};
}

macro_rules! verify_fns {
    ($($(#[$doc:meta])* $name:ident = $wit:literal;)*) => {$(
        $(#[$doc])*
        ///
        /// No credential is involved: the key is the one passed. False for anything that does
        /// not verify, a malformed key or signature included. (Natively the stand-in host gets
        /// `data` = key length (u32 LE) ‖ key ‖ message length (u32 LE) ‖ message ‖ signature
        /// and answers `[1]` for valid.)
        pub fn $name(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
            #[cfg(target_arch = "wasm32")]
            {
                // SAFETY: the host only reads the three ranges during the call.
                unsafe {
                    imports::$name(
                        public_key.as_ptr(), public_key.len(), message.as_ptr(), message.len(),
                        signature.as_ptr(), signature.len(),
                    ) != 0
                }
            }
            #[cfg(not(target_arch = "wasm32"))]
            {
                let mut data = Vec::new();
                data.extend_from_slice(&(public_key.len() as u32).to_le_bytes());
                data.extend_from_slice(public_key);
                data.extend_from_slice(&(message.len() as u32).to_le_bytes());
                data.extend_from_slice(message);
                data.extend_from_slice(signature);
                native($wit, "", KeyFormat::Raw, &data).map(|v| v == [1]).unwrap_or(false)
            }
        }
    )*};
}

sign_fns! {
    /// HMAC-SHA1 of `data` keyed by the field (20 bytes).
    hmac_sha1 / hmac_sha1_with = "hmac-sha1";
    /// HMAC-SHA256 of `data` keyed by the field (32 bytes).
    hmac_sha256 / hmac_sha256_with = "hmac-sha256";
    /// HMAC-SHA512 of `data` keyed by the field (64 bytes).
    hmac_sha512 / hmac_sha512_with = "hmac-sha512";
    /// HMAC-SHA384 of `data` keyed by the field (48 bytes; JWS HS384; world 1.3.0).
    hmac_sha384 / hmac_sha384_with = "hmac-sha384";
    /// Ed25519 signature of `data` (64 bytes).
    ed25519_sign / ed25519_sign_with = "ed25519-sign";
    /// ECDSA P-256 over SHA-256 of `data`: `r || s` (64 bytes).
    p256_sign / p256_sign_with = "p256-sign";
    /// secp256k1 over the 32-byte digest `data` (RFC 6979, low s): `r || s || v` (65 bytes).
    secp256k1_sign / secp256k1_sign_with = "secp256k1-sign";
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RS256).
    rsa_sign_pkcs1_sha256 / rsa_sign_pkcs1_sha256_with = "rsa-sign-pkcs1-sha256";
    /// RSASSA-PSS with SHA-256 and a 32-byte salt (PS256).
    rsa_sign_pss_sha256 / rsa_sign_pss_sha256_with = "rsa-sign-pss-sha256";
}

public_fns! {
    /// The 32-byte Ed25519 public key.
    ed25519_public_key / ed25519_public_key_with = "ed25519-public-key";
    /// The P-256 public key, SEC 1 uncompressed (65 bytes).
    p256_public_key / p256_public_key_with = "p256-public-key";
    /// The secp256k1 public key, SEC 1 uncompressed (65 bytes).
    secp256k1_public_key / secp256k1_public_key_with = "secp256k1-public-key";
    /// The RSA public key, DER SubjectPublicKeyInfo.
    rsa_public_key / rsa_public_key_with = "rsa-public-key";
    /// The transferable OpenPGP public key of a [`KeyFormat::OpenPgp`] field, binary, as
    /// `gpg --export` writes it (world 1.3.0).
    openpgp_public_key / openpgp_public_key_with = "openpgp-public-key";
}

verify_fns! {
    /// Whether `signature` (64 bytes) is the Ed25519 signature of `message` under the 32-byte
    /// `public_key` (world 1.3.0).
    ed25519_verify = "ed25519-verify";
    /// Whether `signature` is RSASSA-PKCS1-v1_5 with SHA-256 of `message` under `public_key`
    /// (DER SubjectPublicKeyInfo) (world 1.3.0).
    rsa_verify_pkcs1_sha256 = "rsa-verify-pkcs1-sha256";
    /// As [`rsa_verify_pkcs1_sha256`], with SHA-512 (world 1.3.0).
    rsa_verify_pkcs1_sha512 = "rsa-verify-pkcs1-sha512";
}

hash_fns! {
    /// SHA-256 of `data`.
    sha256 = "sha256";
    /// SHA-512 of `data`.
    sha512 = "sha512";
    /// Keccak-256 of `data`, as Ethereum uses it (not SHA3-256).
    keccak256 = "keccak256";
}
