//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test [ARGS…]`: installs what the tests need when it is missing (Debian's
//!   `redis-server`, `redis-cli`, `openssl`, `nodejs` and `npm`, and the Cloudflare emulator's
//!   npm packages, pinned by its lock file), then runs `cargo test --workspace --all-features [ARGS…]`.
//! - `cargo xtask deps`: only the installation step.

use std::env;
use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("test") => install_deps().and_then(|()| run_tests(&rest)),
        Some("deps") => install_deps(),
        _ => Err("usage: cargo xtask test [cargo test args…] | cargo xtask deps".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn on_path(program: &str) -> bool {
    env::var_os("PATH")
        .is_some_and(|paths| env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("could not start {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed with {status}"))
    }
}

/// Installs the Debian packages the tests need, when they are missing.
fn install_deps() -> Result<(), String> {
    let missing: Vec<&str> = [
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
        ("openssl", "openssl"),
        ("node", "nodejs"),
        ("npm", "npm"),
    ]
    .into_iter()
    .filter(|(binary, _)| !on_path(binary))
    .map(|(_, package)| package)
    .collect();
    if !missing.is_empty() {
        if !on_path("apt-get") {
            return Err(format!(
                "missing {missing:?} and no apt-get to install them: install them by hand \
                 (or set KV_TEST_SKIP_REDIS=1 / KV_TEST_SKIP_CF=1 to skip the Redis / Cloudflare tests)"
            ));
        }
        eprintln!("xtask: installing {missing:?} with apt-get");
        run(Command::new("apt-get").args(["update", "-qq"]))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    install_emulator()
}

/// Installs the Cloudflare emulator's npm packages (Miniflare and workerd, at the versions its
/// committed lock file pins) when they are missing.
fn install_emulator() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("kv-cloudflare")
        .join("emulator");
    if dir.join("node_modules").join("miniflare").is_dir() {
        return Ok(());
    }
    let version = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| format!("could not run node: {e}"))?;
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < 18 {
        return Err(format!(
            "the Cloudflare emulator needs Node.js 18 or later, found {}: install a newer one \
             (or set KV_TEST_SKIP_CF=1 to skip the Cloudflare tests)",
            version.trim()
        ));
    }
    eprintln!("xtask: installing the Cloudflare emulator's packages with npm ci");
    // The packages' install scripts only check for or fetch what the lock file already installs.
    run(Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir))
}

fn run_tests(extra: &[String]) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(cargo)
        .args(["test", "--workspace", "--all-features"])
        .args(extra))
}
