//! `cargo xtask demo [--stack] [--readers N]`: the whole loop on this machine —
//! the news site with the tracker, the edge worker in workerd, and the origin,
//! embedded (data under target/demo-data) or, with `--stack`, on real Kafka +
//! Redis with a stream consumer; with `--readers`, simulated readers with
//! tastes (`attune-origin simulate`) reading the site's rails. Builds what it
//! needs, loads the catalog, prints the URLs; Ctrl-C (or SIGTERM) stops every
//! process and then the stack if it started it.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cargo;
use crate::process::{self, port_open};
use crate::stack::Stack;
use crate::{edge, install, tracker, workspace_root};

/// The built-in development site of `attune-origin` (see its config module).
const DEMO_SITE_KEY: &str = "demo";
const DEMO_API_KEY: &str = "demo-secret-api-key";
/// The stack demo's own topics and consumer group: what tests and benchmarks
/// leave on the shared stack (they write the unprefixed topics, or their own
/// prefixes) never reaches the demo's consumer, and the demo's state survives
/// demo restarts.
const DEMO_TOPIC_PREFIX: &str = "demo.";
const DEMO_CONSUMER_GROUP: &str = "attune-demo";
/// How long the origin may take to open its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn port_of(listen: &str, var: &str) -> Result<u16> {
    listen
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .with_context(|| format!("{var}={listen} is not host:port"))
}

pub fn run(with_stack: bool, readers: usize) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("install the Ctrl-C handler")?;
    let ports = Ports::from_env()?;
    build_all()?;

    let stack = Stack::from_env();
    let running = if with_stack { Some(stack.up()?) } else { None };
    let backend_env = backend_env(running.as_ref())?;
    let bin = crate::target_dir().join("debug/attune-origin");
    let spawn_origin = |args: &[&str]| -> Result<Child> {
        Command::new(&bin)
            .args(args)
            .env("ATTUNE_LISTEN", &ports.listen)
            .env_remove("KAFKA_BROKERS")
            .env_remove("REDIS_URL")
            .env_remove("ATTUNE_CONFIG")
            .env_remove("ATTUNE_TOPIC_PREFIX")
            .env_remove("ATTUNE_CONSUMER_GROUP")
            .envs(backend_env.iter().map(|(k, v)| (*k, v.as_str())))
            // A demo's traffic is small: validate the model on every engagement.
            .env("ATTUNE_VALIDATION_SAMPLE", "1")
            .spawn()
            .with_context(|| format!("start attune-origin {}", args.join(" ")))
    };
    let mut children = vec![("origin", spawn_origin(&["serve"])?)];
    if running.is_some() {
        // The consumers turn the event topics into profiles and the model.
        children.push(("consumer", spawn_origin(&["consume"])?));
    }
    let readers = (readers > 0).then(|| {
        vec![
            "simulate".to_owned(),
            "--readers".into(),
            readers.to_string(),
            "--origin".into(),
            format!("http://{}", ports.listen),
            "--site-key".into(),
            DEMO_SITE_KEY.into(),
            "--api-key".into(),
            DEMO_API_KEY.into(),
        ]
    });
    supervise(&stop, &mut children, &ports, running.as_ref(), readers)?;
    println!("\n==> stopping");
    drop(running);
    Ok(())
}

/// Where the origin and the news site listen.
struct Ports {
    /// The origin's `host:port` (`ATTUNE_LISTEN`).
    listen: String,
    origin: u16,
    site: u16,
}

