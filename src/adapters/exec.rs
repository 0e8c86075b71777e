//! The exec adapter: any platform with a CLI or a deploy hook. The `deploy`, `current` and
//! `rollback` argv templates get their `{placeholders}` filled in element by element and the
//! same values as `SHIPGATE_*` environment variables; one call per region.

use std::path::PathBuf;
use std::time::Duration;

use super::{Live, RegionResult, RunCtx};
use crate::config::placeholder::{Vars, WEIGHT};
use crate::config::{AdapterKind, Config, ExecConfig};
use crate::error::Error;
use crate::exec::CommandSpec;

pub struct Exec {
    cfg: ExecConfig,
    /// The `[target].image` template, when there is one: `{image}` follows the version.
    image: Option<String>,
    base_dir: PathBuf,
}

impl Exec {
    pub fn new(config: &Config) -> Result<Self, Error> {
        let cfg = config.target.exec.clone().ok_or_else(|| {
            Error::usage("adapter `exec` needs a `[target.exec]` section").with_hint(
                "add [target.exec] with deploy = [\"./deploy.sh\", \"{region}\", \"{version}\"]",
            )
        })?;
        if cfg.deploy.is_empty() {
            return Err(Error::usage("`target.exec.deploy` is empty")
                .with_hint("deploy = [\"./deploy.sh\", \"{region}\", \"{version}\"]"));
        }
        Ok(Exec {
            cfg,
            image: config.target.image.clone(),
            base_dir: config.base_dir.clone(),
        })
    }

    /// The vars for one region, `{image}` rendered for the version when there is a template.
    fn region_vars(&self, vars: &Vars, region: &str) -> Vars {
        let mut v = vars.clone().with("region", region);
        if let (Some(t), Some(version)) = (&self.image, vars.get("version")) {
            let image = super::image_for(t, &v, version);
            v.set("image", image);
        }
        v
    }

    fn spec(&self, template: &[String], key: &str, vars: &Vars, timeout: Duration) -> CommandSpec {
        let mut spec = CommandSpec::new(vars.render_argv(template), timeout);
        spec.env = vars.env();
        spec.cwd = Some(self.base_dir.clone());
        spec.bin_key = Some(key.to_string());
        spec
    }

    /// `target.exec.current` for `region`, when configured.
    pub fn current_command(
        &self,
        region: &str,
        vars: &Vars,
        timeout: Duration,
    ) -> Option<CommandSpec> {
        let current = self.cfg.current.as_ref()?;
        let vars = self.region_vars(vars, region);
        Some(self.spec(current, "target.exec.current", &vars, timeout))
    }

    fn rollback_region(
        &self,
        region: &str,
        to: &str,
        vars: &Vars,
        timeout: Duration,
    ) -> CommandSpec {
        // The version returned to gets the whole region.
        let vars = self
            .region_vars(&super::fly::rollback_vars(vars, to), region)
            .with(WEIGHT, "100");
        match &self.cfg.rollback {
            Some(t) => self.spec(t, "target.exec.rollback", &vars, timeout),
            None => self.spec(&self.cfg.deploy, "target.exec.deploy", &vars, timeout),
        }
    }
}

/// The version a `current` command printed: its trimmed stdout, nothing for an empty one.
pub fn parse_current(stdout: &str) -> Result<Live, String> {
    let v = stdout.trim();
    if v.is_empty() {
        Ok(Live::Absent)
    } else if v.contains(char::is_whitespace) {
        Err(format!(
            "expected one version on stdout, got {:?}",
            v.chars().take(200).collect::<String>()
        ))
    } else {
        Ok(Live::Version(v.to_string()))
    }
}

impl super::Adapter for Exec {
    fn kind(&self) -> AdapterKind {
        AdapterKind::Exec
    }

    fn batches_regions(&self) -> bool {
        false
    }

