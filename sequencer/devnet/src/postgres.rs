//! A private Postgres cluster from the machine's `initdb`/`postgres` binaries.
//!
//! Postgres refuses to run as root, so when we are root the cluster runs as
//! the `postgres` user; its data directory must then be reachable by that
//! user through every parent folder (see [`postgres_reachable_dir`]).

use crate::{
    DevnetError, Result, io,
    process::{die_with_parent, pid_alive, stop_child},
};
use std::{
    ffi::CString,
    fs,
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How to run a cluster.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The data directory (created and initialised when missing).
    pub data_dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// `fsync`: on for anything durable, off for throwaway test clusters.
    pub fsync: bool,
    /// Delete the data directory when the handle drops.
    pub remove_on_drop: bool,
}

impl PostgresOptions {
    /// A throwaway cluster under the system temp folder, fsync off.
    pub fn throwaway(port: u16) -> Self {
        let data_dir = std::env::temp_dir()
            .join(format!("rollup-pg-{}-{port}", std::process::id()))
            .join("data");
        Self { data_dir, port, fsync: false, remove_on_drop: true }
    }

    /// A durable cluster in `data_dir`, kept across runs.
    pub fn persistent(data_dir: PathBuf, port: u16) -> Self {
        Self { data_dir, port, fsync: true, remove_on_drop: false }
    }
}

/// A running cluster; dropping it stops the server (fast shutdown).
#[derive(Debug)]
pub struct Postgres {
    child: Child,
    options: PostgresOptions,
}

/// The folder with the machine's Postgres server binaries.
pub fn pg_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|bin| bin.join("postgres").is_file() && bin.join("initdb").is_file());
    found.sort_by_key(|bin| version_of(bin));
    found.pop().ok_or_else(|| DevnetError::NotInstalled("postgres (initdb, postgres)".into()))
}

fn version_of(bin: &Path) -> u32 {
    bin.parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The `postgres` user's uid and gid when we run as root (Postgres refuses root).
fn postgres_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy out at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(DevnetError::NotInstalled("the `postgres` system user".into()));
    }
    // SAFETY: non-null pointer from getpwnam.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// `preferred` if the `postgres` user can reach it, else a folder under
/// `/var/tmp` named after it (when running as root, `/root` is closed to it).
pub fn postgres_reachable_dir(preferred: &Path) -> Result<PathBuf> {
    if postgres_user()?.is_none() || traversable_by_others(preferred) {
        return Ok(preferred.to_owned());
    }
    let tag: u64 = preferred
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Ok(PathBuf::from(format!("/var/tmp/rollup-{tag:016x}")).join("postgres"))
}

fn traversable_by_others(path: &Path) -> bool {
    let mut current = Some(path);
    while let Some(dir) = current {
        if let Ok(meta) = fs::metadata(dir)
            && meta.permissions().mode() & 0o001 == 0
        {
            return false;
        }
        current = dir.parent();
    }
    true
}

impl Postgres {
    /// Initialises the data directory if needed and starts the server.
    pub fn start(options: PostgresOptions) -> Result<Self> {
        let bin = pg_bin_dir()?;
        let user = postgres_user()?;
        let data_dir = &options.data_dir;
        if !data_dir.join("PG_VERSION").is_file() {
            init_cluster(&bin, data_dir, user, options.fsync)?;
        }
        wait_for_previous_server(data_dir)?;

        let log_path = log_path(data_dir);
        let log =
            fs::File::create(&log_path).map_err(io(format!("create {}", log_path.display())))?;
        let mut command = Command::new(bin.join("postgres"));
        command
            .arg("-D")
            .arg(data_dir)
            .args(["-p", &options.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="])
            .args(["-c", &format!("fsync={}", if options.fsync { "on" } else { "off" })])
            .args(["-c", "max_connections=200"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("clone log handle"))?)
            .stderr(log);
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        die_with_parent(&mut command, libc::SIGINT);
        let child = command.spawn().map_err(io("spawn postgres"))?;
        let mut server = Self { child, options };
        server.wait_ready(&bin, &log_path)?;
        Ok(server)
    }

    /// Connection URL for a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.options.port)
    }

    /// The TCP port.
    pub const fn port(&self) -> u16 {
        self.options.port
    }

    fn wait_ready(&mut self, bin: &Path, log: &Path) -> Result<()> {
        let seconds = 60;
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let tail = fs::read_to_string(log).unwrap_or_default();
                return Err(DevnetError::CommandFailed {
                    command: "postgres".into(),
                    detail: format!("exited with {status}: {}", last_lines(&tail, 10)),
                });
            }
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.options.port.to_string(), "-U", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(DevnetError::NotReady { what: "postgres".into(), seconds, log: log.to_owned() })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (clean, does not wait for clients).
        stop_child(&mut self.child, libc::SIGINT, Duration::from_secs(30));
        if self.options.remove_on_drop
            && let Some(parent) = self.options.data_dir.parent()
        {
            let _ = fs::remove_dir_all(parent);
        }
    }
}

fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.parent().unwrap_or(data_dir).join("postgres.log")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn init_cluster(
    bin: &Path,
    data_dir: &Path,
    user: Option<(u32, u32)>,
    durable: bool,
) -> Result<()> {
    fs::create_dir_all(data_dir).map_err(io(format!("create {}", data_dir.display())))?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io("chmod the data directory"))?;
    if let Some((uid, gid)) = user {
        // The folder holding the data directory also holds the log.
        for dir in [data_dir, data_dir.parent().unwrap_or(data_dir)] {
            std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                .map_err(io(format!("chown {}", dir.display())))?;
        }
    }
    let mut command = Command::new(bin.join("initdb"));
    command.arg("-D").arg(data_dir).args(["-U", "postgres", "-A", "trust", "-E", "UTF8"]);
    if !durable {
        command.arg("--no-sync");
    }
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
    let output = command.output().map_err(io("run initdb"))?;
    if !output.status.success() {
        return Err(DevnetError::CommandFailed {
            command: "initdb".into(),
            detail: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(())
}

/// A server from an earlier run (whose parent died) may still be shutting down.
fn wait_for_previous_server(data_dir: &Path) -> Result<()> {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = fs::read_to_string(&pid_file) else { return Ok(()) };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else {
        return Ok(());
    };
    let is_postgres = fs::read(format!("/proc/{pid}/cmdline"))
        .map(|cmd| String::from_utf8_lossy(&cmd).contains("postgres"))
        .unwrap_or(false);
    if !is_postgres {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut signalled = false;
    while pid_alive(pid) && Instant::now() < deadline {
        if !signalled {
            // SAFETY: kill(2); the pid is the stale postmaster of this data directory.
            unsafe {
                libc::kill(pid, libc::SIGINT);
            }
            signalled = true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if pid_alive(pid) {
        return Err(DevnetError::CommandFailed {
            command: "postgres".into(),
            detail: format!("an earlier server (pid {pid}) still runs on {}", data_dir.display()),
        });
    }
    Ok(())
}
