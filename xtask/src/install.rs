//! Installs what the build and the tests need, each step skipped when already
//! satisfied. Only package registries are used (apt, rustup, crates.io, npm,
//! Maven Central); nothing is downloaded from anywhere else.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Once;

use anyhow::{bail, Context, Result};

use crate::process::{on_path, output, run};
use crate::workspace_root;

/// Makes sure `binary` is on PATH, installing Debian's `package` when running
/// as root; otherwise says in one line what to install.
pub fn apt(binary: &str, package: &str) -> Result<()> {
    if on_path(binary) {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "`{binary}` is missing: install it with `sudo apt-get install -y {package}` and rerun"
        );
    }
    apt_package(package)
}

/// Installs a Debian package (as root), or says in one line what to install.
pub fn apt_package(package: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "`{package}` is missing: install it with `sudo apt-get install -y {package}` and rerun"
        );
    }
    static UPDATE: Once = Once::new();
    UPDATE.call_once(|| {
        println!("==> apt-get update");
        let _ = run(Command::new("apt-get").args(["update", "-qq"]));
    });
    println!("==> apt-get install {package}");
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// rustfmt and clippy, which `cargo xtask test` runs.
pub fn rust_components() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed"]))
        .unwrap_or_default();
    for component in ["rustfmt", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            println!("==> rustup component add {component}");
            run(Command::new("rustup").args(["component", "add", component]))?;
        }
    }
    Ok(())
}

/// The wasm32 target for rustc. If rustup cannot fetch it and CI provides a
/// packed rust-std for this exact rustc in ../shared/toolchain, unpack that.
pub fn wasm_target() -> Result<()> {
    const TARGET: &str = "wasm32-unknown-unknown";
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]));
    if installed.is_some_and(|list| list.lines().any(|l| l.trim() == TARGET)) {
        return Ok(());
    }
    println!("==> rustup target add {TARGET}");
    if run(Command::new("rustup").args(["target", "add", TARGET])).is_ok() {
        return Ok(());
    }
    let version = output(Command::new("rustc").arg("--version")).unwrap_or_default();
    let version = version.split_whitespace().nth(1).unwrap_or("?");
    let packed = workspace_root()
        .join("../shared/toolchain")
        .join(format!("rust-std-{version}-wasm32.tar.xz"));
    if !packed.exists() {
        bail!("cannot install the {TARGET} target: run `rustup target add {TARGET}`");
    }
    println!("==> rustup failed; unpacking {}", packed.display());
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"]))
        .context("rustc --print sysroot")?;
    run(Command::new("tar")
        .arg("-xJf")
        .arg(&packed)
        .arg("-C")
        .arg(Path::new(sysroot.trim()).join("lib/rustlib")))
}

/// The version of `name` recorded in Cargo.lock.
pub fn locked_version(name: &str) -> Result<String> {
    let lock: toml::Table = fs::read_to_string(workspace_root().join("Cargo.lock"))
        .context("read Cargo.lock")?
        .parse()
        .context("parse Cargo.lock")?;
    lock.get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_table())
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some(name))
        .and_then(|p| p.get("version")?.as_str().map(str::to_owned))
        .with_context(|| format!("{name} is not in Cargo.lock"))
}

/// wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock (the two
/// must match, or the generated glue does not fit the compiled wasm).
pub fn wasm_bindgen_cli() -> Result<()> {
    let want = locked_version("wasm-bindgen")?;
    let have = output(Command::new("wasm-bindgen").arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(want.as_str()) {
        return Ok(());
    }
    println!("==> cargo install wasm-bindgen-cli {want} (a few minutes, once)");
    run(Command::new("cargo").args([
        "install",
        "wasm-bindgen-cli",
        "--locked",
        "--version",
        &want,
    ]))
}

/// npm packages of every package in the repo that has a lock file.
pub fn npm_packages() -> Result<()> {
    for dir in [
        "js",
        "edge-worker",
        "examples/news-site",
        "origin/tests/sdk",
        "deploy/validate",
    ] {
        let dir = workspace_root().join(dir);
        let lock = dir.join("package-lock.json");
        if !lock.exists() {
            continue;
        }
        let installed = dir.join("node_modules/.package-lock.json");
        let fresh = match (fs::metadata(&lock), fs::metadata(&installed)) {
            (Ok(l), Ok(i)) => i.modified()? >= l.modified()?,
            _ => false,
        };
        if !fresh {
            apt("npm", "npm")?;
            println!("==> npm ci in {}", dir.display());
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir))?;
        }
    }
    Ok(())
}

