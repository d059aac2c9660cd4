//! tansu, a Kafka-compatible broker in one binary, as a child process of a
//! test: found (or installed by `scripts/install-tansu`) once, started on a
//! free loopback port with in-memory storage, killed when dropped.

use crate::ChildGuard;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_owned()
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tansu binary: `$TANSU_BIN` when set, else
/// `target/tools/bin/tansu` under the workspace root, installed there by
/// `scripts/install-tansu` when missing (once per process; concurrent test
/// processes serialize on a lock file next to it). Panics with the
/// installer's output when it cannot be had.
pub fn tansu_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_or_install).clone()
}

fn find_or_install() -> PathBuf {
    if let Some(bin) = std::env::var_os("TANSU_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            is_executable(&bin),
            "TANSU_BIN={} is not an executable file",
            bin.display()
        );
        return bin;
    }
    let root = workspace_root();
    let dir = root.join("target/tools/bin");
    let bin = dir.join("tansu");
    if is_executable(&bin) {
        return bin;
    }
    std::fs::create_dir_all(&dir).expect("create target/tools/bin");
    let lock = File::create(dir.join(".tansu-install.lock")).expect("create the install lock");
    lock.lock().expect("take the install lock");
    if is_executable(&bin) {
        return bin;
    }
    eprintln!("e2e: installing tansu with scripts/install-tansu");
    let out = Command::new("bash")
        .arg(root.join("scripts/install-tansu"))
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/install-tansu");
    assert!(
        out.status.success(),
        "scripts/install-tansu failed ({}); set TANSU_BIN to a tansu binary, or fix: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let path = PathBuf::from(printed.lines().last().unwrap_or("").trim());
    let path = if path.is_absolute() {
        path
    } else {
        root.join(path)
    };
    assert!(
        is_executable(&path),
        "scripts/install-tansu printed {}, which is not an executable file",
        path.display()
    );
    path
}

/// A free TCP port on 127.0.0.1 (bound and released; the kernel does not
/// hand it out again right away).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A tansu broker process with in-memory storage, listening on 127.0.0.1.
#[derive(Debug)]
pub struct Tansu {
    /// The process; killed when dropped.
    pub process: ChildGuard,
    /// Where it listens (plain Kafka protocol).
    pub addr: SocketAddr,
    /// What it tells clients to connect to, `host:port`.
    pub advertised: String,
}

impl Tansu {
    /// Starts tansu on a free 127.0.0.1 port, advertising `advertised`
    /// (`host:port`; its own address when `None`), its output in `dir`
    /// (`tansu.out`, `tansu.err`), and waits until the port accepts
    /// connections.
    pub fn start(dir: &Path, advertised: Option<&str>) -> Tansu {
        let bin = tansu_binary();
        let mut last_err = String::new();
        // A port found free can be taken before tansu binds it: try again.
        for attempt in 0..3 {
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let adv = advertised.map_or_else(|| addr.to_string(), str::to_owned);
            let out = File::create(dir.join("tansu.out")).expect("create tansu.out");
            let err = File::create(dir.join("tansu.err")).expect("create tansu.err");
            let child = Command::new(&bin)
                .arg("broker")
                .arg("--listener-url")
                .arg(format!("tcp://{addr}"))
                .arg("--advertised-listener-url")
                .arg(format!("tcp://{adv}"))
                .arg("--storage-engine")
                .arg("memory://tansu/")
                .env_remove("LISTENER_URL")
                .env_remove("ADVERTISED_LISTENER_URL")
                .env_remove("STORAGE_ENGINE")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
            let mut process = ChildGuard::new("tansu", child);
            match wait_listening(&mut process, addr, Duration::from_secs(20)) {
                Ok(()) => {
                    return Tansu {
                        process,
                        addr,
                        advertised: adv,
                    }
                }
                Err(e) => {
                    let stderr = std::fs::read_to_string(dir.join("tansu.err")).unwrap_or_default();
                    last_err = format!("attempt {attempt}: {e}; tansu.err:\n{stderr}");
                    process.kill();
                }
            }
        }
        panic!("tansu did not start: {last_err}");
    }
}

/// Waits until `addr` accepts a TCP connection while `process` runs.
fn wait_listening(
    process: &mut ChildGuard,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = process.try_status() {
            return Err(format!("tansu exited: {status}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{addr} accepted no connection within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
