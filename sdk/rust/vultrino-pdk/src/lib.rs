//! The guest side of Vultrino's plugin ABI (ABI 2), shared by every Rust plugin.
//!
//! A plugin crate depends on `vultrino-pdk`, writes its actions as plain functions and
//! registers them once with [`actions!`]; the macro also emits the plugin's wasm exports. The
//! glue implements by hand exactly the core-wasm interface that `wit-bindgen` generates for the
//! `plugin` world of `wit/vultrino-plugin.wit`, so the host cannot tell the difference and a
//! plugin can switch to `wit-bindgen` later without changing anything for Vultrino:
//!
//! | kind   | name                                               | core signature                 |
//! |--------|----------------------------------------------------|--------------------------------|
//! | export | `memory`                                           | linear memory                  |
//! | export | `cabi_realloc`                                     | `(i32, i32, i32, i32) -> i32`  |
//! | export | `vultrino:plugin/handler@1.3.0#execute`            | `(ptr, len) -> retptr`         |
//! | export | `cabi_post_vultrino:plugin/handler@1.3.0#execute`  | `(retptr) -> ()`               |
//! | export | `vultrino:plugin/handler@1.3.0#execute-text`       | `(ptr, len) -> retptr`         |
//! | export | `cabi_post_vultrino:plugin/handler@1.3.0#execute-text` | `(retptr) -> ()`           |
//! | import | `vultrino:plugin/host@1.3.0` `log`                 | `(level, ptr, len) -> ()`      |
//!
//! `execute-text` (world 1.1.0) is `execute` with every byte carried as the character of the
//! same value (Latin-1), in UTF-8: the component model copies a string in bulk, so a plugin
//! built as a component moves large requests and results about as fast as a core module. A
//! core module never needs it (the host reads its memory directly); the glue converts and
//! calls the same `handle`, so both answer alike.
//!
//! The request is a MessagePack map `{"action", "params", "credential": {"alias", "type",
//! "fields"} | nil}`; the response is `{"ok": value}` or `{"error": {"code", "message"}}`.
//! Actions are plain functions registered with [`actions!`]:
//!
//! * `fn(P) -> Result<O>` for actions that need no credential,
//! * `fn(P, C) -> Result<O>` where `C` is decoded from the credential's `fields`,
//!
//! with `P: Deserialize` (the params), `O: Serialize` (the `ok` value). Decoding failures become
//! `invalid_params` / `invalid_credential` errors automatically.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

pub mod http;
pub mod keys;

/// Use as the parameter type of an action that takes none.
pub use serde::de::IgnoredAny as NoParams;

/// The result type of an action.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error codes of the ABI (see the ABI reference, docs/plugins/abi.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The parameters are wrong; the caller can fix them.
    InvalidParams,
    /// No action with that name.
    UnknownAction,
    /// The credential's fields are missing or malformed.
    InvalidCredential,
    /// Anything else.
    Failed,
}

impl ErrorCode {
    /// The code as it travels in the response.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::UnknownAction => "unknown_action",
            ErrorCode::InvalidCredential => "invalid_credential",
            ErrorCode::Failed => "failed",
        }
    }
}

/// An action's error; becomes `{"error": {"code", "message"}}`. Never put a secret in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl fmt::Display) -> Self {
        Error {
            code,
            message: message.to_string(),
        }
    }
    pub fn invalid_params(message: impl fmt::Display) -> Self {
        Error::new(ErrorCode::InvalidParams, message)
    }
    pub fn invalid_credential(message: impl fmt::Display) -> Self {
        Error::new(ErrorCode::InvalidCredential, message)
    }
    pub fn failed(message: impl fmt::Display) -> Self {
        Error::new(ErrorCode::Failed, message)
    }
    pub fn unknown_action(action: &str) -> Self {
        Error::new(
            ErrorCode::UnknownAction,
            format!("no action named {:?} in this plugin", action),
        )
    }
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

/// Log levels, numbered as the WIT enum `log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

/// Send one line to the host's plugin log (natively: to stderr, so `cargo test` shows it).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `ptr` during the call; `message` outlives it.
    unsafe {
        __abi::host_log(level as i32, message.as_ptr(), message.len())
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[plugin {:?}] {}", level, message);
}

