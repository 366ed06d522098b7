//! HTTP requests the host authenticates (world 1.3.0, `interface http` of
//! `wit/vultrino-plugin.wit`).
//!
//! The plugin names one of the auth schemes its plugin.toml declares under `[http] auth`; the
//! host adds the credential (a bearer token, an API key header, basic auth, an OAuth2 token it
//! obtains and refreshes, an HMAC signature) and sends the request only to a host `[http]
//! hosts` lists, within the credential's allowlist. The plugin gets the response, scrubbed of
//! the credential's secrets, and never holds the credential itself.
//!
//! ```ignore
//! use vultrino_pdk::http;
//! let resp = http::post("https://api.github.com/repos/o/r/issues")
//!     .auth("bearer")
//!     .header("Accept", "application/vnd.github+json")
//!     .json(&NewIssue { title, body })?
//!     .send()?;
//! if resp.status != 201 { ... }
//! ```
//!
//! Natively (`cargo test`) there is no host: [`Request::send`] answers what a stand-in set
//! with [`set_native_host`] answers, or a `no-credential` [`HttpError`] without one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The host refused or could not send the request. Never carries the credential.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HttpError {
    /// `no-credential`, `unknown-auth`, `host-not-declared`, `denied`, `invalid-request` or
    /// `failed` (see the WIT file).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for HttpError {}

/// `?` in an action: a request the plugin built badly is `invalid_params`, a call without a
/// credential `invalid_credential`, anything else `failed`.
impl From<HttpError> for crate::Error {
    fn from(e: HttpError) -> crate::Error {
        match e.code.as_str() {
            "invalid-request" => crate::Error::invalid_params(e),
            "no-credential" => crate::Error::invalid_credential(e),
            _ => crate::Error::failed(e),
        }
    }
}

/// What came back (any HTTP status: check [`Response::status`]).
#[derive(Debug, Clone, Deserialize)]
pub struct Response {
    pub status: u16,
    /// Lowercase names; repeated headers joined with ", ".
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body as text (`body_encoding` "text") or base64 ("base64").
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub body_encoding: String,
    /// The final URL, after redirects.
    #[serde(default)]
    pub url: String,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    ok: Option<Response>,
    #[serde(default)]
    error: Option<HttpError>,
}

/// A request being built; [`Request::send`] hands it to the host.
#[derive(Debug, Clone)]
pub struct Request {
    entries: Vec<(&'static str, Vec<u8>)>,
    headers: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    error: Option<String>,
}

/// A request with `method` (`GET`, `POST`, ...) to `url` (absolute; the host must be one of
/// `[http] hosts`).
pub fn request(method: &str, url: &str) -> Request {
    let mut r = Request { entries: Vec::new(), headers: BTreeMap::new(), query: BTreeMap::new(), error: None };
    r.put("method", &method.to_ascii_uppercase());
    r.put("url", &url);
    r
}

/// A `GET` request.
pub fn get(url: &str) -> Request {
    request("GET", url)
}

/// A `POST` request.
pub fn post(url: &str) -> Request {
    request("POST", url)
}

/// A `PATCH` request.
pub fn patch(url: &str) -> Request {
    request("PATCH", url)
}

impl Request {
    fn put<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) {
        match rmp_serde::to_vec_named(value) {
            Ok(bytes) => {
                self.entries.retain(|(k, _)| *k != key);
                self.entries.push((key, bytes));
            }
            Err(e) => self.error = Some(format!("{key} cannot be encoded: {e}")),
        }
    }

    /// The auth scheme the host adds: one of `[http] auth` in plugin.toml (`bearer`,
    /// `api_key`, `basic_auth`, `oauth2`, `hmac_api_key`).
    pub fn auth(mut self, scheme: &str) -> Self {
        self.put("auth", scheme);
        self
    }