    fn deploy_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        regions
            .iter()
            .map(|r| {
                let mut vars = self.region_vars(vars, r);
                if vars.get(WEIGHT).is_none() {
                    vars.set(WEIGHT, "100");
                }
                self.spec(&self.cfg.deploy, "target.exec.deploy", &vars, timeout)
            })
            .collect()
    }

    fn deploy(&self, regions: &[String], vars: &Vars, ctx: &RunCtx<'_>) -> Vec<RegionResult> {
        super::per_region(regions, |region| {
            for spec in self.deploy_commands(&[region.to_string()], vars, ctx.command_timeout) {
                super::run_checked(&spec, ctx)?;
            }
            Ok(())
        })
    }

    fn reads_live_version(&self) -> bool {
        self.cfg.current.is_some()
    }

    fn current_commands(
        &self,
        regions: &[String],
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        regions
            .iter()
            .filter_map(|r| self.current_command(r, vars, timeout))
            .collect()
    }

    /// Runs `target.exec.current`; without one the adapter cannot tell, which is an error
    /// (the caller falls back on history).
    fn current(&self, region: &str, vars: &Vars, ctx: &RunCtx<'_>) -> Result<Live, Error> {
        let spec = self
            .current_command(region, vars, ctx.command_timeout)
            .ok_or_else(|| {
                Error::usage("the exec adapter cannot read the live version: `target.exec.current` is not set")
                    .with_hint("add current = [\"./current.sh\", \"{region}\"] printing the version on stdout")
            })?;
        let out = super::run_checked_data(&spec, ctx)?;
        parse_current(&out.stdout).map_err(|e| {
            Error::failed(format!("cannot read the output of `{}`", spec.display()))
                .unreadable()
                .caused_by(e)
                .with_hint("print only the version on stdout; logs belong on stderr")
        })
    }

    fn rollback(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        ctx: &RunCtx<'_>,
    ) -> Vec<RegionResult> {
        let Some(to) = to_version else {
            return regions
                .iter()
                .map(|r| (r.clone(), Err(super::fly::no_previous_version())))
                .collect();
        };
        super::per_region(regions, |region| {
            let spec = self.rollback_region(region, to, vars, ctx.command_timeout);
            super::run_checked(&spec, ctx).map(|_| ())
        })
    }

    fn rollback_commands(
        &self,
        regions: &[String],
        to_version: Option<&str>,
        vars: &Vars,
        timeout: Duration,
    ) -> Vec<CommandSpec> {
        let Some(to) = to_version else {
            return Vec::new();
        };
        regions
            .iter()
            .map(|r| self.rollback_region(r, to, vars, timeout))
            .collect()
    }

    fn programs(&self) -> Vec<super::Program> {
        let first = |argv: &[String]| argv.first().cloned().unwrap_or_default();
        let mut out = vec![super::Program {
            template: first(&self.cfg.deploy),
            key: "target.exec.deploy",
            // Without a `rollback` template, a rollback runs `deploy` with the old version.
            deploy_only: self.cfg.rollback.is_some(),
        }];
        if let Some(current) = &self.cfg.current {
            out.push(super::Program {
                template: first(current),
                key: "target.exec.current",
                deploy_only: false,
            });
        }
        if let Some(rollback) = &self.cfg.rollback {
            out.push(super::Program {
                template: first(rollback),
                key: "target.exec.rollback",
                deploy_only: false,
            });
        }
        out
    }

    /// A deploy hook keeps no release list.
    fn release_history(&self, _: &str, _: &Vars, _: &RunCtx<'_>) -> Result<Vec<String>, Error> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Adapter;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"
[app]
name = "web"
[target]
adapter = "exec"
image = "r.io/web:{{version}}"
[target.exec]
deploy = ["./deploy.sh", "{{region}}", "{{version}}", "--from={{previous_version}}", "{{image}}"]
{extra}
[[stage]]
name = "canary"
regions = ["eu", "us"]
"#
        );
        crate::config::parse(std::path::Path::new("/srv/p/pipeline.toml"), &text, None).unwrap()
    }

    fn vars() -> Vars {
        Vars::new()
            .with("app", "web")
            .with("version", "v2")
            .with("previous_version", "v1")
            .with("stage", "canary")
            .with("deploy_id", "d1")
    }

    fn env_of(spec: &CommandSpec, key: &str) -> Option<String> {
        spec.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn deploy_renders_each_element_and_the_environment() {
        let e = Exec::new(&config("")).unwrap();
        let cmds = e.deploy_commands(&["eu".into(), "us".into()], &vars(), Duration::from_secs(9));
        assert_eq!(
            cmds[0].argv,
            ["./deploy.sh", "eu", "v2", "--from=v1", "r.io/web:v2"]
        );
        assert_eq!(cmds[1].argv[1], "us");
        assert_eq!(env_of(&cmds[0], "SHIPGATE_REGION").as_deref(), Some("eu"));
        assert_eq!(
            env_of(&cmds[0], "SHIPGATE_IMAGE").as_deref(),
            Some("r.io/web:v2")
        );
        assert_eq!(
            env_of(&cmds[0], "SHIPGATE_DEPLOY_ID").as_deref(),
            Some("d1")
        );
        assert_eq!(cmds[0].bin_key.as_deref(), Some("target.exec.deploy"));
        assert_eq!(cmds[0].cwd.as_deref(), Some(std::path::Path::new("/srv/p")));
        assert!(!e.batches_regions());
    }

    #[test]
    fn rollback_without_a_template_deploys_the_old_version() {
        let e = Exec::new(&config("")).unwrap();
        let cmds = e.rollback_commands(&["eu".into()], Some("v1"), &vars(), Duration::from_secs(9));
        assert_eq!(
            cmds[0].argv,
            ["./deploy.sh", "eu", "v1", "--from=v2", "r.io/web:v1"]
        );
        assert_eq!(env_of(&cmds[0], "SHIPGATE_VERSION").as_deref(), Some("v1"));
        assert_eq!(
            env_of(&cmds[0], "SHIPGATE_PREVIOUS_VERSION").as_deref(),
            Some("v2")
        );
        assert!(e
            .rollback_commands(&["eu".into()], None, &vars(), Duration::from_secs(9))
            .is_empty());
    }

    #[test]
    fn rollback_and_current_templates_are_used() {
        let e = Exec::new(&config(
            "rollback = [\"./rollback.sh\", \"{region}\", \"{version}\"]\ncurrent = [\"./current.sh\", \"{region}\"]",
        ))
        .unwrap();
        let cmds = e.rollback_commands(&["us".into()], Some("v1"), &vars(), Duration::from_secs(9));
        assert_eq!(cmds[0].argv, ["./rollback.sh", "us", "v1"]);
        assert_eq!(cmds[0].bin_key.as_deref(), Some("target.exec.rollback"));
        let c = e
            .current_command("us", &vars(), Duration::from_secs(9))
            .unwrap();
        assert_eq!(c.argv, ["./current.sh", "us"]);
    }

    #[test]
    fn current_output_is_the_version() {
        assert_eq!(parse_current(" v7\n").unwrap(), Live::Version("v7".into()));
        assert_eq!(parse_current("\n").unwrap(), Live::Absent);
        assert!(parse_current("deploying...\nv7\n").is_err());
    }
}
