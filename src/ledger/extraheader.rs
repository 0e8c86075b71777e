//! The `http.<url>.extraheader` values git would send to a remote, read from git config.
//!
//! `actions/checkout` leaves the job's token in the clone's config as
//! `http.https://github.com/.extraheader = AUTHORIZATION: basic <base64(x-access-token:TOKEN)>`
//! (newer versions in a file the config includes); git sends it with every request, libgit2
//! never reads it. The git store passes these values to libgit2 as custom headers, so a job that
//! ran `actions/checkout` pushes the ledger with no configuration at all.
//!
//! Which values apply follows git's `http.<url>.*` rules (`urlmatch.c`): the config URL must have
//! the remote's scheme, host (a `*` matches one whole dot-separated label) and port; its path
//! must be a prefix of the remote's path ending on a `/` boundary; a user name in it must be the
//! remote's. Plain `http.extraheader` applies to every URL. Entries are taken in config order
//! (system, global, local, includes where they stand), each one only if it matches at least as
//! specifically as the best match so far (longer host, then longer path, then a user name);
//! an empty value empties the list collected so far.

use std::cmp::Ordering;

use base64::Engine;

/// How specifically a config URL matched the remote's, compared as git's `cmp_matches` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Specificity {
    host_len: usize,
    path_len: usize,
    user_matched: bool,
}

/// The parts of a URL that `http.<url>.*` matching compares, normalised as git does (lowercase
/// scheme and host, no default port, `/` for an empty path, no query or fragment).
#[derive(Debug, PartialEq)]
struct UrlParts {
    scheme: String,
    user: Option<String>,
    host: String,
    port: String,
    path: String,
}

impl UrlParts {
    fn parse(url: &str) -> Option<UrlParts> {
        let (scheme, rest) = url.split_once("://")?;
        if scheme.is_empty() {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let (user, host_port) = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                (Some(user.to_string()), &authority[at + 1..])
            }
            None => (None, authority),
        };
        // `[::1]:8080`: the port is after the bracket.
        let port_at = match host_port.rfind(']') {
            Some(bracket) => host_port[bracket..].find(':').map(|i| bracket + i),
            None => host_port.rfind(':'),
        };
        let (host, port) = match port_at {
            Some(i) => (&host_port[..i], &host_port[i + 1..]),
            None => (host_port, ""),
        };
        if host.is_empty() {
            return None;
        }
        let default_port = match scheme.as_str() {
            "http" => "80",
            "https" => "443",
            _ => "",
        };
        let port = if port == default_port { "" } else { port };
        let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
        Some(UrlParts {
            scheme,
            user,
            host: host.to_ascii_lowercase(),
            port: port.to_string(),
            path: if path.is_empty() { "/" } else { path }.to_string(),
        })
    }

    /// How specifically `self`, a config URL, matches `url`; `None` when it does not apply.
    fn matches(&self, url: &UrlParts) -> Option<Specificity> {
        if self.scheme != url.scheme
            || self.port != url.port
            || !host_matches(&self.host, &url.host)
        {
            return None;
        }
        let user_matched = match &self.user {
            Some(user) if url.user.as_ref() != Some(user) => return None,
            Some(_) => true,
            None => false,
        };
        Some(Specificity {
            host_len: self.host.len(),
            path_len: path_prefix_len(&self.path, &url.path)?,
            user_matched,
        })
    }
}

/// Label by label; a pattern label `*` matches any one label.
fn host_matches(pattern: &str, host: &str) -> bool {
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len() && p.iter().zip(&h).all(|(p, h)| *p == "*" || p == h)
}

/// git's `url_match_prefix`: `prefix` matches `path` when equal to it or a prefix of it ending
/// on a `/` boundary (both read as ending in `/`); the length matched, counting that `/`.
fn path_prefix_len(prefix: &str, path: &str) -> Option<usize> {
    if prefix.is_empty() || prefix == "/" {
        return (path.is_empty() || path.starts_with('/')).then_some(1);
    }
    let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(prefix.len() + 1)
}