/// `log!(info, "signed {} bytes", n)` — levels: `debug`, `info`, `warn`, `error`.
#[macro_export]
macro_rules! log {
    (debug, $($arg:tt)+) => { $crate::log($crate::Level::Debug, &format!($($arg)+)) };
    (info, $($arg:tt)+) => { $crate::log($crate::Level::Info, &format!($($arg)+)) };
    (warn, $($arg:tt)+) => { $crate::log($crate::Level::Warn, &format!($($arg)+)) };
    (error, $($arg:tt)+) => { $crate::log($crate::Level::Error, &format!($($arg)+)) };
}

/// Register the plugin's actions: `actions! { "greet" => greet, "sign" => sign_message }`.
/// The names must match `[[actions]] name` in plugin.toml. Use it once, at the crate root: it
/// defines `ACTIONS`, `handle` (the whole request → response step, for native tests) and, on
/// wasm, the plugin's exports.
#[macro_export]
macro_rules! actions {
    ($($name:literal => $func:path),* $(,)?) => {
        /// The action names this plugin implements, as registered with `actions!`.
        pub const ACTIONS: &[&str] = &[$($name),*];

        #[doc(hidden)]
        pub fn __vultrino_dispatch(
            request: &$crate::msgpack::Parts<'_>,
        ) -> $crate::Result<Vec<u8>> {
            match request.action {
                $($name => $crate::run(&$func, request),)*
                other => Err($crate::Error::unknown_action(other)),
            }
        }

        /// The whole request → response step, on every target (the wasm export wraps it;
        /// native tests can call it with MessagePack bytes). Always returns an encoded response.
        pub fn handle(request: &[u8]) -> Vec<u8> {
            $crate::handle_with(request, __vultrino_dispatch)
        }

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[export_name = "cabi_realloc"]
            unsafe extern "C" fn __vultrino_cabi_realloc(
                old_ptr: *mut u8,
                old_size: usize,
                align: usize,
                new_size: usize,
            ) -> *mut u8 {
                $crate::__abi::cabi_realloc(old_ptr, old_size, align, new_size)
            }

            #[export_name = "vultrino:plugin/handler@1.3.0#execute"]
            unsafe extern "C" fn __vultrino_execute(ptr: *mut u8, len: usize) -> *mut u8 {
                $crate::__abi::execute(ptr, len, handle)
            }

            #[export_name = "cabi_post_vultrino:plugin/handler@1.3.0#execute"]
            unsafe extern "C" fn __vultrino_post_execute(retptr: *mut u8) {
                $crate::__abi::post_execute(retptr)
            }

            #[export_name = "vultrino:plugin/handler@1.3.0#execute-text"]
            unsafe extern "C" fn __vultrino_execute_text(ptr: *mut u8, len: usize) -> *mut u8 {
                $crate::__abi::execute_text(ptr, len, handle)
            }

            #[export_name = "cabi_post_vultrino:plugin/handler@1.3.0#execute-text"]
            unsafe extern "C" fn __vultrino_post_execute_text(retptr: *mut u8) {
                $crate::__abi::post_execute(retptr)
            }
        };
    };
}

