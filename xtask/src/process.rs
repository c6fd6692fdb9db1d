//! Small process helpers: run a command, start a long-lived server detached
//! with a pid file, check and stop it, and wait with a deadline.

use std::fs::{self, File, OpenOptions};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Runs `cmd` to completion with inherited output; fails naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", show(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout, or `None` when it cannot start or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `program` is on PATH.
pub fn on_path(program: &str) -> bool {
    which::which(program).is_ok()
}

/// Bytes of `path` gzipped at level 9 (`gzip -9`), as a page would get it.
pub fn gzip_len(path: &Path) -> Result<usize> {
    use std::io::Write;
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes)?;
    Ok(gz.finish()?.len())
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Starts `cmd` in its own process group (so it outlives xtask and can be
/// stopped with everything it forks), output appended to `log`; writes its pid
/// to `pid_file`.
pub fn spawn_detached(cmd: &mut Command, log: &Path, pid_file: &Path) -> Result<u32> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start {}", show(cmd)))?;
    fs::write(pid_file, child.id().to_string())?;
    Ok(child.id())
}

/// The pid recorded in `pid_file`, if that process still runs and its command
/// line contains `marker` (a stale pid file may name a reused pid).
pub fn running_pid(pid_file: &Path, marker: &str) -> Option<u32> {
    let pid: u32 = fs::read_to_string(pid_file).ok()?.trim().parse().ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let ours = String::from_utf8_lossy(&cmdline).contains(marker);
    (ours && alive(pid)).then_some(pid)
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Stops the process group of `pid`: SIGTERM, then SIGKILL after `grace`.
pub fn stop(pid: u32, grace: Duration) {
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive(pid) {
        let _ = killpg(group, Signal::SIGKILL);
        while alive(pid) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// True when nothing listens on 127.0.0.1:`port`.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// True when something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Polls `ready` until it returns true, failing when `pid` dies or the
/// deadline passes; both errors carry the end of the service's log.
pub fn wait_ready(
    name: &str,
    pid: u32,
    log: &Path,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return Ok(());
        }
        if !alive(pid) {
            bail!(
                "{name} exited during start-up; last lines of {}:\n{}",
                log.display(),
                tail(log, 20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not become ready within {timeout:?}; last lines of {}:\n{}",
                log.display(),
                tail(log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = File::open(path)
        .and_then(std::io::read_to_string)
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
