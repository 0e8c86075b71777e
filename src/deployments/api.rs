//! The three GitHub REST calls the mirror makes, with the retries of
//! [`crate::notify::delivery`] (5xx, 429 and rate-limited 403 honouring `Retry-After` and
//! `x-ratelimit-reset`). The token goes in the `Authorization` header and nowhere else.

use serde_json::{json, Value};

use super::mirror::State;
use crate::notify::delivery::{self, HttpRequest, Method, RetryPolicy};

/// GitHub caps a status's description at 140 characters.
pub const DESCRIPTION_MAX: usize = 140;

pub struct Client {
    /// `https://api.github.com` or `GITHUB_API_URL`, without a trailing `/`.
    pub api: String,
    /// `owner/name`.
    pub repository: String,
    pub token: String,
    pub policy: RetryPolicy,
}

/// A new deployment.
pub struct NewDeployment<'a> {
    pub git_ref: &'a str,
    pub environment: &'a str,
    pub description: &'a str,
    /// Kept in the deployment's `payload.shipgate`: the marker `publish-event --from github`
    /// knows shipgate's own deployments by.
    pub payload: Value,
}

impl Client {
    fn request(&self, method: Method, path: &str, body: Option<&Value>) -> HttpRequest {
        let mut headers = vec![
            (
                "Accept".to_string(),
                "application/vnd.github+json".to_string(),
            ),
            ("X-GitHub-Api-Version".to_string(), "2022-11-28".to_string()),
            (
                "Authorization".to_string(),
                format!("Bearer {}", self.token),
            ),
        ];
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        HttpRequest {
            method,
            url: format!("{}/repos/{}{path}", self.api, self.repository),
            headers,
            body: body
                .map(|b| serde_json::to_vec(b).unwrap_or_default())
                .unwrap_or_default(),
        }
    }

    fn call(&self, request: &HttpRequest) -> Result<Value, String> {
        let outcome = delivery::deliver(request, &self.policy);
        match outcome.error {
            None if outcome.delivered => serde_json::from_str(&outcome.body)
                .map_err(|e| format!("GitHub answered with something that is not JSON: {e}")),
            error => Err(error.unwrap_or_else(|| "not delivered".into())),
        }
    }

    /// `POST /repos/{repo}/deployments`: the new deployment's id.
    pub fn create(&self, d: &NewDeployment<'_>) -> Result<u64, String> {
        let body = json!({
            "ref": d.git_ref,
            "environment": d.environment,
            "description": truncate(d.description),
            "auto_merge": false,
            "required_contexts": [],
            "payload": {"shipgate": d.payload},
            "transient_environment": false,
        });
        let answer = self.call(&self.request(Method::Post, "/deployments", Some(&body)))?;
        answer["id"].as_u64().ok_or_else(|| {
            let message = answer["message"].as_str().unwrap_or("no deployment id");
            format!(
                "GitHub created no deployment: {}",
                crate::output::neutral::inline(message)
            )
        })
    }

    /// `POST /repos/{repo}/deployments/{id}/statuses`.
    pub fn status(
        &self,
        id: u64,
        state: State,
        description: &str,
        log_url: Option<&str>,
        environment_url: Option<&str>,
    ) -> Result<(), String> {
        let mut body = json!({
            "state": state.as_str(),
            "description": truncate(description),
            // Older deployments of the environment become `inactive` when this one succeeds;
            // a failed or in-progress one never inactivates the last good one. (GitHub does it
            // for non-production environments only: one named exactly `production` keeps its
            // older deployments active.)
            "auto_inactive": state == State::Success,
        });
        if let Some(url) = log_url {
            body["log_url"] = json!(url);
        }
        if let Some(url) = environment_url {
            body["environment_url"] = json!(url);
        }
        let path = format!("/deployments/{id}/statuses");
        self.call(&self.request(Method::Post, &path, Some(&body)))
            .map(|_| ())
    }

    /// The environment's latest deployment shipgate created, when it is of `version`.
    pub fn latest(&self, environment: &str, version: &str) -> Result<Option<u64>, String> {
        let path = format!(
            "/deployments?environment={}&per_page=10",
            url_component(environment)
        );
        let answer = self.call(&self.request(Method::Get, &path, None))?;
        let list = answer.as_array().cloned().unwrap_or_default();
        Ok(list
            .iter()
            .find(|d| d["payload"]["shipgate"].is_object())
            .filter(|d| d["payload"]["shipgate"]["version"].as_str() == Some(version))
            .and_then(|d| d["id"].as_u64()))
    }
}

/// At most [`DESCRIPTION_MAX`] characters, secrets redacted, on one line.
pub fn truncate(text: &str) -> String {
    let text = crate::redact::redact(text).replace(['\n', '\r'], " ");
    if text.chars().count() <= DESCRIPTION_MAX {
        return text;
    }
    let mut out: String = text.chars().take(DESCRIPTION_MAX - 1).collect();
    out.push('…');
    out
}

/// What a query value keeps unencoded: RFC 3986's unreserved characters.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (environment names are free text).
fn url_component(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_githubs_limit() {
        let long = "x".repeat(500);
        assert_eq!(truncate(&long).chars().count(), DESCRIPTION_MAX);
        assert_eq!(truncate("a\nb"), "a b");
    }

    #[test]
    fn environment_names_are_encoded_in_the_query() {
        assert_eq!(url_component("prod eu/1&x"), "prod%20eu%2F1%26x");
    }
}
