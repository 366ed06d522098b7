//! jwt — mint and verify HMAC-signed JSON Web Tokens (RFC 7519, HS256/HS384/HS512).
//!
//! The agent chooses claims and a lifetime, and the plugin never holds the signing key either:
//! the field is declared `access = "host"`, so the request carries it as nil and Vultrino
//! computes each token's HMAC (`vultrino_pdk::keys`; HS384 with world 1.3.0's `hmac-sha384`).

use data_encoding::BASE64URL_NOPAD;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use vultrino_pdk::keys::{self, KeyError};
use vultrino_pdk::{actions, log, Error, Result};

actions! {
    "mint" => mint,
    "verify" => verify,
}

/// Longest lifetime `mint` accepts: ten years.
pub const MAX_TTL: i64 = 10 * 366 * 24 * 3600;

/// The credential field the host keeps (its text's UTF-8 bytes are the HMAC key).
const SECRET_FIELD: &str = "secret";

/// The fields of the `jwt_key` credential type.
#[derive(Deserialize)]
pub struct JwtKey {
    /// nil: the host keeps the value. Still required, so that a credential without it says so.
    pub secret: IgnoredAny,
    #[serde(default)]
    pub algorithm: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Hs256,
    Hs384,
    Hs512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// The MAC of `message`, computed by the host with the credential's secret.
    fn sign(self, message: &[u8]) -> Result<Vec<u8>> {
        let mac = match self {
            Algorithm::Hs256 => keys::hmac_sha256(SECRET_FIELD, message),
            Algorithm::Hs384 => keys::hmac_sha384(SECRET_FIELD, message),
            Algorithm::Hs512 => keys::hmac_sha512(SECRET_FIELD, message),
        };
        mac.map_err(|e| match e {
            KeyError::UnknownField => Error::invalid_credential("secret is empty"),
            other => Error::from(other),
        })
    }

