//! my-plugin — a Vultrino plugin.
//!
//! Write each action as a plain Rust function and register it in `actions!` below under the
//! name it has in `plugin.toml`. An action takes its parameters as a `Deserialize` struct and,
//! when it needs one, the credential's fields as a second `Deserialize` struct; it returns any
//! `Serialize` value (it becomes the result the agent sees) or an `Error`.
//!
//! The ABI glue lives in the `vultrino-pdk` crate (in `vultrino-pdk/`); you do not need to
//! read it.

use serde::{Deserialize, Serialize};
use vultrino_pdk::{actions, log, Error, Result};

actions! {
    "greet" => greet,
    "check_token" => check_token,
}

/// The fields of the `example_token` credential type (`[[credential_types]]` in plugin.toml).
#[derive(Deserialize)]
pub struct ExampleToken {
    /// A secret: use it, never return it or put it in an error or a log line.
    pub token: String,
    #[serde(default = "default_greeting")]
    pub greeting: String,
}

fn default_greeting() -> String {
    "Hello".to_string()
}

/// Parameters of `greet` (`[[actions.parameters]]` in plugin.toml).
#[derive(Deserialize)]
pub struct GreetParams {
    pub name: String,
    #[serde(default)]
    pub excited: bool,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Greeting {
    pub message: String,
}

/// `greet`: greets `name` with the credential's greeting.
pub fn greet(params: GreetParams, credential: ExampleToken) -> Result<Greeting> {
    let name = params.name.trim();
    if name.is_empty() {
        return Err(Error::invalid_params("name must not be empty"));
    }
    log!(
        debug,
        "greeting someone ({} characters)",
        name.chars().count()
    );
    let end = if params.excited { "!" } else { "." };
    Ok(Greeting {
        message: format!("{}, {}{}", credential.greeting, name, end),
    })
}

#[derive(Deserialize)]
pub struct CheckParams {
    pub token: String,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub matches: bool,
}

/// `check_token`: does `token` equal the stored secret? Answers yes/no, never the secret.
pub fn check_token(params: CheckParams, credential: ExampleToken) -> Result<CheckResult> {
    Ok(CheckResult {
        matches: constant_time_eq(params.token.as_bytes(), credential.token.as_bytes()),
    })
}

// A key the plugin never holds: declare the field `access = "host"` in plugin.toml (the request
// then carries it as nil) and let Vultrino use it for you (docs/plugins/host-keys.md):
//
//     #[derive(Serialize)]
//     pub struct Signed { pub signature: String }
//
//     /// `sign`: HMAC-SHA256 of `message` with the `token` field, computed by the host.
//     pub fn sign(params: SignParams, _credential: vultrino_pdk::NoParams) -> Result<Signed> {
//         let mac = vultrino_pdk::keys::hmac_sha256("token", params.message.as_bytes())?;
//         Ok(Signed { signature: mac.iter().map(|b| format!("{:02x}", b)).collect() })
//     }
//
// An API the plugin calls without holding its token: declare the hosts and the auth scheme in
// plugin.toml (`[http] hosts = ["api.example.com"]`, `auth = ["bearer"]`, and a `token` field)
// and let Vultrino add the token to each request (docs/plugins/host-keys.md; the first-party
// `plugins/github` is a whole plugin built this way):
//
//     /// `whoami`: the account the token belongs to, as the API reports it.
//     pub fn whoami(_p: vultrino_pdk::NoParams, _c: vultrino_pdk::NoParams) -> Result<String> {
//         let resp = vultrino_pdk::http::get("https://api.example.com/user")
//             .auth("bearer")
//             .send()?;
//         if !resp.ok() {
//             return Err(Error::failed(format!("the API answered HTTP {}", resp.status)));
//         }
//         Ok(resp.body)
//     }

/// Compare without an early exit, so timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn key() -> ExampleToken {
        ExampleToken {
            token: "s3cret-token".into(),
            greeting: "Hello".into(),
        }
    }

    #[test]
    fn greet_uses_the_credential_greeting() {
        let params = GreetParams {
            name: "Ada".into(),
            excited: true,
        };
        let out = greet(params, key()).unwrap();
        assert_eq!(out.message, "Hello, Ada!");
    }

    #[test]
    fn greet_rejects_an_empty_name() {
        let err = greet(
            GreetParams {
                name: " ".into(),
                excited: false,
            },
            key(),
        )
        .unwrap_err();
        assert_eq!(err.code(), vultrino_pdk::ErrorCode::InvalidParams);
    }

    #[test]
    fn check_token_compares_without_revealing() {
        let yes = check_token(
            CheckParams {
                token: "s3cret-token".into(),
            },
            key(),
        )
        .unwrap();
        let no = check_token(
            CheckParams {
                token: "s3cret-toke".into(),
            },
            key(),
        )
        .unwrap();
        assert!(yes.matches);
        assert!(!no.matches);
    }

    // The full MessagePack round trip the host performs, natively.

    #[derive(Serialize)]
    struct Request<'a> {
        action: &'a str,
        params: BTreeMap<&'a str, &'a str>,
        credential: Option<Credential<'a>>,
    }

    #[derive(Serialize)]
    struct Credential<'a> {
        alias: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        fields: BTreeMap<&'a str, &'a str>,
    }

    #[derive(Deserialize, Debug)]
    struct Response {
        ok: Option<Greeting2>,
        error: Option<ErrorBody>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Greeting2 {
        message: String,
    }

    #[derive(Deserialize, Debug)]
    struct ErrorBody {
        code: String,
        message: String,
    }

    fn call(
        action: &str,
        params: &[(&'static str, &'static str)],
        with_credential: bool,
    ) -> Response {
        let credential = Credential {
            alias: "demo",
            kind: "example_token",
            fields: [("token", "s3cret-token"), ("greeting", "Hi")]
                .into_iter()
                .collect(),
        };
        let request = Request {
            action,
            params: params.iter().cloned().collect(),
            credential: if with_credential {
                Some(credential)
            } else {
                None
            },
        };
        let bytes = rmp_serde::to_vec_named(&request).unwrap();
        rmp_serde::from_slice(&handle(&bytes)).unwrap()
    }

    #[test]
    fn round_trip_ok() {
        let response = call("greet", &[("name", "Ada")], true);
        assert_eq!(
            response.ok,
            Some(Greeting2 {
                message: "Hi, Ada.".into()
            })
        );
    }

    #[test]
    fn round_trip_error_codes() {
        let cases = [
            (call("nope", &[], true), "unknown_action"),
            (call("greet", &[], true), "invalid_params"),
            (
                call("greet", &[("name", "Ada")], false),
                "invalid_credential",
            ),
        ];
        for (response, code) in cases {
            let error = response.error.expect("an error");
            assert_eq!(error.code, code, "{}", error.message);
            assert!(!error.message.contains("s3cret"));
        }
    }
}
