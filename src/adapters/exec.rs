//! The exec adapter (to be written).

use crate::config::Config;
use crate::error::Error;

pub struct Exec;

impl Exec {
    pub fn new(_config: &Config) -> Result<Self, Error> {
        Err(Error::usage("the exec adapter is not implemented yet"))
    }
}

impl super::Adapter for Exec {
    fn kind(&self) -> crate::config::AdapterKind {
        unreachable!()
    }
    fn batches_regions(&self) -> bool {
        unreachable!()
    }
    fn deploy_commands(
        &self,
        _: &[String],
        _: &crate::config::placeholder::Vars,
        _: std::time::Duration,
    ) -> Vec<crate::exec::CommandSpec> {
        unreachable!()
    }
    fn deploy(
        &self,
        _: &[String],
        _: &crate::config::placeholder::Vars,
        _: &super::RunCtx<'_>,
    ) -> Vec<super::RegionResult> {
        unreachable!()
    }
    fn current(
        &self,
        _: &str,
        _: &crate::config::placeholder::Vars,
        _: &super::RunCtx<'_>,
    ) -> Result<super::Live, Error> {
        unreachable!()
    }
    fn rollback(
        &self,
        _: &[String],
        _: Option<&str>,
        _: &crate::config::placeholder::Vars,
        _: &super::RunCtx<'_>,
    ) -> Vec<super::RegionResult> {
        unreachable!()
    }
    fn rollback_commands(
        &self,
        _: &[String],
        _: Option<&str>,
        _: &crate::config::placeholder::Vars,
        _: std::time::Duration,
    ) -> Vec<crate::exec::CommandSpec> {
        unreachable!()
    }
    fn release_history(
        &self,
        _: &str,
        _: &crate::config::placeholder::Vars,
        _: &super::RunCtx<'_>,
    ) -> Result<Vec<String>, Error> {
        unreachable!()
    }
}