/// An action function; implemented for `fn(P) -> Result<O>` and `fn(P, C) -> Result<O>`.
pub trait Action<Args> {
    /// Decode what the function needs from the request, call it, encode `{"ok": ...}`.
    fn call(&self, request: &msgpack::Parts<'_>) -> Result<Vec<u8>>;
}

impl<F, P, O> Action<(P,)> for F
where
    F: Fn(P) -> Result<O>,
    P: DeserializeOwned,
    O: Serialize,
{
    fn call(&self, request: &msgpack::Parts<'_>) -> Result<Vec<u8>> {
        let params = decode_params::<P>(request)?;
        encode_ok(&self(params)?)
    }
}

impl<F, P, C, O> Action<(P, C)> for F
where
    F: Fn(P, C) -> Result<O>,
    P: DeserializeOwned,
    C: DeserializeOwned,
    O: Serialize,
{
    fn call(&self, request: &msgpack::Parts<'_>) -> Result<Vec<u8>> {
        let params = decode_params::<P>(request)?;
        let credential = decode_credential::<C>(request)?;
        encode_ok(&self(params, credential)?)
    }
}

#[doc(hidden)]
pub fn run<A: Action<Args>, Args>(action: &A, request: &msgpack::Parts<'_>) -> Result<Vec<u8>> {
    action.call(request)
}

/// The request → response step around a plugin's dispatch function (what `actions!` defines as
/// `handle`). Always returns an encoded response.
#[doc(hidden)]
pub fn handle_with(request: &[u8], dispatch: fn(&msgpack::Parts<'_>) -> Result<Vec<u8>>) -> Vec<u8> {
    let outcome = match msgpack::split_request(request) {
        Ok(parts) => dispatch(&parts),
        Err(e) => Err(Error::invalid_params(format!(
            "not a Vultrino request: {}",
            e
        ))),
    };
    match outcome {
        Ok(bytes) => bytes,
        Err(err) => encode_error(&err),
    }
}

fn decode_params<P: DeserializeOwned>(request: &msgpack::Parts<'_>) -> Result<P> {
    // Absent or nil params decode as an empty map.
    let bytes = request.params.unwrap_or(&[0x80]);
    rmp_serde::from_slice::<P>(bytes).map_err(|e| Error::invalid_params(format!("params: {}", e)))
}

fn decode_credential<C: DeserializeOwned>(request: &msgpack::Parts<'_>) -> Result<C> {
    match request.fields {
        Some(bytes) => rmp_serde::from_slice::<C>(bytes).map_err(|e| {
            Error::invalid_credential(format!(
                "credential fields: {}",
                redact_values(&e.to_string())
            ))
        }),
        // No credential: fine when `C` accepts nil (e.g. `Option<_>`).
        None => rmp_serde::from_slice::<C>(&[0xc0])
            .map_err(|_| Error::invalid_credential("this action needs a credential")),
    }
}

/// Serde quotes offending values (`invalid type: string "hunter2"`); a credential field may be
/// secret, so such values are replaced by their kind before a message leaves the plugin.
fn redact_values(message: &str) -> String {
    const QUOTED: [(&str, char, &str); 4] = [
        ("string \"", '"', "a string"),
        ("integer `", '`', "an integer"),
        ("floating point `", '`', "a number"),
        ("character `", '`', "a character"),
    ];
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let next = QUOTED
            .iter()
            .filter_map(|q| rest.find(q.0).map(|i| (i, q)))
            .min_by_key(|(i, _)| *i);
        let (i, (prefix, close, kind)) = match next {
            Some(found) => found,
            None => break,
        };
        out.push_str(&rest[..i]);
        out.push_str(kind);
        let tail = &rest[i + prefix.len()..];
        let mut end = tail.len();
        let mut escaped = false;
        for (j, ch) in tail.char_indices() {
            if ch == *close && !escaped {
                end = j + ch.len_utf8();
                break;
            }
            escaped = ch == '\\' && !escaped;
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

fn encode_ok<O: Serialize>(value: &O) -> Result<Vec<u8>> {
    #[derive(Serialize)]
    struct Ok<'a, O> {
        ok: &'a O,
    }
    rmp_serde::to_vec_named(&Ok { ok: value })
        .map_err(|e| Error::failed(format!("could not encode the result: {}", e)))
}

fn encode_error(err: &Error) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        code: &'a str,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct Response<'a> {
        error: Body<'a>,
    }
    let response = Response {
        error: Body {
            code: err.code.as_str(),
            message: &err.message,
        },
    };
    // Two short strings in a map always encode.
    rmp_serde::to_vec_named(&response).unwrap_or_default()
}

/// Finds the request's parts by walking the MessagePack bytes without decoding them, so each
/// action's types are decoded straight from their own slice (one small decoder per type).
#[doc(hidden)]
pub mod msgpack {
    pub struct Parts<'a> {
        pub action: &'a str,
        /// The `params` value, `None` when absent or nil.
        pub params: Option<&'a [u8]>,
        /// `credential.fields`, `None` when there is no credential.
        pub fields: Option<&'a [u8]>,
    }

    pub fn split_request(request: &[u8]) -> Result<Parts<'_>, String> {
        let mut action = None;
        let mut params = None;
        let mut fields = None;
        for (key, value) in map_entries(request)? {
            match key {
                "action" => action = Some(read_str(value).ok_or("`action` must be a string")?),
                "params" if value != [0xc0] => params = Some(value),
                "credential" if value != [0xc0] => {
                    for (k, v) in map_entries(value)? {
                        if k == "fields" {
                            fields = Some(v);
                        }
                    }
                    // No `fields`: decode from an empty map, so the action's credential type
                    // reports which field it misses.
                    fields = fields.or(Some(&[0x80][..]));
                }
                _ => {}
            }
        }
        let action = action.ok_or("the request has no `action`")?;
        Ok(Parts {
            action,
            params,
            fields,
        })
    }

