//! Approvals per stage (issue 14, item 4): a stage with `approval = { … }` waits for
//! `shipgate approve` before it deploys; with `[approvals] allowed_signers` every approval is
//! signed with a real SSH key (`ssh-keygen -Y sign -n shipgate`) and verified before it counts.

use crate::common::code;
use crate::common::pipeline::exec_header;
use crate::common::Project;

/// A canary stage without approval, then `primary` (ewr) with `approval`, and `[approvals]`.
fn pipeline(approval: &str, approvals: &str) -> String {
    format!(
        r#"{header}
[[stage]]
name = "canary"
regions = ["lhr", "nrt"]
gates = ["health"]

[[stage]]
name = "primary"
regions = ["ewr"]
gates = ["health"]
approval = {approval}

[gate.health]
type = "command"
run = ["./health.sh", "{{region}}"]
interval = "100ms"
timeout = "5s"
failures = 2

{approvals}
"#,
        header = exec_header()
    )
}

#[test]
fn validate_reports_bad_approval_settings_at_their_place() {
    let p = Project::with_config(&pipeline(
        r#"{ required = 0, timeout = "soon", remind_every = "0s", on_timeout = "rollbak" }"#,
        "[approvals]\nallowed_signers = \"missing_signers\"\n",
    ));
    let run = p.run(&["validate"]).expect(code::USAGE);
    for needle in [
        "`required` must be between 1 and 100",
        "invalid duration `soon`",
        "`remind_every` must be greater than zero",
        "invalid on_timeout `rollbak`",
        "did you mean `rollback`?",
        "allowed signers file",
    ] {
        assert!(run.stderr.contains(needle), "{needle}:\n{}", run.stderr);
    }
    assert!(run.stderr.contains("pipeline.toml:"), "{}", run.stderr);
}
