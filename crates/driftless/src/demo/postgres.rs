//! The demo's Postgres: `DATABASE_URL` when something answers there, otherwise a throwaway cluster
//! made with `initdb` and `pg_ctl` in a temporary directory. Either way the demo works in a
//! database of its own, created here and dropped at the end.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::DemoError;

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long a silent server gets before it counts as not answering.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the demo's database lives.
pub struct Server {
    /// A URL to a database that may CREATE DATABASE (the maintenance database).
    pub admin_url: String,
    cluster: Option<Cluster>,
}

impl Server {
    /// Whether the server is the demo's own throwaway cluster.
    pub fn is_throwaway(&self) -> bool {
        self.cluster.is_some()
    }

    /// Stops the throwaway cluster (if any) and removes its directory.
    pub fn shutdown(mut self) {
        if let Some(c) = self.cluster.take() {
            c.stop();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.cluster.take() {
            c.stop();
        }
    }
}

/// Where Debian (`/usr/lib/postgresql/15/bin`) and RHEL (`/usr/pgsql-15/bin`) install the server
/// tools, off PATH. `DRIFTLESS_PG_BINDIRS` (a PATH-style list, `*` allowed in one component)
/// replaces it.
pub const PACKAGED_BIN_DIRS: &str = "/usr/lib/postgresql/*/bin:/usr/pgsql-*/bin";

/// `initdb` and `pg_ctl` from one directory: the first on `path` (a PATH-style list) that has
/// both, else the newest packaged one of `packaged` (a PATH-style list of patterns).
pub fn find_tools(
    path: Option<&std::ffi::OsStr>,
    packaged: &std::ffi::OsStr,
) -> Option<(PathBuf, PathBuf)> {
    let on_path = path.into_iter().flat_map(std::env::split_paths);
    let packaged = std::env::split_paths(packaged).flat_map(|p| expand(&p));
    on_path.chain(packaged).find_map(|dir| {
        let (initdb, pg_ctl) = (dir.join("initdb"), dir.join("pg_ctl"));
        (initdb.is_file() && pg_ctl.is_file()).then_some((initdb, pg_ctl))
    })
}

/// The directories a pattern with one `*` component names, highest version first, so that
/// `/usr/lib/postgresql/16/bin` is preferred to `.../9.6/bin`.
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let parts: Vec<_> = pattern.components().collect();
    let Some(star) = parts
        .iter()
        .position(|c| c.as_os_str().to_string_lossy().contains('*'))
    else {
        return vec![pattern.to_owned()];
    };
    let parent: PathBuf = parts[..star].iter().collect();
    let rest: PathBuf = parts[star + 1..].iter().collect();
    let glob = parts[star].as_os_str().to_string_lossy().into_owned();
    let (prefix, suffix) = glob.split_once('*').unwrap_or((&glob, ""));
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let middle = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
            let version = middle
                .split(|c: char| !c.is_ascii_digit())
                .filter_map(|n| n.parse().ok())
                .collect();
            Some((version, e.path().join(&rest)))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The search of [`find_tools`] as the demo runs it: PATH, then the packaged directories.
pub fn find_installed_tools() -> Option<(PathBuf, PathBuf)> {
    let packaged =
        std::env::var_os("DRIFTLESS_PG_BINDIRS").unwrap_or_else(|| PACKAGED_BIN_DIRS.into());
    find_tools(std::env::var_os("PATH").as_deref(), &packaged)
}

/// Connects to `url`, or starts a throwaway cluster when nothing answers there and the tools
/// exist. `announce` receives the one line that says a throwaway cluster is in use.
pub async fn connect(url: &str, announce: impl FnOnce(&str)) -> Result<Server, DemoError> {
    match probe(url).await {
        Probe::Answers => Ok(Server {
            admin_url: url.to_owned(),
            cluster: None,
        }),
        Probe::Refused(e) => {
            let Some((initdb, pg_ctl)) = find_installed_tools() else {
                return Err(DemoError::NoPostgres(format!(
                    "nothing answers at DATABASE_URL ({}: {e}) and initdb/pg_ctl are not on PATH or in {}; start Postgres or set DATABASE_URL",
                    redact(url),
                    std::env::var("DRIFTLESS_PG_BINDIRS").unwrap_or_else(|_| PACKAGED_BIN_DIRS.into())
                )));
            };
            let cluster = tokio::task::spawn_blocking(move || Cluster::start(&initdb, &pg_ctl))
                .await
                .map_err(|e| DemoError::Postgres(e.to_string()))??;
            announce(&format!(
                "nothing answers at {}: using a throwaway Postgres cluster in {} on port {}",
                redact(url),
                cluster.dir.display(),
                cluster.port
            ));
            let admin_url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
            Ok(Server {
                admin_url,
                cluster: Some(cluster),
            })
        }
        Probe::Fails(e) => Err(DemoError::Postgres(format!(
            "DATABASE_URL {}: {e}",
            redact(url)
        ))),
    }
}

enum Probe {
    Answers,
    /// Nothing listens (or nothing answers in time): a throwaway cluster may stand in.
    Refused(String),
    /// A server answered but refused us (bad password, no such database, ...): the user meant
    /// this server, so the demo says what is wrong instead of working around it.
    Fails(String),
}

async fn probe(url: &str) -> Probe {
    let config: tokio_postgres::Config = match url.parse() {
        Ok(c) => c,
        Err(e) => return Probe::Fails(format!("not a valid postgres URL: {e}")),
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, config.connect(tokio_postgres::NoTls)).await {
        Err(_) => Probe::Refused("no answer within 5 s".into()),
        Ok(Ok((_client, conn))) => {
            drop(conn);
            Probe::Answers
        }
        Ok(Err(e)) if e.as_db_error().is_none() && is_io(&e) => Probe::Refused(e.to_string()),
        Ok(Err(e)) => Probe::Fails(e.to_string()),
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A Postgres cluster of the demo's own, in a temporary directory, listening on 127.0.0.1 only.
struct Cluster {
    dir: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
    /// initdb refuses to run as root: the cluster then runs as this user (via runuser).
    run_as: Option<String>,
}

impl Cluster {
    fn start(initdb: &Path, pg_ctl: &Path) -> Result<Cluster, DemoError> {
        let dir = std::env::temp_dir().join(format!(
            "driftless-demo-pg-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| cluster_err(&dir, "create", e))?;
        let run_as = if owner_is_root(&dir) {
            let (uid, gid) = system_user("postgres").ok_or_else(|| {
                DemoError::Postgres(
                    "initdb cannot run as root and there is no 'postgres' user to run it as; set DATABASE_URL".into(),
                )
            })?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| cluster_err(&dir, "chown", e))?;
            Some("postgres".to_owned())
        } else {
            None
        };
        let port = free_port()?;
        let cluster = Cluster {
            dir,
            pg_ctl: pg_ctl.to_owned(),
            port,
            run_as,
        };
        let data = cluster.dir.join("data");
        let data_s = data.to_string_lossy().into_owned();
        cluster.run(
            initdb,
            &[
                "-D",
                &data_s,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            cluster.dir.display()
        );
        let log = cluster
            .dir
            .join("postgres.log")
            .to_string_lossy()
            .into_owned();
        let started = cluster.run(
            &cluster.pg_ctl.clone(),
            &[
                "-D", &data_s, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
            ],
        );
        if let Err(e) = started {
            cluster.stop_quietly();
            return Err(e);
        }
        Ok(cluster)
    }

    fn run(&self, program: &Path, args: &[&str]) -> Result<(), DemoError> {
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| DemoError::Postgres(format!("{}: {e}", program.display())))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            return Err(DemoError::Postgres(format!(
                "{} failed: {}",
                program.display(),
                last.unwrap_or("no output")
            )));
        }
        Ok(())
    }

    fn stop_quietly(&self) {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let _ = self.run(&self.pg_ctl, &["-D", &data, "-m", "fast", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn stop(self) {
        self.stop_quietly();
    }
}

fn cluster_err(dir: &Path, what: &str, e: std::io::Error) -> DemoError {
    DemoError::Postgres(format!("{what} {}: {e}", dir.display()))
}

/// Files belong to the effective user: a directory we just made tells who we run as, without
/// `unsafe` calls to libc.
fn owner_is_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).is_ok_and(|m| m.uid() == 0)
}

/// uid and gid of a user from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then_some(())?;
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

fn free_port() -> Result<u16, DemoError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| DemoError::Postgres(format!("no free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| DemoError::Postgres(e.to_string()))?
        .port())
}

/// The demo's own database on `server`, dropped by [`Database::drop_now`].
pub struct Database {
    pub name: String,
    pub url: String,
    admin_url: String,
}

impl Database {
    pub async fn create(server: &Server) -> Result<Database, DemoError> {
        let name = format!("driftless_demo_{}", uuid::Uuid::new_v4().simple());
        let admin = connect_client(&server.admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| DemoError::Postgres(format!("create database {name}: {e}")))?;
        Ok(Database {
            url: database_url(&server.admin_url, &name),
            name,
            admin_url: server.admin_url.clone(),
        })
    }

    pub async fn drop_now(self) -> Result<(), DemoError> {
        let admin = connect_client(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await
            .map_err(|e| DemoError::Postgres(format!("drop database {}: {e}", self.name)))
    }
}

/// `url` with its database name replaced (query parameters kept).
pub fn database_url(url: &str, dbname: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let mut out = format!("{scheme}://{authority}/{dbname}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

pub async fn connect_client(url: &str) -> Result<tokio_postgres::Client, DemoError> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| DemoError::Postgres(format!("{}: {e}", redact(url))))?;
    tokio::spawn(conn);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://u:p@h:5432/postgres?sslmode=disable", "d1"),
            "postgres://u:p@h:5432/d1?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h", "d1"), "postgres://h/d1");
    }

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn tools_are_found_only_when_both_exist() {
        let dir = std::env::temp_dir().join(format!("demo-tools-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let none = std::ffi::OsStr::new("");
        std::fs::write(dir.join("initdb"), "").unwrap();
        assert_eq!(find_tools(Some(dir.as_os_str()), none), None);
        std::fs::write(dir.join("pg_ctl"), "").unwrap();
        assert_eq!(
            find_tools(Some(dir.as_os_str()), none),
            Some((dir.join("initdb"), dir.join("pg_ctl")))
        );
        assert_eq!(find_tools(None, none), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Debian and RHEL keep initdb off PATH: the packaged directories are searched, newest
    /// version first, and only a directory holding both tools counts.
    #[test]
    fn packaged_directories_are_searched_newest_first() {
        let root = std::env::temp_dir().join(format!("demo-pkg-{}", uuid::Uuid::new_v4()));
        for (dir, tools) in [
            ("lib/postgresql/9.6/bin", &["initdb", "pg_ctl"][..]),
            ("lib/postgresql/15/bin", &["initdb", "pg_ctl"][..]),
            ("lib/postgresql/16/bin", &["initdb"][..]),
            ("pgsql-17/bin", &["initdb", "pg_ctl"][..]),
        ] {
            let d = root.join(dir);
            std::fs::create_dir_all(&d).unwrap();
            for t in tools {
                std::fs::write(d.join(t), "").unwrap();
            }
        }
        let debian = root.join("lib/postgresql/*/bin");
        let rhel = root.join("pgsql-*/bin");
        let both = std::env::join_paths([&debian, &rhel]).unwrap();
        let want = |d: &str| Some((root.join(d).join("initdb"), root.join(d).join("pg_ctl")));
        assert_eq!(
            find_tools(None, debian.as_os_str()),
            want("lib/postgresql/15/bin")
        );
        assert_eq!(find_tools(None, &both), want("lib/postgresql/15/bin"));
        assert_eq!(find_tools(None, rhel.as_os_str()), want("pgsql-17/bin"));
        let on_path = root.join("pgsql-17/bin");
        assert_eq!(
            find_tools(Some(on_path.as_os_str()), &both),
            want("pgsql-17/bin"),
            "PATH comes first"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    /// Nothing listens on a port we just released: the demo must start its own cluster there,
    /// and that cluster must accept a CREATE DATABASE.
    #[tokio::test]
    async fn an_unanswered_url_falls_back_to_a_throwaway_cluster() {
        if find_installed_tools().is_none() {
            panic!(
                "initdb and pg_ctl must be installed (on PATH or where Debian or RHEL put them)"
            );
        }
        let port = free_port().unwrap();
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let mut said = String::new();
        let server = connect(&url, |line| said = line.to_owned()).await.unwrap();
        assert!(server.is_throwaway(), "a cluster of its own");
        assert!(said.contains("throwaway Postgres cluster"), "{said}");
        let db = Database::create(&server).await.unwrap();
        let client = connect_client(&db.url).await.unwrap();
        let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
        drop(client);
        db.drop_now().await.unwrap();
        let dir = server.cluster.as_ref().unwrap().dir.clone();
        server.shutdown();
        assert!(!dir.exists(), "the cluster's directory is removed");
    }
}
