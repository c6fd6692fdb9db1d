//! `cargo xtask demo [--stack]`: the origin until Ctrl-C — embedded (nothing
//! else to install, data under target/demo-data) or, with `--stack`, on the
//! real Kafka + Redis stack. Ctrl-C (or SIGTERM) stops the origin and then the
//! stack if this command started it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use std::process::{Child, Command};

use crate::process::{self, port_open};
use crate::stack::Stack;
use crate::test::cargo;

pub fn run(with_stack: bool) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("install the Ctrl-C handler")?;

    let stack = Stack::from_env();
    let running = if with_stack { Some(stack.up()?) } else { None };
    let backend_env: Vec<(&str, String)> = match &running {
        Some(r) => r.endpoints.vars().into_iter().collect(),
        None => vec![(
            "ATTUNE_DATA_DIR",
            crate::workspace_root()
                .join("target/demo-data")
                .display()
                .to_string(),
        )],
    };
    let listen = std::env::var("ATTUNE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let port: u16 = listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("ATTUNE_LISTEN={listen} is not host:port"))?;

    println!("==> building the origin");
    process::run(cargo().args(["build", "--quiet", "-p", "attune-origin"]))?;
    let bin = crate::workspace_root().join("target/debug/attune-origin");
    let spawn = |args: &[&str]| -> Result<Child> {
        Command::new(&bin)
            .args(args)
            .env("ATTUNE_LISTEN", &listen)
            .env_remove("KAFKA_BROKERS")
            .env_remove("REDIS_URL")
            .envs(backend_env.iter().map(|(k, v)| (*k, v.as_str())))
            .spawn()
            .with_context(|| format!("start attune-origin {}", args.join(" ")))
    };
    let mut children = vec![("origin", spawn(&["serve"])?)];
    if running.is_some() {
        // The consumers turn the event topics into profiles.
        children.push(("consumer", spawn(&["consume"])?));
    }

    let started = Instant::now();
    let mut announced = false;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut exited = None;
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                exited.get_or_insert((*name, status));
            }
        }
        if let (Some((name, status)), false) = (exited, stopping) {
            stop_all(&mut children);
            bail!("the {name} exited ({status}); see its output above");
        }
        if stopping {
            stop_all(&mut children);
            break;
        }
        if !announced && port_open(port) {
            announced = true;
            let backends = match &running {
                Some(r) => format!(
                    "Kafka {} + Redis {}",
                    r.endpoints.kafka_brokers, r.endpoints.redis_url
                ),
                None => "embedded (target/demo-data); `cargo xtask demo --stack` for Kafka + Redis"
                    .into(),
            };
            let key = "Authorization: Bearer demo-secret-api-key";
            println!(
                "\n==> Attune is up ({:.0}s), backends: {backends}",
                started.elapsed().as_secs_f64()
            );
            println!(
                "    API docs  http://{listen}/openapi.json   metrics http://{listen}/metrics"
            );
            println!("    add an item:");
            println!(
                r#"      curl -X POST http://{listen}/v1/items -H '{key}' -H 'content-type: application/json' -d '{{"items":[{{"id":"a1","tags":["tech"]}}]}}'"#
            );
            println!("    recommendations:");
            println!("      curl 'http://{listen}/v1/recommendations?user=anon:me' -H '{key}'");
            println!("    Ctrl-C stops everything.");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("\n==> stopping");
    drop(running);
    Ok(())
}

/// SIGINT to every child (they shut down gracefully), then wait for them.
fn stop_all(children: &mut [(&str, Child)]) {
    for (_, child) in children.iter() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    for (_, child) in children.iter_mut() {
        let _ = child.wait();
    }
}