    /// Whether `signature` is the host's MAC of `message`, compared in constant time.
    fn verify(self, message: &[u8], signature: &[u8]) -> Result<bool> {
        let expected = self.sign(message)?;
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

/// The key's settings, checked.
pub struct Key {
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: Option<String>,
}

impl Key {
    pub fn from_fields(fields: JwtKey) -> Result<Key> {
        let algorithm = match fields.algorithm.as_deref().map(str::trim) {
            None | Some("") => Algorithm::Hs256,
            Some(name) => match name.to_ascii_uppercase().as_str() {
                "HS256" => Algorithm::Hs256,
                "HS384" => Algorithm::Hs384,
                "HS512" => Algorithm::Hs512,
                _ => {
                    // a missing secret is reported first, as when the plugin held it
                    Algorithm::Hs256.sign(b"")?;
                    return Err(Error::invalid_credential(
                        "algorithm must be one of HS256, HS384, HS512",
                    ));
                }
            },
        };
        let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
        Ok(Key {
            algorithm,
            issuer: non_empty(fields.issuer),
            audience: non_empty(fields.audience),
        })
    }
}

#[derive(Deserialize)]
pub struct MintParams {
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    #[serde(default)]
    pub ttl: Option<i64>,
    #[serde(default)]
    pub subject: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct Minted {
    pub token: String,
    pub expires_at: i64,
}

/// `mint`: a signed token with `claims`, `iat` = now and `exp` = now + `ttl`.
pub fn mint(params: MintParams, key: JwtKey) -> Result<Minted> {
    let key = Key::from_fields(key)?;
    let algorithm = key.algorithm;
    let minted = mint_at(params, key, now()?);
    if minted.is_err() {
        // a missing secret is the answer even where the MAC was not reached (a bad parameter),
        // as when the plugin held the key: one more host call, on this path only
        algorithm.sign(b"")?;
    }
    minted
}

pub fn mint_at(params: MintParams, key: Key, now: i64) -> Result<Minted> {
    let ttl = params.ttl.unwrap_or(3600);
    if ttl < 1 || ttl > MAX_TTL {
        return Err(Error::invalid_params(format!(
            "ttl must be from 1 to {} seconds",
            MAX_TTL
        )));
    }
    let mut claims = params.claims.unwrap_or_default();
    for reserved in ["exp", "iat"] {
        if claims.contains_key(reserved) {
            return Err(Error::invalid_params(format!(
                "claims must not set `{}`: the plugin sets it (use ttl for the lifetime)",
                reserved
            )));
        }
    }
    if let Some(subject) = params.subject {
        match claims.get("sub") {
            Some(existing) if existing != &Value::String(subject.clone()) => {
                return Err(Error::invalid_params("subject and claims.sub disagree"));
            }
            _ => {
                claims.insert("sub".into(), Value::String(subject));
            }
        }
    }
    if let Some(issuer) = key.issuer {
        claims.entry("iss").or_insert(Value::String(issuer));
    }
    if let Some(audience) = key.audience {
        claims.entry("aud").or_insert(Value::String(audience));
    }
    let expires_at = now + ttl;
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(expires_at));

    let header = format!("{{\"alg\":\"{}\",\"typ\":\"JWT\"}}", key.algorithm.name());
    let payload = serde_json::to_vec(&claims).map_err(Error::failed)?;
    let signing_input = format!(
        "{}.{}",
        BASE64URL_NOPAD.encode(header.as_bytes()),
        BASE64URL_NOPAD.encode(&payload)
    );
    let signature = key.algorithm.sign(signing_input.as_bytes())?;
    log!(
        info,
        "minted a {} token valid for {} s",
        key.algorithm.name(),
        ttl
    );
    Ok(Minted {
        token: format!("{}.{}", signing_input, BASE64URL_NOPAD.encode(&signature)),
        expires_at,
    })
}

#[derive(Deserialize)]
pub struct VerifyParams {
    pub token: String,
    #[serde(default)]
    pub leeway: Option<i64>,
}

#[derive(Serialize, Debug)]
pub struct Verdict {
    pub valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    fn invalid(reason: impl Into<String>) -> Verdict {
        Verdict {
            valid: false,
            claims: None,
            reason: Some(reason.into()),
        }
    }
}

/// `verify`: `{valid: true, claims}` or `{valid: false, reason}`. Only a malformed request is an
/// error; a bad token is an answer.
pub fn verify(params: VerifyParams, key: JwtKey) -> Result<Verdict> {
    let key = Key::from_fields(key)?;
    let algorithm = key.algorithm;
    let verdict = verify_at(params, key, now()?);
    if !matches!(verdict, Ok(Verdict { valid: true, .. })) {
        // as in mint: a missing secret first, also for a token refused before its MAC
        algorithm.sign(b"")?;
    }
    verdict
}

pub fn verify_at(params: VerifyParams, key: Key, now: i64) -> Result<Verdict> {
    let leeway = params.leeway.unwrap_or(0);
    if !(0..=86_400).contains(&leeway) {
        return Err(Error::invalid_params(
            "leeway must be from 0 to 86400 seconds",
        ));
    }
    let token = params.token.trim();
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Ok(Verdict::invalid(
            "malformed token: expected three dot-separated parts",
        ));
    }
    let header = match decode_json(parts[0]) {
        Some(h) => h,
        None => {
            return Ok(Verdict::invalid(
                "malformed token: the header is not base64url JSON",
            ))
        }
    };
    match header.get("alg").and_then(Value::as_str) {
        Some(alg) if alg == key.algorithm.name() => {}
        Some(alg) => {
            let alg: String = alg.chars().take(16).collect();
            return Ok(Verdict::invalid(format!(
                "algorithm {:?} is not allowed: this key signs with {}",
                alg,
                key.algorithm.name()
            )));
        }
        None => return Ok(Verdict::invalid("malformed token: the header has no alg")),
    }
    let signature = match BASE64URL_NOPAD.decode(parts[2].as_bytes()) {
        Ok(s) => s,
        Err(_) => {
            return Ok(Verdict::invalid(
                "malformed token: the signature is not base64url",
            ))
        }
    };
    let signing_input = &token[..parts[0].len() + 1 + parts[1].len()];
    if !key.algorithm.verify(signing_input.as_bytes(), &signature)? {
        return Ok(Verdict::invalid("signature does not match"));
    }
    let claims = match decode_json(parts[1]) {
        Some(c) => c,
        None => {
            return Ok(Verdict::invalid(
                "malformed token: the payload is not a JSON object",
            ))
        }
    };
    if let Some(reason) = check_claims(&claims, &key, now, leeway) {
        return Ok(Verdict::invalid(reason));
    }
    Ok(Verdict {
        valid: true,
        claims: Some(claims),
        reason: None,
    })
}

fn check_claims(claims: &Map<String, Value>, key: &Key, now: i64, leeway: i64) -> Option<String> {
    let time = |name: &str| -> std::result::Result<Option<f64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or(format!("`{}` is not a number", name)),
        }
    };
    let (now, leeway) = (now as f64, leeway as f64);
    match time("exp") {
        Err(e) => return Some(e),
        Ok(Some(exp)) if now >= exp + leeway => return Some("token expired".into()),
        _ => {}
    }
    match time("nbf") {
        Err(e) => return Some(e),
        Ok(Some(nbf)) if nbf > now + leeway => return Some("token not valid yet (nbf)".into()),
        _ => {}
    }
    match time("iat") {
        Err(e) => return Some(e),
        Ok(Some(iat)) if iat > now + leeway => {
            return Some("token issued in the future (iat)".into())
        }
        _ => {}
    }
    if let Some(issuer) = &key.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Some("issuer does not match".into());
        }
    }
    let aud = claims.get("aud");
    match (&key.audience, aud) {
        (Some(audience), Some(Value::String(a))) if a == audience => None,
        (Some(audience), Some(Value::Array(list)))
            if list.iter().any(|a| a.as_str() == Some(audience.as_str())) =>
        {
            None
        }
        (Some(_), _) => Some("audience does not match".into()),
        // RFC 7519 4.1.3: a token for an audience we cannot claim to be is rejected.
        (None, Some(_)) => Some("token has an audience but this key defines none".into()),
        (None, None) => None,
    }
}

