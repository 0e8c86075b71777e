//! `ssh-keygen -Y sign | find-principals | verify`, run through the one executor: argv only
//! (never a shell), the message and signature in files of a private scratch directory that is
//! removed afterwards.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::exec::{self, Cancel, CommandSpec};

use super::NAMESPACE;

/// ssh-keygen works locally; signing with a key that asks for its passphrase waits for a
/// person, hence the minute.
const SIGN_TIMEOUT: Duration = Duration::from_secs(60);
const VERIFY_TIMEOUT: Duration = Duration::from_secs(20);

/// The program (`SHIPGATE_SSH_KEYGEN` for tests and odd installs).
fn program() -> String {
    std::env::var("SHIPGATE_SSH_KEYGEN")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "ssh-keygen".into())
}

/// A directory only this user can read, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, Error> {
        use std::os::unix::fs::DirBuilderExt;
        let mut rng = fastrand::Rng::new();
        let name: String = (0..12).map(|_| rng.alphanumeric()).collect();
        let dir = std::env::temp_dir().join(format!("shipgate-approval-{name}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Error::failed("cannot create a scratch directory for ssh-keygen").caused_by(e)
            })?;
        Ok(Scratch(dir))
    }
    fn write(&self, name: &str, text: &str) -> Result<PathBuf, Error> {
        let path = self.0.join(name);
        std::fs::write(&path, text).map_err(|e| {
            Error::failed(format!("cannot write `{}`", path.display())).caused_by(e)
        })?;
        Ok(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// The argv of `ssh-keygen -Y sign` over `message_file` (it writes `message_file.sig`).
pub fn sign_argv(key: &Path, message_file: &Path) -> Vec<String> {
    vec![
        program(),
        "-Y".into(),
        "sign".into(),
        "-f".into(),
        arg(key),
        "-n".into(),
        NAMESPACE.into(),
        arg(message_file),
    ]
}

pub fn find_principals_argv(allowed_signers: &Path, signature_file: &Path) -> Vec<String> {
    vec![
        program(),
        "-Y".into(),
        "find-principals".into(),
        "-s".into(),
        arg(signature_file),
        "-f".into(),
        arg(allowed_signers),
    ]
}

/// The argv of `ssh-keygen -Y verify`; the message is its stdin.
pub fn verify_argv(allowed_signers: &Path, principal: &str, signature_file: &Path) -> Vec<String> {
    vec![
        program(),
        "-Y".into(),
        "verify".into(),
        "-f".into(),
        arg(allowed_signers),
        "-I".into(),
        principal.into(),
        "-n".into(),
        NAMESPACE.into(),
        "-s".into(),
        arg(signature_file),
    ]
}

/// Signs `message` with the private key at `key`: the armored signature.
pub fn sign(key: &Path, message: &str) -> Result<String, Error> {
    if !key.is_file() {
        return Err(Error::usage(format!(
            "the signing key `{}` is not a file",
            key.display()
        ))
        .with_hint("pass --key PATH (or set SHIPGATE_SIGNING_KEY) to your SSH private key, e.g. ~/.ssh/id_ed25519"));
    }
    let scratch = Scratch::new()?;
    let file = scratch.write("message", message)?;
    let spec = CommandSpec::new(sign_argv(key, &file), SIGN_TIMEOUT);
    let out = exec::run(&spec, &Cancel::new(), None)?;
    if !out.success() {
        return Err(Error::usage("cannot sign the approval with ssh-keygen")
            .caused_by(exec::failure(&spec, &out))
            .with_hint("check that --key names an SSH private key (ssh-keygen needs its passphrase, or an agent holding it)"));
    }
    let sig = file.with_extension("sig");
    std::fs::read_to_string(&sig)
        .map_err(|e| Error::failed("ssh-keygen wrote no signature").caused_by(e))
}

/// The principals of `allowed_signers` whose key made `signature` (in the `shipgate`
/// namespace); empty when none.
pub fn find_principals(allowed_signers: &Path, signature: &str) -> Result<Vec<String>, Error> {
    let scratch = Scratch::new()?;
    let sig = scratch.write("message.sig", signature)?;
    let spec = CommandSpec::new(find_principals_argv(allowed_signers, &sig), VERIFY_TIMEOUT);
    let out = exec::run(&spec, &Cancel::new(), None)?;
    if !out.success() {
        return Ok(Vec::new());
    }
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .flat_map(|l| l.split(','))
        .map(str::to_string)
        .collect())
}

/// Verifies `signature` over `message` as `principal`'s: `Err` says why not (the last line
/// ssh-keygen wrote).
pub fn verify(
    allowed_signers: &Path,
    principal: &str,
    message: &str,
    signature: &str,
) -> Result<(), String> {
    let run = || -> Result<Result<(), String>, Error> {
        let scratch = Scratch::new()?;
        let msg = scratch.write("message", message)?;
        let sig = scratch.write("message.sig", signature)?;
        let spec = CommandSpec::new(
            verify_argv(allowed_signers, principal, &sig),
            VERIFY_TIMEOUT,
        );
        let out = exec::run_with_stdin(&spec, &Cancel::new(), &msg)?;
        Ok(if out.success() {
            Ok(())
        } else {
            Err(format!(
                "its signature does not verify as {principal}'s ({})",
                exec::last_stderr_line(&out)
                    .unwrap_or_else(|| "ssh-keygen -Y verify failed".into())
            ))
        })
    };
    run().unwrap_or_else(|e| Err(format!("cannot verify its signature: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_data_with_the_shipgate_namespace() {
        let v = verify_argv(
            Path::new("signers"),
            "alice@example.com",
            Path::new("m.sig"),
        );
        assert_eq!(
            v[1..],
            [
                "-Y",
                "verify",
                "-f",
                "signers",
                "-I",
                "alice@example.com",
                "-n",
                "shipgate",
                "-s",
                "m.sig"
            ]
        );
        let s = sign_argv(Path::new("k"), Path::new("m"));
        assert_eq!(s[1..], ["-Y", "sign", "-f", "k", "-n", "shipgate", "m"]);
    }
}
