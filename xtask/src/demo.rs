//! `cargo xtask demo`: the local stack plus the origin, until Ctrl-C.
//!
//! Until the news-site demo lands, this is the stack and the origin's API;
//! Ctrl-C (or SIGTERM) stops the origin and then the stack.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::port_open;
use crate::stack::Stack;
use crate::test::cargo;

pub fn run() -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("install the Ctrl-C handler")?;

    let stack = Stack::from_env();
    let running = stack.up()?;
    let listen = std::env::var("ATTUNE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let port: u16 = listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("ATTUNE_LISTEN={listen} is not host:port"))?;

    println!("==> building and starting the origin on {listen}");
    let mut origin = cargo()
        .args(["run", "--quiet", "-p", "attune-origin", "--", "serve"])
        .env("ATTUNE_LISTEN", &listen)
        .envs(running.endpoints.vars())
        .spawn()
        .context("start the origin")?;

    let started = Instant::now();
    let mut announced = false;
    loop {
        if let Some(status) = origin.try_wait()? {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            bail!("the origin exited ({status}); see its output above");
        }
        if stop.load(Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(origin.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            origin.wait()?;
            break;
        }
        if !announced && port_open(port) {
            announced = true;
            println!(
                "\n==> Attune is up ({:.0}s):\n    origin   http://{listen}/healthz  http://{listen}/readyz\n    Kafka    {}\n    Redis    {}\n    Ctrl-C stops everything.",
                started.elapsed().as_secs_f64(),
                running.endpoints.kafka_brokers,
                running.endpoints.redis_url,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\n==> stopping");
    drop(running);
    Ok(())
}