/// The extra headers git would send to `url`, from `config` (a repository's config: its own
/// file and the global and system ones). None for a URL that is not HTTP(S).
pub fn for_url(config: &git2::Config, url: &str) -> Vec<String> {
    let Some(target) = UrlParts::parse(url).filter(|u| u.scheme == "http" || u.scheme == "https")
    else {
        return Vec::new();
    };
    let Ok(mut entries) = config.entries(Some(r"^http\.")) else {
        return Vec::new();
    };
    let mut best: Option<Specificity> = None;
    let mut headers = Vec::new();
    while let Some(Ok(entry)) = entries.next() {
        let (Some(name), value) = (entry.name(), entry.value()) else {
            continue;
        };
        let Some(rest) = name.strip_prefix("http.") else {
            continue;
        };
        let (config_url, key) = match rest.rsplit_once('.') {
            Some((u, k)) => (Some(u), k),
            None => (None, rest),
        };
        if !key.eq_ignore_ascii_case("extraheader") {
            continue;
        }
        let specificity = match config_url {
            None => Specificity::default(),
            Some(u) => match UrlParts::parse(u).and_then(|u| u.matches(&target)) {
                Some(s) => s,
                None => continue,
            },
        };
        if best.is_some_and(|b| specificity.cmp(&b) == Ordering::Less) {
            continue;
        }
        best = Some(specificity);
        match value {
            // git refuses a valueless `extraheader`; it carries nothing to send.
            None => {}
            Some("") => headers.clear(),
            Some(v) => headers.push(v.to_string()),
        }
    }
    headers
}

/// Whether libgit2 accepts `header` as a custom header: `Name: value` with a token name, no line
/// breaks, and not one of the headers libgit2 sets itself.
pub fn is_sendable(header: &str) -> bool {
    const OWN: [&str; 6] = [
        "user-agent",
        "host",
        "accept",
        "content-type",
        "transfer-encoding",
        "content-length",
    ];
    let Some((name, _)) = header.split_once(':') else {
        return false;
    };
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && !header.contains(['\r', '\n'])
        && !OWN.contains(&name.to_ascii_lowercase().as_str())
}

