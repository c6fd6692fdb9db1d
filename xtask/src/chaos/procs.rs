//! The harness's origin and its three consumers, as processes it can kill
//! and start again (the same ports, the same consumer instance names).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::load::{API_KEY, SITE_KEY};
use crate::stack::Stack;

/// Consumers in the group.
const CONSUMERS: usize = 3;
const GROUP: &str = "chaos";

pub struct Procs {
    bin: PathBuf,
    env: Vec<(&'static str, String)>,
    config: PathBuf,
    logs: PathBuf,
    port: u16,
    origin: Option<Child>,
    consumers: Vec<Option<Child>>,
    /// Which consumer [`Procs::kill_next_consumer`] kills next.
    next_victim: usize,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Procs {
    /// Starts the origin (waits until it is ready) and the consumers.
    pub fn start(stack: &Stack, bin: &Path, env: &[(&'static str, String)]) -> Result<Procs> {
        let dir = stack.dir().to_path_buf();
        let config = dir.join("sites.toml");
        std::fs::write(
            &config,
            format!(
                "[[sites]]\nsite_key = \"{SITE_KEY}\"\napi_key = \"{API_KEY}\"\n\
                 token_secret = \"chaos-harness-token-secret\"\nallowed_origins = [\"*\"]\n"
            ),
        )?;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut procs = Procs {
            bin: bin.to_path_buf(),
            env: env.to_vec(),
            config,
            logs,
            port: free_port()?,
            origin: None,
            consumers: (0..CONSUMERS).map(|_| None).collect(),
            next_victim: 0,
        };
        procs.start_all()?;
        Ok(procs)
    }

    pub fn origin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn command(&self, log: &str) -> Result<Command> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(log))?;
        let mut cmd = Command::new(&self.bin);
        cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("ATTUNE_CONFIG", &self.config)
            .env("ATTUNE_CONSUMER_GROUP", GROUP)
            .env_remove("ATTUNE_TOPIC_PREFIX")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        Ok(cmd)
    }

    fn start_origin(&mut self) -> Result<()> {
        let child = self
            .command("origin.log")?
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--rate-per-key", "1000000", "--rate-per-ip", "1000000"])
            .spawn()
            .context("start the origin")?;
        self.origin = Some(child);
        // Ready: Kafka and Redis answer it.
        let url = format!("{}/readyz", self.origin_url());
        let log = self.logs.join("origin.log");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if ureq::get(&url).call().is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .origin
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!("the origin exited ({status}): see {}", log.display());
            }
            if Instant::now() > deadline {
                bail!("the origin was not ready in 90 s: see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn start_consumer(&mut self, i: usize) -> Result<()> {
        let child = self
            .command(&format!("consumer-{i}.log"))?
            .args(["consume", "--instance", &format!("chaos-{i}")])
            .args(["--listen", &format!("127.0.0.1:{}", free_port()?)])
            .spawn()
            .with_context(|| format!("start consumer {i}"))?;
        self.consumers[i] = Some(child);
        Ok(())
    }

    pub fn start_all(&mut self) -> Result<()> {
        self.start_origin()?;
        for i in 0..CONSUMERS {
            self.start_consumer(i)?;
        }
        Ok(())
    }

    /// kill -9 of the consumers in turn, each started again after a second.
    pub fn kill_next_consumer(&mut self) -> Result<()> {
        let i = self.next_victim % CONSUMERS;
        self.next_victim += 1;
        if let Some(mut c) = self.consumers[i].take() {
            c.kill()?;
            c.wait()?;
        }
        std::thread::sleep(Duration::from_secs(1));
        self.start_consumer(i)
    }

    /// kill -9 of the origin and every consumer.
    pub fn kill_all(&mut self) {
        for child in self
            .origin
            .take()
            .into_iter()
            .chain(self.consumers.iter_mut().filter_map(Option::take))
        {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops them all (at the end).
    pub fn stop(&mut self) {
        self.kill_all();
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        self.kill_all();
    }
}
