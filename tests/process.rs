//! Child processes that are killed when dropped, scratch directories, the
//! broker and consumer processes of a scenario, and waiting for a condition.

use rdkafka::ClientConfig;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed (SIGKILL, by its PID) when dropped, so no
/// process outlives a failing test.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Child,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Wraps a spawned child.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child,
            status: None,
        }
    }

    /// The child's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends SIGKILL and reaps the child.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_status() {
            return s;
        }
        let _ = self.child.kill();
        let s = self.child.wait().expect("reap a killed child");
        self.status = Some(s);
        s
    }

    /// Sends SIGTERM (through `kill -TERM PID`).
    pub fn terminate(&mut self) {
        if self.try_status().is_some() {
            return;
        }
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not send SIGTERM to {} (pid {pid})", self.name);
    }

    /// Sends SIGTERM and waits up to `timeout` for the child to exit.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.terminate();
        self.wait_timeout(timeout)
    }

    /// The exit status if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("query a child's status");
        }
        self.status
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A scratch directory for one test run, removed when the test passes.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates a fresh directory named after the test and this process.
    pub fn new(test: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("dispatcher-e2e-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the work directory");
        WorkDir { path, keep: true }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the directory when dropped (call when the test passed).
    pub fn remove_on_drop(&mut self) {
        self.keep = false;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("e2e: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Starts `test_broker` with `topics` of `partitions` partitions and returns
/// it with its bootstrap servers.
pub fn start_broker(
    exe: &str,
    dir: &Path,
    partitions: i32,
    topics: &[&str],
) -> (ChildGuard, String) {
    let stderr = std::fs::File::create(dir.join("broker.err")).expect("create broker.err");
    let child = Command::new(exe)
        .arg(partitions.to_string())
        .args(topics)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn test_broker");
    let mut guard = ChildGuard::new("test_broker", child);
    let stdout = guard.child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("test_broker printed its bootstrap servers within 30 s");
    let servers = line.trim().to_owned();
    assert!(
        !servers.is_empty(),
        "test_broker exited without printing its bootstrap servers"
    );
    (guard, servers)
}

/// Creates `topics` with `partitions` partitions each, and the dead-letter
/// topic `<topic>.DLT` of each, on the broker at `brokers` (replication
/// factor 1), and waits until its metadata lists them all.
pub fn create_topics(brokers: &str, partitions: i32, topics: &[&str]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("create an admin client");
    let names: Vec<String> = topics
        .iter()
        .flat_map(|t| [(*t).to_owned(), format!("{t}.DLT")])
        .collect();
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = futures::executor::block_on(admin.create_topics(
        &new,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("create the topics");
    for r in results {
        match r {
            Ok(_) => {}
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                panic!("topic {name} exists already: test topics must be new")
            }
            Err((name, e)) => panic!("cannot create topic {name}: {e}"),
        }
    }
    let listed = wait_for(
        "the new topics in the metadata",
        Duration::from_secs(30),
        || {
            admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(5))
                .is_ok_and(|md| {
                    names.iter().all(|n| {
                        md.topics()
                            .iter()
                            .any(|t| t.name() == n && t.partitions().len() == partitions as usize)
                    })
                })
        },
    );
    assert!(
        listed,
        "the broker does not list the topics {names:?} within 30 s"
    );
}

/// The broker `KAFKA_BROKERS` names, if any: scenarios run there instead
/// of on the embedded cluster.
pub fn external_brokers() -> Option<String> {
    std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
}

/// What every multi-process scenario starts with: a broker with one topic
/// (and its dead-letter topic), the handling log, and how to start
/// consumers on it.
pub struct Scenario {
    /// The `test_broker` process when the scenario runs on the embedded
    /// cluster; killed when dropped. `None` on the broker `KAFKA_BROKERS`
    /// names.
    pub broker: Option<ChildGuard>,
    /// The bootstrap servers.
    pub brokers: String,
    /// The handling log all consumers append to.
    pub log: PathBuf,
    /// How to start consumers.
    pub consumers: ConsumerConfig,
}

impl Scenario {
    /// Creates `topic` of `partitions` partitions on the broker
    /// `KAFKA_BROKERS` names or, without it, starts a `test_broker` process
    /// with it; files in `dir`. `broker_exe` and `consumer_exe` are the
    /// paths of the `test_broker` and `test_consumer` binaries.
    pub fn start(
        dir: &Path,
        broker_exe: &str,
        consumer_exe: &str,
        partitions: i32,
        topic: &str,
        group: &str,
    ) -> Self {
        let (broker, brokers) = match external_brokers() {
            Some(brokers) => {
                create_topics(&brokers, partitions, &[topic]);
                (None, brokers)
            }
            None => {
                let (guard, brokers) = start_broker(broker_exe, dir, partitions, &[topic]);
                (Some(guard), brokers)
            }
        };
        let log = dir.join("handled.log");
        let consumers = ConsumerConfig {
            exe: consumer_exe.to_owned(),
            brokers: brokers.clone(),
            group: group.to_owned(),
            topic: topic.to_owned(),
            log: log.clone(),
            dir: dir.to_owned(),
        };
        Scenario {
            broker,
            brokers,
            log,
            consumers,
        }
    }
}

/// How to start `test_consumer` processes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Path of the `test_consumer` binary.
    pub exe: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// Consumer group.
    pub group: String,
    /// Topic to consume.
    pub topic: String,
    /// The shared handling log.
    pub log: PathBuf,
    /// Where each process's stderr goes (`consumer-N.err`).
    pub dir: PathBuf,
}

impl ConsumerConfig {
    /// Starts consumer number `n`.
    pub fn spawn(&self, n: usize) -> ChildGuard {
        self.spawn_with(n, &[])
    }

    /// Starts consumer number `n` with extra environment variables.
    pub fn spawn_with(&self, n: usize, env: &[(&str, &str)]) -> ChildGuard {
        let stderr = std::fs::File::create(self.dir.join(format!("consumer-{n}.err")))
            .expect("create the consumer's stderr file");
        let child = Command::new(&self.exe)
            .env("KAFKA_BROKERS", &self.brokers)
            .env("KAFKA_GROUP_ID", &self.group)
            .env("E2E_TOPIC", &self.topic)
            .env("E2E_LOG", &self.log)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn test_consumer");
        ChildGuard::new(format!("consumer-{n}"), child)
    }
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("e2e: timed out after {timeout:?} waiting for {what}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