/// The secret parts of a header: its value, the credential after the auth scheme, and for
/// `basic` the decoded `user:password` and the password alone.
pub fn secrets_of(header: &str) -> Vec<String> {
    let value = header.split_once(':').map_or(header, |(_, v)| v).trim();
    let mut secrets = vec![value.to_string()];
    if let Some((scheme, credential)) = value.split_once(char::is_whitespace) {
        let credential = credential.trim();
        secrets.push(credential.to_string());
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(credential)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            if let Some(decoded) = decoded {
                if let Some((_, password)) = decoded.split_once(':') {
                    secrets.push(password.to_string());
                }
                secrets.push(decoded);
            }
        }
    }
    secrets
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config of these files, each `(level, text)`, added out of order on purpose: the
    /// levels, not the order of adding, decide the order entries are read in.
    fn config(files: &[(git2::ConfigLevel, &str)]) -> (tempfile::TempDir, git2::Config) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = git2::Config::new().unwrap();
        for (i, (level, text)) in files.iter().enumerate().rev() {
            let path = dir.path().join(format!("config{i}"));
            std::fs::write(&path, text).unwrap();
            config.add_file(&path, *level, false).unwrap();
        }
        (dir, config)
    }

    fn local(text: &str) -> (tempfile::TempDir, git2::Config) {
        config(&[(git2::ConfigLevel::Local, text)])
    }

    #[test]
    fn a_checkout_header_applies_to_every_repository_of_its_host() {
        let (_d, c) =
            local("[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic abc=\n");
        for url in [
            "https://github.com/o/r.git",
            "https://GitHub.com:443/o/r",
            "https://user@github.com/o/r",
        ] {
            assert_eq!(for_url(&c, url), ["AUTHORIZATION: basic abc="], "{url}");
        }
        for url in [
            "http://github.com/o/r.git",
            "https://github.com:8443/o/r.git",
            "https://api.github.com/o/r.git",
            "https://github.com.evil.example/o/r.git",
            "git@github.com:o/r.git",
            "ssh://git@github.com/o/r.git",
            "/srv/git/r.git",
        ] {
            assert!(for_url(&c, url).is_empty(), "{url}");
        }
    }

    #[test]
    fn paths_match_on_slash_boundaries() {
        let (_d, c) = local("[http \"https://h.example/org\"]\n\textraheader = X-A: 1\n");
        assert_eq!(for_url(&c, "https://h.example/org"), ["X-A: 1"]);
        assert_eq!(for_url(&c, "https://h.example/org/r.git"), ["X-A: 1"]);
        assert!(for_url(&c, "https://h.example/organisation/r.git").is_empty());
        assert!(for_url(&c, "https://h.example/").is_empty());
    }

    #[test]
    fn users_and_host_wildcards_match_as_in_git() {
        let (_d, c) = local(
            "[http \"https://bot@h.example/\"]\n\textraheader = X-User: bot\n\
             [http \"https://*.example/\"]\n\textraheader = X-Any: 1\n",
        );
        assert_eq!(for_url(&c, "https://bot@h.example/r"), ["X-User: bot"]);
        assert_eq!(for_url(&c, "https://other@h.example/r"), ["X-Any: 1"]);
        assert_eq!(for_url(&c, "https://h.example/r"), ["X-Any: 1"]);
        assert!(for_url(&c, "https://a.h.example/r").is_empty());
    }

    #[test]
    fn values_accumulate_in_config_order_unless_less_specific_and_empty_resets() {
        let (_d, c) = config(&[
            (
                git2::ConfigLevel::Global,
                "[http]\n\textraheader = X-Global: 1\n",
            ),
            (
                git2::ConfigLevel::Local,
                "[http \"https://h.example/\"]\n\textraheader = X-Host: 1\n\
                 [http]\n\textraheader = X-Plain-After: 1\n\
                 [http \"https://h.example/r\"]\n\textraheader = X-Path: 1\n\
                 \textraheader = X-Path: 2\n",
            ),
        ]);
        // The global one first (read first), then equal or more specific ones; the plain one
        // after a host match is less specific and skipped, as git does.
        // `/r` is not a path prefix of `/r.git`.
        assert_eq!(
            for_url(&c, "https://h.example/r.git/x"),
            ["X-Global: 1", "X-Host: 1"]
        );
        assert_eq!(
            for_url(&c, "https://h.example/r/x"),
            ["X-Global: 1", "X-Host: 1", "X-Path: 1", "X-Path: 2"]
        );
        assert_eq!(
            for_url(&c, "https://other.example/r"),
            ["X-Global: 1", "X-Plain-After: 1"]
        );

        let (_d, c) =
            local("[http]\n\textraheader = X-Old: 1\n\textraheader =\n\textraheader = X-New: 1\n");
        assert_eq!(for_url(&c, "https://h.example/"), ["X-New: 1"]);
    }

    #[test]
    fn only_headers_libgit2_accepts_are_sendable() {
        assert!(is_sendable("AUTHORIZATION: basic abc="));
        assert!(is_sendable("X-Thing:1"));
        assert!(!is_sendable("no colon"));
        assert!(!is_sendable(": empty name"));
        assert!(!is_sendable("Bad Name: x"));
        assert!(!is_sendable("Host: evil"));
        assert!(!is_sendable("X-A: 1\r\nX-B: 2"));
    }

    #[test]
    fn the_secret_parts_of_a_basic_header_include_the_decoded_token() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("x-access-token:ghs_s3cret");
        let secrets = secrets_of(&format!("AUTHORIZATION: basic {b64}"));
        assert!(secrets.contains(&b64));
        assert!(secrets.contains(&format!("basic {b64}")));
        assert!(secrets.contains(&"ghs_s3cret".to_string()));
        assert!(secrets.contains(&"x-access-token:ghs_s3cret".to_string()));
        assert_eq!(secrets_of("Authorization: Bearer tok3n")[1], "tok3n");
    }
}