/// Apache Kafka's broker jars from Maven Central into `dest/libs`, resolved
/// from xtask/assets/kafka-pom.xml (skipped when that pom is unchanged).
pub fn kafka_jars(dest: &Path) -> Result<()> {
    let pom = include_str!("../assets/kafka-pom.xml");
    let libs = dest.join("libs");
    let marker = libs.join(".resolved-from-pom.xml");
    if fs::read_to_string(&marker).is_ok_and(|m| m == pom) {
        return Ok(());
    }
    apt("java", "openjdk-17-jre-headless")?;
    apt("mvn", "maven")?;
    fs::create_dir_all(dest)?;
    fs::write(dest.join("pom.xml"), pom)?;
    let _ = fs::remove_dir_all(&libs);
    println!("==> resolving Kafka jars from Maven Central (about 45 MB, first run only)");
    run(Command::new("mvn")
        .args([
            "-B",
            "-q",
            "-Dstyle.color=never",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            "-DoutputDirectory=libs",
        ])
        .current_dir(dest))?;
    fs::write(marker, pom)?;
    Ok(())
}

/// worker-build at the version matching the `worker` crate (their minor
/// versions must agree); building it needs pkg-config and OpenSSL headers.
pub fn worker_build() -> Result<()> {
    const VERSION: &str = "0.8.7";
    // It prints the bare version ("0.8.7").
    let have = output(Command::new("worker-build").arg("--version")).unwrap_or_default();
    if have.split_whitespace().last() == Some(VERSION) {
        return Ok(());
    }
    apt("pkg-config", "pkg-config")?;
    if output(Command::new("pkg-config").args(["--exists", "openssl"])).is_none() {
        apt_package("libssl-dev")?;
    }
    println!("==> cargo install worker-build {VERSION} (a few minutes, once)");
    run(Command::new("cargo").args(["install", "worker-build", "--locked", "--version", VERSION]))
}

/// buf, which lints the record schema and checks it against the last release,
/// built by `go install` from the Go module proxy into `$(go env GOPATH)/bin`.
/// Returns its path.
pub fn buf() -> Result<std::path::PathBuf> {
    const VERSION: &str = "1.75.0";
    if !on_path("go") {
        bail!("`go` is missing (buf is built with it): install Go 1.24 or newer and rerun");
    }
    let gopath =
        output(Command::new("go").args(["env", "GOPATH"])).context("`go env GOPATH` failed")?;
    let bin = Path::new(gopath.trim()).join("bin/buf");
    let have = output(Command::new(&bin).arg("--version")).unwrap_or_default();
    if have.trim() != VERSION {
        println!("==> go install buf v{VERSION} (a few minutes, once)");
        run(Command::new("go").args([
            "install",
            &format!("github.com/bufbuild/buf/cmd/buf@v{VERSION}"),
        ]))?;
    }
    Ok(bin)
}

/// A virtualenv in `target/python` with the record contract's Python
/// readers (origin/proto/contract/requirements.txt, from PyPI). Returns its
/// interpreter.
pub fn python_contract() -> Result<std::path::PathBuf> {
    let requirements = workspace_root().join("origin/proto/contract/requirements.txt");
    let venv = workspace_root().join("target/python");
    let python = venv.join("bin/python");
    let marker = venv.join(".installed-requirements.txt");
    let want = fs::read_to_string(&requirements)?;
    if python.exists() && fs::read_to_string(&marker).is_ok_and(|m| m == want) {
        return Ok(python);
    }
    if !on_path("python3") {
        bail!("`python3` is missing: install it with `sudo apt-get install -y python3-venv` and rerun");
    }
    println!("==> python3 -m venv target/python; pip install the record contract's readers");
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&requirements))?;
    fs::write(marker, want)?;
    Ok(python)
}

/// A virtualenv in `target/plot-venv` with matplotlib (PyPI), for the
/// benchmarks' plots. Returns its interpreter.
pub fn plot_python() -> Result<std::path::PathBuf> {
    let venv = workspace_root().join("target/plot-venv");
    let python = venv.join("bin/python");
    let marker = venv.join(".attune-ready");
    if marker.exists() {
        return Ok(python);
    }
    if !on_path("python3") {
        bail!("`python3` is missing: install it with `sudo apt-get install -y python3-venv` and rerun");
    }
    println!("==> python3 -m venv target/plot-venv; pip install matplotlib (once)");
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(&python).args(["-m", "pip", "install", "-q", "matplotlib"]))?;
    fs::write(marker, "")?;
    Ok(python)
}