impl Ports {
    /// From `ATTUNE_LISTEN` and `NEWS_SITE_PORT`, both free.
    fn from_env() -> Result<Ports> {
        let listen = std::env::var("ATTUNE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
        let origin = port_of(&listen, "ATTUNE_LISTEN")?;
        let site: u16 = std::env::var("NEWS_SITE_PORT")
            .unwrap_or_else(|_| "3000".into())
            .parse()
            .context("NEWS_SITE_PORT is not a port number")?;
        for (p, var) in [(origin, "ATTUNE_LISTEN"), (site, "NEWS_SITE_PORT")] {
            if port_open(p) {
                bail!("port {p} is in use: stop what runs there or set {var}");
            }
        }
        Ok(Ports {
            listen,
            origin,
            site,
        })
    }
}

/// Installs what is missing and builds the tracker, the edge and the origin.
fn build_all() -> Result<()> {
    println!("==> installing what is missing (the first run takes a few minutes)");
    install::wasm_target()?;
    install::wasm_bindgen_cli()?;
    install::worker_build()?;
    install::apt("node", "nodejs")?;
    install::npm_packages()?;
    println!("==> building the tracker (wasm + npm package)");
    tracker::build()?;
    println!("==> building the edge worker (workers-rs)");
    edge::build()?;
    println!("==> building the origin");
    process::run(cargo().args(["build", "--quiet", "-p", "attune-origin"]))
}

/// The origin's backend variables: the stack on the demo's own topics and
/// group, or the embedded store under target/demo-data.
fn backend_env(running: Option<&crate::stack::Running>) -> Result<Vec<(&'static str, String)>> {
    Ok(match running {
        Some(r) => {
            crate::stack::ensure_topics(&r.endpoints.kafka_brokers, DEMO_TOPIC_PREFIX)?;
            let mut vars: Vec<(&str, String)> = r.endpoints.vars().into_iter().collect();
            vars.push(("ATTUNE_TOPIC_PREFIX", DEMO_TOPIC_PREFIX.into()));
            vars.push(("ATTUNE_CONSUMER_GROUP", DEMO_CONSUMER_GROUP.into()));
            vars
        }
        None => vec![(
            "ATTUNE_DATA_DIR",
            workspace_root()
                .join("target/demo-data")
                .display()
                .to_string(),
        )],
    })
}

/// Starts the news site once the origin answers, announces the URLs once
/// the site does, and stops everything on Ctrl-C or when a process exits.
fn supervise(
    stop: &AtomicBool,
    children: &mut Vec<(&'static str, Child)>,
    ports: &Ports,
    running: Option<&crate::stack::Running>,
    simulate: Option<Vec<String>>,
) -> Result<()> {
    let started = Instant::now();
    let mut site_started = false;
    let mut announced = false;
    let mut catch_up = running.map(|_| CatchUp::default());
    let mut polls = 0u32;
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut exited = None;
        for (name, child) in children.iter_mut() {
            if let Some(status) = child.try_wait()? {
                exited.get_or_insert((*name, status));
            }
        }
        if let (Some((name, status)), false) = (exited, stopping) {
            stop_all(children);
            bail!("the {name} exited ({status}); see its output above");
        }
        if stopping {
            stop_all(children);
            return Ok(());
        }
        if !site_started && port_open(ports.origin) {
            site_started = true;
            // The site starts the edge in workerd and loads the catalog.
            let site = Command::new("node")
                .arg("server.mjs")
                .args(["--port", &ports.site.to_string()])
                .args(["--origin", &format!("http://{}", ports.listen)])
                .args(["--api-key", DEMO_API_KEY, "--site-key", DEMO_SITE_KEY])
                .args(["--load-catalog", "--demo-dashboard-key"])
                .current_dir(workspace_root().join("examples/news-site"))
                .spawn()
                .context("start the news site (node examples/news-site/server.mjs)")?;
            children.push(("news site", site));
            if let Some(args) = &simulate {
                // The readers wait for the catalog the site loads.
                let readers = Command::new(crate::target_dir().join("debug/attune-origin"))
                    .args(args)
                    .spawn()
                    .context("start the simulated readers (attune-origin simulate)")?;
                children.push(("simulated readers", readers));
            }
        }
        if !site_started && started.elapsed() > START_TIMEOUT {
            stop_all(children);
            bail!(
                "the origin did not open {} within {START_TIMEOUT:?}",
                ports.listen
            );
        }
        if site_started && !announced && port_open(ports.site) {
            announced = true;
            announce(&ports.listen, ports.site, running, started);
        }
        polls += 1;
        if let (true, Some(c), 0) = (announced, catch_up.as_mut(), polls % 5) {
            c.poll(&ports.listen);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Tells the person how far behind the demo's consumer is when it starts,
/// and when it has caught up (the origin measures the group's lag).
#[derive(Default)]
struct CatchUp {
    /// When it was first seen behind.
    behind_since: Option<Instant>,
    done: bool,
}

impl CatchUp {
    fn poll(&mut self, listen: &str) {
        if self.done {
            return;
        }
        let Some(lag) = group_lag(listen) else {
            return;
        };
        match (lag, self.behind_since) {
            (0, None) => {
                println!("==> the demo's consumer is current (lag 0)");
                self.done = true;
            }
            (0, Some(since)) => {
                println!(
                    "==> the demo's consumer caught up in {:.0} s",
                    since.elapsed().as_secs_f64()
                );
                self.done = true;
            }
            (n, None) => {
                println!("==> the demo's consumer is {n} events behind; profiles lag until it catches up");
                self.behind_since = Some(Instant::now());
            }
            _ => {}
        }
    }
}

/// The demo group's lag from the origin's dashboard data, once measured.
fn group_lag(listen: &str) -> Option<u64> {
    let dashboard: serde_json::Value = ureq::get(&format!("http://{listen}/v1/dashboard"))
        .set("authorization", &format!("Bearer {DEMO_API_KEY}"))
        .timeout(Duration::from_secs(2))
        .call()
        .ok()?
        .into_json()
        .ok()?;
    dashboard["consumer_lag"]["total"].as_u64()
}

fn announce(
    listen: &str,
    site_port: u16,
    running: Option<&crate::stack::Running>,
    started: Instant,
) {
    let backends = match running {
        Some(r) => format!(
            "Kafka {} + Redis {}, with a stream consumer",
            r.endpoints.kafka_brokers, r.endpoints.redis_url
        ),
        None => "embedded (target/demo-data); `cargo xtask demo --stack` adds Kafka, Redis and the stream consumer".into(),
    };
    println!(
        "\n==> Attune is up ({:.0}s) · backends: {backends}",
        started.elapsed().as_secs_f64()
    );
    println!("    news site       http://localhost:{site_port}   ← read a few articles of one section and watch \"Recommended for you\"");
    println!("    live dashboard  http://{listen}/dashboard#key={DEMO_API_KEY}   (also linked at the foot of every page)");
    println!("    API             http://{listen}/openapi.json · metrics http://{listen}/metrics");
    println!("    Ctrl-C stops everything.");
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