    /// The string-keyed entries of a map that fills `bytes` exactly (other keys are skipped).
    fn map_entries(bytes: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
        let (count, mut pos) = match bytes.first() {
            Some(&m) if (0x80..=0x8f).contains(&m) => ((m & 0x0f) as usize, 1),
            Some(0xde) => (be(bytes, 1, 2)? as usize, 3),
            Some(0xdf) => (be(bytes, 1, 4)? as usize, 5),
            _ => return Err("expected a map".into()),
        };
        let mut entries = Vec::new();
        for _ in 0..count {
            let key_end = skip(bytes, pos)?;
            let value_end = skip(bytes, key_end)?;
            if let Some(key) = read_str(&bytes[pos..key_end]) {
                entries.push((key, &bytes[key_end..value_end]));
            }
            pos = value_end;
        }
        if pos != bytes.len() {
            return Err("trailing bytes after the map".into());
        }
        Ok(entries)
    }

    fn read_str(bytes: &[u8]) -> Option<&str> {
        let start = match *bytes.first()? {
            m if (0xa0..=0xbf).contains(&m) => 1,
            0xd9 => 2,
            0xda => 3,
            0xdb => 5,
            _ => return None,
        };
        std::str::from_utf8(bytes.get(start..)?).ok()
    }

    /// A big-endian unsigned integer of `n` bytes at `at`.
    fn be(bytes: &[u8], at: usize, n: usize) -> Result<u64, String> {
        let b = bytes.get(at..at + n).ok_or("truncated MessagePack")?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// The end of the value starting at `pos`. Iterative, so deep nesting cannot overflow.
    fn skip(bytes: &[u8], mut pos: usize) -> Result<usize, String> {
        let mut pending: u64 = 1;
        while pending > 0 {
            pending -= 1;
            let marker = *bytes.get(pos).ok_or("truncated MessagePack")?;
            pos += 1;
            // (payload bytes, child values)
            let (payload, children): (u64, u64) = match marker {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (0, 0),
                0x80..=0x8f => (0, 2 * u64::from(marker & 0x0f)),
                0x90..=0x9f => (0, u64::from(marker & 0x0f)),
                0xa0..=0xbf => (u64::from(marker & 0x1f), 0),
                0xc4 | 0xd9 => (be(bytes, pos, 1)? + 1, 0),
                0xc5 | 0xda => (be(bytes, pos, 2)? + 2, 0),
                0xc6 | 0xdb => (be(bytes, pos, 4)? + 4, 0),
                0xc7 => (be(bytes, pos, 1)? + 2, 0),
                0xc8 => (be(bytes, pos, 2)? + 3, 0),
                0xc9 => (be(bytes, pos, 4)? + 5, 0),
                0xca | 0xce | 0xd2 => (4, 0),
                0xcb | 0xcf | 0xd3 => (8, 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xdc => (2, be(bytes, pos, 2)?),
                0xdd => (4, be(bytes, pos, 4)?),
                0xde => (2, 2 * be(bytes, pos, 2)?),
                0xdf => (4, 2 * be(bytes, pos, 4)?),
                _ => return Err(format!("invalid MessagePack marker 0x{:02x}", marker)),
            };
            pos = usize::try_from(payload)
                .ok()
                .and_then(|p| pos.checked_add(p))
                .filter(|&end| end <= bytes.len())
                .ok_or("truncated MessagePack")?;
            pending += children;
        }
        Ok(pos)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn splits_a_request() {
            // {"action": "a", "params": {}, "credential": {"fields": {"k": 1}}, "x": [1, 2]}
            let bytes = [
                0x84, 0xa6, b'a', b'c', b't', b'i', b'o', b'n', 0xa1, b'a', 0xa6, b'p', b'a', b'r',
                b'a', b'm', b's', 0x80, 0xaa, b'c', b'r', b'e', b'd', b'e', b'n', b't', b'i', b'a',
                b'l', 0x81, 0xa6, b'f', b'i', b'e', b'l', b'd', b's', 0x81, 0xa1, b'k', 0x01, 0xa1,
                b'x', 0x92, 0x01, 0x02,
            ];
            let parts = split_request(&bytes).unwrap();
            assert_eq!(parts.action, "a");
            assert_eq!(parts.params, Some(&[0x80][..]));
            assert_eq!(parts.fields, Some(&[0x81, 0xa1, b'k', 0x01][..]));
        }

        #[test]
        fn nil_params_and_a_credential_without_fields() {
            // {"action": "a", "params": nil, "credential": {}}
            let bytes = [
                0x83, 0xa6, b'a', b'c', b't', b'i', b'o', b'n', 0xa1, b'a', 0xa6, b'p', b'a', b'r',
                b'a', b'm', b's', 0xc0, 0xaa, b'c', b'r', b'e', b'd', b'e', b'n', b't', b'i', b'a',
                b'l', 0x80,
            ];
            let parts = split_request(&bytes).unwrap();
            assert_eq!(parts.params, None);
            assert_eq!(parts.fields, Some(&[0x80][..]));
        }

        #[test]
        fn rejects_truncated_and_hostile_input() {
            assert!(split_request(&[0x81, 0xa6]).is_err());
            assert!(split_request(&[0xdf, 0xff, 0xff, 0xff, 0xff]).is_err());
            assert!(split_request(&[0xc1]).is_err());
            assert!(split_request(&[0x80]).is_err()); // no action
        }
    }
}

/// The raw ABI: the import the host provides, and the bodies of the exports `actions!` emits.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod __abi {
    use std::alloc::{alloc, dealloc, realloc, Layout};
    use std::ptr::addr_of_mut;

    #[link(wasm_import_module = "vultrino:plugin/host@1.3.0")]
    extern "C" {
        #[link_name = "log"]
        pub fn host_log(level: i32, ptr: *const u8, len: usize);
    }

    /// `[ptr u32, len u32]` of the last response, as wit-bindgen's return area.
    static mut RET_AREA: [u32; 2] = [0; 2];

    fn trap() -> ! {
        core::arch::wasm32::unreachable()
    }

    pub unsafe fn cabi_realloc(
        old_ptr: *mut u8,
        old_size: usize,
        align: usize,
        new_size: usize,
    ) -> *mut u8 {
        // Same behaviour as wit-bindgen's `cabi_realloc`, with the layouts checked.
        let new_layout = Layout::from_size_align(new_size, align).unwrap_or_else(|_| trap());
        let ptr = if old_size == 0 {
            if new_size == 0 {
                return align as *mut u8;
            }
            alloc(new_layout)
        } else {
            let old_layout = Layout::from_size_align(old_size, align).unwrap_or_else(|_| trap());
            if new_size == 0 {
                dealloc(old_ptr, old_layout);
                return align as *mut u8;
            }
            realloc(old_ptr, old_layout, new_size)
        };
        if ptr.is_null() {
            trap();
        }
        ptr
    }

    pub unsafe fn execute(ptr: *mut u8, len: usize, handle: fn(&[u8]) -> Vec<u8>) -> *mut u8 {
        // A host that skipped the post-return call leaves the previous response: free it now.
        free_response();
        let request = take_request(ptr, len);
        let response = handle(&request);
        drop(request);
        respond(response)
    }

    /// `execute-text`: the request's characters are its bytes; so are the response's.
    pub unsafe fn execute_text(ptr: *mut u8, len: usize, handle: fn(&[u8]) -> Vec<u8>) -> *mut u8 {
        free_response();
        let request = take_request(ptr, len);
        let response = match crate::text::to_bytes(request) {
            Ok(bytes) => handle(&bytes),
            Err(_) => handle(&[]), // not from a Vultrino host: answered as a bad request
        };
        respond(crate::text::from_bytes(response))
    }

    /// The host wrote the request with `cabi_realloc(0, 0, 1, len)`; we own it now.
    unsafe fn take_request(ptr: *mut u8, len: usize) -> Vec<u8> {
        if len == 0 {
            Vec::new()
        } else {
            Vec::from_raw_parts(ptr, len, len)
        }
    }

    unsafe fn respond(response: Vec<u8>) -> *mut u8 {
        let response = response.into_boxed_slice();
        let out_len = response.len();
        let out_ptr = Box::into_raw(response) as *mut u8;
        let area = addr_of_mut!(RET_AREA);
        *area = [out_ptr as u32, out_len as u32];
        area as *mut u8
    }

    pub unsafe fn post_execute(_retptr: *mut u8) {
        free_response();
    }

    /// Free the response in the return area once; later calls are no-ops.
    unsafe fn free_response() {
        let area = addr_of_mut!(RET_AREA);
        let [ptr, len] = *area;
        if ptr != 0 {
            *area = [0, 0];
            let slice = std::slice::from_raw_parts_mut(ptr as *mut u8, len as usize);
            drop(Box::from_raw(slice));
        }
    }
}

/// Bytes as `execute-text` carries them: each byte is the character of the same value
/// (U+0000..U+00FF, Latin-1), in UTF-8. ASCII (most MessagePack of text) passes unchanged.
#[doc(hidden)]
pub mod text {
    /// The bytes a text stands for; `Err` when a character is above U+00FF.
    pub fn to_bytes(text: Vec<u8>) -> Result<Vec<u8>, usize> {
        if text.is_ascii() {
            return Ok(text);
        }
        let s = match std::str::from_utf8(&text) {
            Ok(s) => s,
            Err(e) => return Err(e.valid_up_to()),
        };
        let mut out = Vec::with_capacity(text.len());
        for (i, ch) in s.char_indices() {
            let c = ch as u32;
            if c > 0xFF {
                return Err(i);
            }
            out.push(c as u8);
        }
        Ok(out)
    }