    /// A request header (the credential's own header cannot be overridden).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_string(), value.to_string());
        self
    }

    /// A query parameter, added to the URL's.
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.insert(name.to_string(), value.to_string());
        self
    }

    /// A text body.
    pub fn body(mut self, text: &str) -> Self {
        self.put("body", text);
        self
    }

    /// A JSON body (`Content-Type: application/json` unless a header sets it).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.put("json", value);
        self
    }

    /// Seconds for the whole request (default 30; the plugin call's own deadline still holds).
    pub fn timeout(mut self, seconds: f64) -> Self {
        self.put("timeout", &seconds);
        self
    }

    /// The request as the host reads it: a MessagePack map.
    pub fn to_msgpack(&self) -> Result<Vec<u8>, HttpError> {
        if let Some(e) = &self.error {
            return Err(HttpError { code: "invalid-request".into(), message: e.clone() });
        }
        let mut entries = self.entries.clone();
        let encode = |m: &BTreeMap<String, String>| rmp_serde::to_vec_named(m).unwrap_or_default();
        if !self.headers.is_empty() {
            entries.push(("headers", encode(&self.headers)));
        }
        if !self.query.is_empty() {
            entries.push(("query", encode(&self.query)));
        }
        let mut out = Vec::new();
        let n = entries.len();
        out.push(0x80 | n as u8); // fixmap: at most 9 keys
        for (key, value) in entries {
            out.push(0xa0 | key.len() as u8); // fixstr: the keys are short
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&value);
        }
        Ok(out)
    }

    /// Send it through the host. `Err` when the host refused or could not send it; any HTTP
    /// status is `Ok`.
    pub fn send(self) -> Result<Response, HttpError> {
        let bytes = self.to_msgpack()?;
        let answer = send_bytes(&bytes);
        match rmp_serde::from_slice::<Answer>(&answer) {
            Ok(Answer { ok: Some(resp), .. }) => Ok(resp),
            Ok(Answer { error: Some(e), .. }) => Err(e),
            _ => Err(HttpError { code: "failed".into(), message: "the host's answer could not be read".into() }),
        }
    }
}

/// What a native build's `send` answers: the request's MessagePack bytes in, the answer's out.
pub type NativeHost = fn(&[u8]) -> Vec<u8>;

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE: std::cell::Cell<Option<NativeHost>> = std::cell::Cell::new(None);
}

/// For native tests only: answer this thread's requests with `host` (a stand-in for Vultrino).
/// No effect in a wasm build.
pub fn set_native_host(host: Option<NativeHost>) {
    #[cfg(not(target_arch = "wasm32"))]
    NATIVE.with(|n| n.set(host));
    #[cfg(target_arch = "wasm32")]
    let _ = host;
}

#[cfg(target_arch = "wasm32")]
mod imports {
    #[link(wasm_import_module = "vultrino:plugin/http@1.3.0")]
    extern "C" {
        pub fn send(ptr: *const u8, len: usize, ret: *mut u8);
    }
}

fn send_bytes(request: &[u8]) -> Vec<u8> {
    #[cfg(target_arch = "wasm32")]
    {
        let mut ret = [0u32; 2];
        // SAFETY: the host reads `request` during the call and writes 8 bytes at `ret`; the
        // answer it placed with our `cabi_realloc(0, 0, 1, len)` is ours to own.
        unsafe { imports::send(request.as_ptr(), request.len(), ret.as_mut_ptr() as *mut u8) };
        let len = ret[1] as usize;
        if len == 0 {
            return Vec::new();
        }
        unsafe { Vec::from_raw_parts(ret[0] as *mut u8, len, len) }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        match NATIVE.with(|n| n.get()) {
            Some(host) => host(request),
            None => rmp_serde::to_vec_named(&serde_json_free_error()).unwrap_or_default(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn serde_json_free_error() -> BTreeMap<&'static str, BTreeMap<&'static str, &'static str>> {
    let mut inner = BTreeMap::new();
    inner.insert("code", "no-credential");
    inner.insert("message", "no host: set one with vultrino_pdk::http::set_native_host");
    let mut outer = BTreeMap::new();
    outer.insert("error", inner);
    outer
}