fn decode_json(part: &str) -> Option<Map<String, Value>> {
    let bytes = BASE64URL_NOPAD.decode(part.as_bytes()).ok()?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn now() -> Result<i64> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::failed("the clock is before 1970"))?;
    Ok(since.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use vultrino_pdk::keys::KeyFormat;

    const SECRET: &str = "a-very-long-test-secret-of-at-least-sixty-four-bytes-for-hs512-ok!";

    /// A stand-in for the host's keys interface, natively: HMAC with the `hmac` crate over
    /// SECRET (Vultrino does this on wasm).
    fn host(
        function: &str,
        field: &str,
        format: KeyFormat,
        data: &[u8],
    ) -> std::result::Result<Vec<u8>, KeyError> {
        assert_eq!((field, format), (SECRET_FIELD, KeyFormat::Raw));
        fn mac<M: Mac + hmac::digest::KeyInit>(data: &[u8]) -> Vec<u8> {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        Ok(match function {
            "hmac-sha256" => mac::<Hmac<sha2::Sha256>>(data),
            "hmac-sha384" => mac::<Hmac<sha2::Sha384>>(data),
            "hmac-sha512" => mac::<Hmac<sha2::Sha512>>(data),
            other => panic!("unexpected key function {}", other),
        })
    }

    fn key(alg: &str, issuer: Option<&str>, audience: Option<&str>) -> Key {
        keys::set_native_host(Some(host));
        Key::from_fields(JwtKey {
            secret: IgnoredAny,
            algorithm: Some(alg.into()),
            issuer: issuer.map(String::from),
            audience: audience.map(String::from),
        })
        .unwrap()
    }

    fn mint_simple(k: Key, now: i64, ttl: i64) -> String {
        let mut claims = Map::new();
        claims.insert("role".into(), Value::from("reader"));
        let params = MintParams {
            claims: Some(claims),
            ttl: Some(ttl),
            subject: Some("ada".into()),
        };
        mint_at(params, k, now).unwrap().token
    }

    fn check(token: &str, k: Key, now: i64) -> Verdict {
        verify_at(
            VerifyParams {
                token: token.into(),
                leeway: None,
            },
            k,
            now,
        )
        .unwrap()
    }

    #[test]
    fn rfc7515_a1_hs256() {
        // RFC 7515 A.1: the JWS signing input and key (base64url) give this signature
        fn rfc_host(
            function: &str,
            _field: &str,
            _format: KeyFormat,
            data: &[u8],
        ) -> std::result::Result<Vec<u8>, KeyError> {
            assert_eq!(function, "hmac-sha256");
            let key = BASE64URL_NOPAD
                .decode(b"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
                .unwrap();
            let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).unwrap();
            m.update(data);
            Ok(m.finalize().into_bytes().to_vec())
        }
        keys::set_native_host(Some(rfc_host));
        let input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
        let sig = Algorithm::Hs256.sign(input.as_bytes()).unwrap();
        assert_eq!(
            BASE64URL_NOPAD.encode(&sig),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn mint_then_verify_round_trips() {
        for alg in ["HS256", "HS384", "HS512"] {
            let token = mint_simple(key(alg, Some("me"), Some("you")), 1000, 60);
            let verdict = check(&token, key(alg, Some("me"), Some("you")), 1030);
            assert!(verdict.valid, "{:?}", verdict.reason);
            let claims = verdict.claims.unwrap();
            assert_eq!(claims["sub"], "ada");
            assert_eq!(claims["iss"], "me");
            assert_eq!(claims["exp"], 1060);
        }
    }

    #[test]
    fn rejects_expired_tampered_and_wrong_algorithm() {
        let token = mint_simple(key("HS256", None, None), 1000, 60);
        assert_eq!(
            check(&token, key("HS256", None, None), 1060)
                .reason
                .unwrap(),
            "token expired"
        );
        assert!(!check(&token, key("HS512", None, None), 1001).valid);
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert!(!check(&tampered, key("HS256", None, None), 1001).valid);
        assert!(!check("a.b", key("HS256", None, None), 1001).valid);
    }

    #[test]
    fn reserved_claims_and_bad_ttl_are_param_errors() {
        let mut claims = Map::new();
        claims.insert("exp".into(), Value::from(5));
        let params = MintParams {
            claims: Some(claims),
            ttl: None,
            subject: None,
        };
        assert!(mint_at(params, key("HS256", None, None), 0).is_err());
        let params = MintParams {
            claims: None,
            ttl: Some(0),
            subject: None,
        };
        assert!(mint_at(params, key("HS256", None, None), 0).is_err());
    }
}