    /// The text that stands for `bytes` (always valid UTF-8).
    pub fn from_bytes(bytes: Vec<u8>) -> Vec<u8> {
        if bytes.is_ascii() {
            return bytes;
        }
        let high = bytes.iter().filter(|b| **b >= 0x80).count();
        let mut out = Vec::with_capacity(bytes.len() + high);
        for b in bytes {
            if b < 0x80 {
                out.push(b);
            } else {
                out.push(0xC0 | (b >> 6));
                out.push(0x80 | (b & 0x3F));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::redact_values;
    use super::text;

    #[test]
    fn text_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let t = text::from_bytes(all.clone());
        let s = String::from_utf8(t.clone()).expect("valid UTF-8");
        assert_eq!(s.chars().count(), 256);
        assert!(s.chars().enumerate().all(|(i, c)| c as u32 == i as u32));
        assert_eq!(text::to_bytes(t), Ok(all));
        assert_eq!(text::to_bytes(b"plain".to_vec()), Ok(b"plain".to_vec()));
        assert_eq!(text::to_bytes("a\u{20ac}".as_bytes().to_vec()), Err(1));
    }

    #[test]
    fn quoted_values_are_redacted() {
        let msg = r#"invalid type: string "hun\"ter2", expected u32 and string "x""#;
        assert_eq!(
            redact_values(msg),
            "invalid type: a string, expected u32 and a string"
        );
        let msg = "invalid type: integer `1234`, expected a string; missing field `token`";
        assert_eq!(
            redact_values(msg),
            "invalid type: an integer, expected a string; missing field `token`"
        );
    }
}
