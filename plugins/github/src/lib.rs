//! github — narrow GitHub issue tools: `create_issue {repo, title, body}` and
//! `get_issue {repo, number}`.
//!
//! The plugin never holds the token: the field is declared `access = "host"` (the request
//! carries it as nil) and every API call goes through Vultrino's `http` interface with the
//! `bearer` scheme, which adds `Authorization: Bearer <token>` and sends the request only to
//! the hosts plugin.toml declares, within the credential's allowlist. An agent gets two tools
//! that do one thing each, instead of a raw `http_request` with the token behind it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vultrino_pdk::http;
use vultrino_pdk::{actions, Error, Result};

actions! {
    "create_issue" => create_issue,
    "get_issue" => get_issue,
}

const DEFAULT_API: &str = "https://api.github.com";
const ACCEPT: &str = "application/vnd.github+json";
const API_VERSION: &str = "2022-11-28";

/// The fields of the `github_token` credential type (`token` arrives as nil).
#[derive(Deserialize)]
pub struct GithubToken {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub api_base: Option<String>,
}

impl GithubToken {
    fn api(&self) -> String {
        let base = self.api_base.as_deref().map(str::trim).unwrap_or("");
        let base = if base.is_empty() { DEFAULT_API } else { base };
        base.trim_end_matches('/').to_string()
    }
}

/// `owner/name`, each part letters, digits, `-`, `_` or `.` (not `.` or `..`): nothing that
/// could reach another path of the API.
fn check_repo(repo: &str) -> Result<&str> {
    let mut parts = repo.split('/');
    let ok = match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) => [owner, name].iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.len() <= 100
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        }),
        _ => false,
    };
    if ok {
        Ok(repo)
    } else {
        Err(Error::invalid_params("repo must be owner/name (letters, digits, '-', '_', '.')"))
    }
}

/// The API's JSON answer, or an error naming the status and GitHub's message.
fn json_of(resp: &http::Response, what: &str) -> Result<Value> {
    let value: Value = serde_json::from_str(&resp.body).unwrap_or(Value::Null);
    if resp.ok() {
        return Ok(value);
    }
    let message = value.get("message").and_then(Value::as_str).unwrap_or("");
    let text = format!("GitHub answered HTTP {} to {what}: {message}", resp.status);
    Err(match resp.status {
        401 | 403 => Error::invalid_credential(text),
        404 | 410 | 422 => Error::invalid_params(text),
        _ => Error::failed(text),
    })
}

fn text(value: &Value, key: &str) -> String {
    value.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub state: String,
    pub url: String,
    pub author: String,
    pub body: String,
}

impl Issue {
    fn from_json(v: &Value) -> Issue {
        Issue {
            number: v.get("number").and_then(Value::as_u64).unwrap_or(0),
            title: text(v, "title"),
            state: text(v, "state"),
            url: text(v, "html_url"),
            author: v.get("user").map(|u| text(u, "login")).unwrap_or_default(),
            body: text(v, "body"),
        }
    }
}

#[derive(Deserialize)]
pub struct CreateParams {
    pub repo: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
}

#[derive(Serialize)]
struct NewIssue<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

/// `create_issue`: POST /repos/{repo}/issues.
pub fn create_issue(p: CreateParams, cred: GithubToken) -> Result<Issue> {
    let repo = check_repo(&p.repo)?;
    if p.title.trim().is_empty() {
        return Err(Error::invalid_params("title must not be empty"));
    }
    let resp = http::post(&format!("{}/repos/{repo}/issues", cred.api()))
        .auth("bearer")
        .header("Accept", ACCEPT)
        .header("X-GitHub-Api-Version", API_VERSION)
        .json(&NewIssue { title: &p.title, body: p.body.as_deref() })
        .send()?;
    Ok(Issue::from_json(&json_of(&resp, "the new issue")?))
}

#[derive(Deserialize)]
pub struct GetParams {
    pub repo: String,
    pub number: u64,
}

/// `get_issue`: GET /repos/{repo}/issues/{number}.
pub fn get_issue(p: GetParams, cred: GithubToken) -> Result<Issue> {
    let repo = check_repo(&p.repo)?;
    let resp = http::get(&format!("{}/repos/{repo}/issues/{}", cred.api(), p.number))
        .auth("bearer")
        .header("Accept", ACCEPT)
        .header("X-GitHub-Api-Version", API_VERSION)
        .send()?;
    Ok(Issue::from_json(&json_of(&resp, "the issue")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_that_could_leave_the_path_are_refused() {
        assert!(check_repo("octo/hello-world").is_ok());
        for bad in ["octo", "octo/x/y", "../x", "octo/..", "octo/a b", "octo/a?b", "/x", "x/"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
    }
}
