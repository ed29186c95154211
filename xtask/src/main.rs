//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test [ARGS…]`: installs what the tests need when it is missing (Debian's
//!   `redis-server`, `redis-cli`, `openssl`, `nodejs` and `npm`, and the Cloudflare emulator's
//!   npm packages, pinned by its lock file), builds the Rust Workers (as `cargo xtask worker`),
//!   then runs `cargo test --workspace --all-features [ARGS…]`.
//! - `cargo xtask deps`: only the installation step.
//! - `cargo xtask worker`: builds the Rust Workers for `wasm32-unknown-unknown` with
//!   `worker-build`, offline: it adds the target with rustup and installs `worker-build` and the
//!   `wasm-bindgen-cli` matching `Cargo.lock` with `cargo install` when they are missing, and
//!   gives worker-build the esbuild of the emulator's npm packages and no wasm-opt (Debian's is too
//!   old for wasm-bindgen's output). `KV_TEST_SKIP_WORKER=1` skips it in `test`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let mut args = env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let result = match command.as_deref() {
        Some("test") => install_deps()
            .and_then(|()| {
                if env::var("KV_TEST_SKIP_WORKER").is_ok_and(|v| v == "1" || v == "true") {
                    eprintln!("xtask: KV_TEST_SKIP_WORKER is set: not building the Rust Workers");
                    Ok(())
                } else {
                    build_workers()
                }
            })
            .and_then(|()| run_tests(&rest)),
        Some("deps") => install_deps(),
        Some("worker") => install_deps().and_then(|()| build_workers()),
        _ => Err(
            "usage: cargo xtask test [cargo test args…] | cargo xtask deps | cargo xtask worker"
                .to_owned(),
        ),
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
    let dir = emulator_dir();
    let modules = dir.join("node_modules");
    if modules.join("miniflare").is_dir() && modules.join(".bin").join("esbuild").is_file() {
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

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn emulator_dir() -> PathBuf {
    workspace().join("kv-cloudflare").join("emulator")
}

/// The Rust Workers `cargo xtask worker` builds, by their crate directories.
const WORKERS: &[&str] = &["kv-worker/test-worker", "examples/worker"];

/// worker-build's version; its output must suit the `worker` crate in Cargo.lock.
const WORKER_BUILD_VERSION: &str = "0.8.7";

/// The version of `package` in Cargo.lock (the first one listed).
fn locked_version(package: &str) -> Result<String, String> {
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{package}\"")
            && let Some(version) = lines
                .next()
                .and_then(|l| l.strip_prefix("version = \""))
                .and_then(|l| l.strip_suffix('"'))
        {
            return Ok(version.to_owned());
        }
    }
    Err(format!("{package} is not in Cargo.lock"))
}

/// Where `cargo install` puts `binary`.
fn cargo_bin(binary: &str) -> PathBuf {
    let home = env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        PathBuf::from,
    );
    home.join("bin").join(binary)
}

/// What `program --version` prints, if it runs.
fn version_of(program: &Path) -> Option<String> {
    let output = Command::new(program).arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `cargo install`s `krate` at `version` unless `binary --version` already names that version;
/// `--locked` when `locked` (wasm-bindgen-cli's lock file pins a dependency version the
/// registries here do not have, so it resolves afresh).
fn cargo_install(krate: &str, binary: &str, version: &str, locked: bool) -> Result<(), String> {
    if version_of(&cargo_bin(binary))
        .is_some_and(|v| v.split_whitespace().any(|word| word == version))
    {
        return Ok(());
    }
    eprintln!("xtask: installing {krate} {version} with cargo install");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut install = Command::new(cargo);
    install.args(["install", krate, "--version", version, "--force"]);
    if locked {
        install.arg("--locked");
    }
    run(&mut install)
}

/// Builds every Rust Worker for wasm32 with worker-build, installing the tools it needs.
fn build_workers() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("could not run rustup: {e}"))?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t == "wasm32-unknown-unknown")
    {
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    cargo_install("worker-build", "worker-build", WORKER_BUILD_VERSION, true)?;
    let bindgen = locked_version("wasm-bindgen")?;
    cargo_install("wasm-bindgen-cli", "wasm-bindgen", &bindgen, false)?;
    let esbuild = emulator_dir()
        .join("node_modules")
        .join(".bin")
        .join("esbuild");
    for worker in WORKERS {
        eprintln!("xtask: building the Rust Worker in {worker}");
        run(Command::new(cargo_bin("worker-build"))
            .arg("--release")
            .current_dir(workspace().join(worker))
            .env("WASM_BINDGEN_BIN", cargo_bin("wasm-bindgen"))
            .env("ESBUILD_BIN", &esbuild))?;
    }
    Ok(())
}

fn run_tests(extra: &[String]) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    run(Command::new(cargo)
        .args(["test", "--workspace", "--all-features"])
        .args(extra))
}
