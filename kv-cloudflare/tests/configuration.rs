//! Configuration is explicit: `CloudflareBuilder::new()` never reads the environment, and
//! `CloudflareBuilder::from_env()` reads exactly the three documented variables.
//!
//! Setting a variable in this process would race every other test thread (and is `unsafe` in
//! edition 2024), so the test runs its checks in a child: this same test binary, started again
//! with the variables set and this test selected.

use std::process::Command;

use kvkit_cloudflare::CloudflareBuilder;
use kvkit_core::ErrorKind;

const CHILD: &str = "KVKIT_CLOUDFLARE_CONFIGURATION_CHILD";
const VARIABLES: [&str; 3] = [
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_KV_NAMESPACE_ID",
    "CLOUDFLARE_API_TOKEN",
];

/// Runs this test again in a child process with `vars` set (and the others removed), and returns
/// what the child reported.
fn in_child(vars: &[(&str, &str)]) -> String {
    let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
    command.args([
        "--exact",
        "new_ignores_the_environment_and_from_env_reads_it",
        "--nocapture",
        "--test-threads=1",
    ]);
    for name in VARIABLES {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied()).env(CHILD, "1");
    let output = command.output().expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// What the child prints: one line per builder, `new=` and `from_env=`, each `ok` or the kind
/// of the error `build()` returned.
fn report() {
    let outcome = |builder: CloudflareBuilder| match builder.build() {
        Ok(_) => "ok".to_owned(),
        Err(err) => format!("{:?}", err.kind()),
    };
    println!("new={}", outcome(CloudflareBuilder::new()));
    println!("from_env={}", outcome(CloudflareBuilder::from_env()));
    println!(
        "from_env_overridden={}",
        outcome(CloudflareBuilder::from_env().account_id("explicit"))
    );
}

#[test]
fn new_ignores_the_environment_and_from_env_reads_it() {
    if std::env::var_os(CHILD).is_some() {
        report();
        return;
    }

    let all = in_child(&[
        ("CLOUDFLARE_ACCOUNT_ID", "acct"),
        ("CLOUDFLARE_KV_NAMESPACE_ID", "ns"),
        ("CLOUDFLARE_API_TOKEN", "s3cr3t"),
    ]);
    let configuration = format!("{:?}", ErrorKind::Configuration);
    assert!(all.contains(&format!("new={configuration}")), "{all}");
    assert!(all.contains("from_env=ok"), "{all}");
    assert!(all.contains("from_env_overridden=ok"), "{all}");

    let none = in_child(&[]);
    assert!(none.contains(&format!("new={configuration}")), "{none}");
    assert!(
        none.contains(&format!("from_env={configuration}")),
        "{none}"
    );

    // An empty variable counts as unset.
    let empty = in_child(&[
        ("CLOUDFLARE_ACCOUNT_ID", "acct"),
        ("CLOUDFLARE_KV_NAMESPACE_ID", "ns"),
        ("CLOUDFLARE_API_TOKEN", ""),
    ]);
    assert!(
        empty.contains(&format!("from_env={configuration}")),
        "{empty}"
    );
}
