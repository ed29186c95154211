//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask test [ARGS…]`: installs what the tests need when it is missing (Debian's
//!   `redis-server`, `redis-cli`, `openssl`, `nodejs` and `npm`, and the Cloudflare emulator's
//!   npm packages, pinned by its lock file), builds the Rust Workers (as `cargo xtask worker`),
//!   then runs `cargo test --workspace --all-features [ARGS…]`.
//! - `cargo xtask deps`: only the installation step.
//! - `cargo xtask features`: `cargo check`s the facade with each of its features alone and with
//!   the defaults, natively, and with `worker` and `durable` for `wasm32-unknown-unknown`.
//! - `cargo xtask msrv`: fails when a publishable crate's `rust-version` is older than the
//!   `rust-version` of a dependency it builds with (normal and build dependencies, all features,
//!   every target, as `Cargo.lock` pins them), naming the dependency.
//! - `cargo xtask worker`: builds the Rust Workers for `wasm32-unknown-unknown` with
//!   `worker-build`, offline: it adds the target with rustup and installs `worker-build` and the
//!   `wasm-bindgen-cli` matching `Cargo.lock` with `cargo install` when they are missing, and
//!   gives worker-build the esbuild of the emulator's npm packages and no wasm-opt (Debian's is too
//!   old for wasm-bindgen's output). The tests' Workers are built in the dev profile: they
//!   are I/O-bound in workerd, and the dev build takes a quarter less time than a release one.
//!   `KV_TEST_SKIP_WORKER=1` skips it in `test`.

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
        Some("features") => check_features(),
        Some("msrv") => check_msrv(),
        Some("worker") => install_deps().and_then(|()| build_workers()),
        _ => Err(
            "usage: cargo xtask test [cargo test args…] | deps | worker | features | msrv"
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
            .arg("--dev")
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

/// `cargo metadata` of the whole workspace, every feature and target.
fn metadata() -> Result<serde_json::Value, String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .current_dir(workspace())
        .output()
        .map_err(|e| format!("could not run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata's output: {e}"))
}

/// The facade's features, each alone and with the defaults, natively; `worker` and `durable` on
/// wasm32.
fn check_features() -> Result<(), String> {
    let meta = metadata()?;
    let facade = meta["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == "kvkit"))
        .ok_or("the kvkit package is not in the workspace")?;
    let mut features: Vec<&str> = facade["features"]
        .as_object()
        .ok_or("kvkit has no features table")?
        .keys()
        .map(String::as_str)
        .filter(|f| *f != "default")
        .collect();
    features.sort_unstable();
    let defaults: Vec<&str> = facade["features"]["default"]
        .as_array()
        .map(|d| d.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    let mut runs: Vec<(Option<&str>, Vec<String>)> = vec![
        (None, vec!["--no-default-features".to_owned()]),
        (None, vec![]),
    ];
    for feature in &features {
        runs.push((
            None,
            vec![
                "--no-default-features".to_owned(),
                format!("--features={feature}"),
            ],
        ));
        if !defaults.contains(feature) {
            runs.push((None, vec![format!("--features={feature}")]));
        }
    }
    let wasm = "wasm32-unknown-unknown";
    runs.push((Some(wasm), vec!["--features=worker".to_owned()]));
    runs.push((
        Some(wasm),
        vec![
            "--no-default-features".to_owned(),
            "--features=worker".to_owned(),
        ],
    ));
    runs.push((
        Some(wasm),
        vec![
            "--no-default-features".to_owned(),
            "--features=durable".to_owned(),
        ],
    ));
    runs.push((Some(wasm), vec!["--features=worker,durable".to_owned()]));
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for (target, args) in &runs {
        eprintln!(
            "xtask: cargo check -p kvkit {} ({})",
            args.join(" "),
            target.unwrap_or("native")
        );
        let mut check = Command::new(&cargo);
        check
            .args(["check", "--quiet", "--locked", "-p", "kvkit"])
            .args(args);
        if let Some(target) = target {
            check.args(["--target", target]);
        }
        let started = std::time::Instant::now();
        // Warnings fail the check without RUSTFLAGS, which would rebuild every dependency.
        let output = check
            .current_dir(workspace())
            .output()
            .map_err(|e| format!("could not run cargo check: {e}"))?;
        let messages = String::from_utf8_lossy(&output.stderr);
        eprint!("{messages}");
        eprintln!("xtask: … {:.1} s", started.elapsed().as_secs_f64());
        if !output.status.success() {
            return Err(format!("cargo check -p kvkit {} failed", args.join(" ")));
        }
        if messages.lines().any(|line| line.starts_with("warning")) {
            return Err(format!("cargo check -p kvkit {} warned", args.join(" ")));
        }
    }
    Ok(())
}

/// A `rust-version` as comparable numbers (`1.88` is `[1, 88, 0]`).
fn parse_version(version: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    parts.resize(3, 0);
    parts
}

/// Every publishable crate's `rust-version` covers what its locked dependencies declare.
fn check_msrv() -> Result<(), String> {
    let meta = metadata()?;
    let packages: std::collections::HashMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .ok_or("cargo metadata lists no packages")?
        .iter()
        .filter_map(|p| Some((p["id"].as_str()?, p)))
        .collect();
    let nodes: std::collections::HashMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .ok_or("cargo metadata has no resolve graph")?
        .iter()
        .filter_map(|n| Some((n["id"].as_str()?, n)))
        .collect();
    let mut problems = Vec::new();
    for member in meta["workspace_members"].as_array().into_iter().flatten() {
        let Some(id) = member.as_str() else { continue };
        let package = packages[id];
        let publishable = package["publish"]
            .as_array()
            .is_none_or(|registries| !registries.is_empty());
        if !publishable {
            continue;
        }
        let name = package["name"].as_str().unwrap_or(id);
        let own = package["rust_version"]
            .as_str()
            .ok_or_else(|| format!("{name} declares no rust-version"))?;
        let mut seen = std::collections::HashSet::new();
        let mut stack = vec![id];
        while let Some(current) = stack.pop() {
            if !seen.insert(current) {
                continue;
            }
            let dependency = packages[current];
            if let Some(needed) = dependency["rust_version"].as_str()
                && parse_version(needed) > parse_version(own)
            {
                problems.push(format!(
                    "{name} declares rust-version {own}, but {} {} needs {needed}",
                    dependency["name"].as_str().unwrap_or(current),
                    dependency["version"].as_str().unwrap_or("?"),
                ));
            }
            for dep in nodes[current]["deps"].as_array().into_iter().flatten() {
                let built = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|kind| kind["kind"].is_null() || kind["kind"] == "build");
                if built && let Some(next) = dep["pkg"].as_str() {
                    stack.push(next);
                }
            }
        }
    }
    if problems.is_empty() {
        eprintln!("xtask: every publishable crate's rust-version covers its locked dependencies");
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
