//! A scratch PostgreSQL cluster for benchmarks and fault-injection tests:
//! `initdb` into a folder of its own, its own port and settings, stopped when
//! dropped. A shared server is never reconfigured or restarted. Run as root,
//! the server tools run as the `postgres` user (PostgreSQL refuses root).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::db::CliError;

/// A running scratch cluster.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    as_postgres: bool,
}

/// Settings the benchmark runs with. Durable defaults (fsync, synchronous
/// commit, full page writes) stay on: the numbers are for a real server.
const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("max_connections", "200"),
    ("shared_buffers", "512MB"),
    // The published crate's schema creates 256 partitions per table.
    ("max_locks_per_transaction", "256"),
    ("shared_preload_libraries", "'pg_stat_statements'"),
    ("pg_stat_statements.track_utility", "on"),
    ("max_wal_size", "4GB"),
    ("checkpoint_timeout", "15min"),
    ("unix_socket_directories", "''"),
];

fn run(cmd: &mut Command, what: &str) -> Result<(), CliError> {
    let out = cmd.output().map_err(|e| CliError::new(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(CliError::new(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// The newest PostgreSQL server binaries on this machine, or `FF_BENCH_PG_BIN`.
fn find_bin() -> Result<PathBuf, CliError> {
    if let Ok(dir) = std::env::var("FF_BENCH_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| CliError::new("no /usr/lib/postgresql: set FF_BENCH_PG_BIN to the server's bin folder"))?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .ok_or_else(|| CliError::new("no PostgreSQL server binaries found under /usr/lib/postgresql"))
}

fn is_root() -> bool {
    // Only root may run `runuser`; PostgreSQL refuses to run as root.
    std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false)
}

impl Cluster {
    /// `initdb` a fresh cluster under `dir` and start it on `port`.
    pub fn start(dir: &Path, port: u16) -> Result<Self, CliError> {
        let bin = find_bin()?;
        let data = dir.join("data");
        let as_postgres = is_root();
        if dir.exists() {
            // A previous run that did not stop cleanly.
            let stale = Cluster {
                bin: bin.clone(),
                data: data.clone(),
                port,
                as_postgres,
            };
            stale.stop();
            std::fs::remove_dir_all(dir).map_err(|e| CliError::new(format!("remove {}: {e}", dir.display())))?;
        }
        std::fs::create_dir_all(dir).map_err(|e| CliError::new(format!("create {}: {e}", dir.display())))?;
        if as_postgres {
            run(
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir),
                "chown the scratch cluster folder",
            )?;
        }
        let cluster = Cluster {
            bin,
            data,
            port,
            as_postgres,
        };
        run(
            &mut cluster.command(
                "initdb",
                &["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D"],
            ),
            "initdb",
        )?;
        let conf: String = SETTINGS.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        let conf = format!("{conf}port = {port}\n");
        std::fs::write(cluster.data.join("postgresql.auto.conf"), conf)
            .map_err(|e| CliError::new(format!("write postgresql.auto.conf: {e}")))?;
        let mut start = cluster.command("pg_ctl", &["start", "-w", "-t", "60", "-l"]);
        start.arg(cluster.log()).arg("-D").arg(&cluster.data);
        run(&mut start, "pg_ctl start")?;
        Ok(cluster)
    }

    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.args(args);
        if tool == "initdb" {
            cmd.arg(&self.data);
        }
        cmd
    }

    fn log(&self) -> PathBuf {
        self.data.with_file_name("server.log")
    }

    /// A URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Restart the server (fast shutdown: connections are cut, in-flight
    /// transactions roll back), waiting until it accepts connections again.
    pub fn restart(&self) -> Result<(), CliError> {
        // With a log file, as at start: without one the new server keeps
        // pg_ctl's output pipe open and waiting for it never ends.
        let mut restart = self.command("pg_ctl", &["restart", "-m", "fast", "-w", "-t", "60", "-l"]);
        restart.arg(self.log()).arg("-D").arg(&self.data);
        run(&mut restart, "pg_ctl restart")
    }

    /// Stop the cluster (fast shutdown).
    pub fn stop(&self) {
        let mut stop = self.command("pg_ctl", &["stop", "-m", "fast", "-w", "-D"]);
        stop.arg(&self.data);
        let _ = stop.output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
