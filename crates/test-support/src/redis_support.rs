//! Redis for tests: a key namespace per test on the shared server, private servers that a
//! test may stop and restart, and private three-node Redis Clusters.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shared Redis URL.
pub fn redis_url() -> String {
    std::env::var("AWX_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A random key prefix for one test; its keys are deleted when it is dropped (on every node,
/// for a namespace on a cluster).
#[derive(Debug)]
pub struct RedisNamespace {
    prefix: String,
    /// The server, or every primary of a cluster.
    urls: Vec<String>,
}

impl RedisNamespace {
    /// A new namespace on the shared Redis.
    pub fn new() -> Self {
        Self::on(&redis_url())
    }

    /// A new namespace on the Redis at `url`.
    pub fn on(url: &str) -> Self {
        Self::on_nodes(&[url.to_owned()])
    }

    /// A new namespace on a Redis Cluster whose primaries are at `urls` (each node's keys are
    /// found and deleted on that node, since `KEYS` sees only one node).
    pub fn on_cluster(cluster: &RedisCluster) -> Self {
        Self::on_nodes(&cluster.urls())
    }

    fn on_nodes(urls: &[String]) -> Self {
        Self { prefix: format!("test-{}", uuid::Uuid::new_v4().simple()), urls: urls.to_vec() }
    }

    /// The prefix, to configure the code under test with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl Default for RedisNamespace {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        for url in &self.urls {
            delete_keys(url, &format!("{}:*", self.prefix));
        }
    }
}

/// Deletes the keys matching `pattern` on the one server (or cluster node) at `url`, one `DEL`
/// per key (in a cluster, keys of one node may be in different slots).
fn delete_keys(url: &str, pattern: &str) {
    let Ok(client) = redis::Client::open(url) else { return };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
        return;
    };
    let keys: Vec<String> = match redis::cmd("KEYS").arg(pattern).query(&mut conn) {
        Ok(keys) => keys,
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("DEL").arg(key).ignore();
        }
        let _: Result<(), _> = pipe.query(&mut conn);
    }
}

/// A private `redis-server` on a loopback port, killed when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers.
    pub fn spawn() -> Self {
        let mut server = Self { port: crate::free_port(), child: None };
        server.start();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed: `make setup` installs it");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Kills the server at once (like a crash); its data is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ping(&self) -> bool {
        ping(&self.url())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Nodes of a [`RedisCluster`].
const CLUSTER_NODES: usize = 3;

/// Attempts at starting a cluster on fresh ports (a port taken meanwhile fails an attempt).
const CLUSTER_START_ATTEMPTS: usize = 5;

/// A private Redis Cluster of three primaries (no replicas) on loopback ports, each
/// `redis-server` with its cluster config file in a temporary directory; the processes are
/// killed and the directory removed when dropped.
///
/// Redis cannot listen on port 0 and its cluster bus listens on the port plus 10000, so the
/// ports are chosen by binding both briefly; the whole start is retried if a port was taken in
/// between.
#[derive(Debug)]
pub struct RedisCluster {
    ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Child>,
}

impl RedisCluster {
    /// Starts three nodes, creates the cluster (`redis-cli --cluster create`) and waits until
    /// every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        assert!(
            Command::new("redis-cli").arg("--version").output().is_ok_and(|o| o.status.success()),
            "redis-cli must be installed (it comes with redis-server: `make setup` installs it)"
        );
        let mut failures = Vec::new();
        for _ in 0..CLUSTER_START_ATTEMPTS {
            let dir = std::env::temp_dir()
                .join(format!("awx-redis-cluster-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).expect("create the cluster's temporary directory");
            let mut cluster = Self { ports: cluster_ports(), dir, children: Vec::new() };
            match cluster.spawn_nodes().and_then(|()| cluster.create()) {
                Ok(()) => {
                    cluster.wait_until_ok();
                    return cluster;
                }
                // Dropping it kills what started and removes the directory.
                Err(failure) => failures.push(failure),
            }
        }
        panic!("the Redis Cluster did not start: {failures:#?}");
    }

    /// The nodes' URLs (every node is a primary).
    pub fn urls(&self) -> Vec<String> {
        self.ports.iter().map(|port| format!("redis://127.0.0.1:{port}")).collect()
    }

    /// The first node's URL, a seed node to configure a cluster client with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// Kills every node at once (like a crash); the data is gone, the cluster configuration
    /// (node ids, slots) stays in the directory.
    pub fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the stopped nodes again on their ports, with their cluster configuration, and
    /// waits until the cluster is whole again (`cluster_state:ok` everywhere).
    pub fn restart(&mut self) {
        assert!(self.children.is_empty(), "the cluster is running");
        if let Err(failure) = self.spawn_nodes() {
            panic!("restarting the Redis Cluster failed: {failure}");
        }
        self.wait_until_ok();
    }

    fn spawn_nodes(&mut self) -> Result<(), String> {
        for &port in &self.ports {
            let config_file = self.dir.join(format!("nodes-{port}.conf"));
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"])
                .arg("--cluster-config-file")
                .arg(&config_file)
                .arg("--dir")
                .arg(&self.dir)
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server must be installed: `make setup` installs it");
            self.children.push(child);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (index, &port) in self.ports.iter().enumerate() {
            loop {
                if ping(&format!("redis://127.0.0.1:{port}")) {
                    break;
                }
                if let Ok(Some(status)) = self.children[index].try_wait() {
                    return Err(format!("redis-server on port {port} exited ({status})"));
                }
                if Instant::now() >= deadline {
                    return Err(format!("redis-server on port {port} did not answer"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    fn create(&self) -> Result<(), String> {
        let nodes: Vec<String> =
            self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|error| format!("running redis-cli: {error}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for url in self.urls() {
            loop {
                let info = cluster_info(&url);
                if info.as_deref().is_some_and(|info| info.contains("cluster_state:ok")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the Redis Cluster node {url} did not reach cluster_state:ok: {info:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three ports, each free together with the port 10000 above it (the cluster bus), held until
/// all are chosen so they differ.
fn cluster_ports() -> Vec<u16> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < CLUSTER_NODES {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let Some(bus_port) = port.checked_add(10_000) else { continue };
        let Ok(bus_listener) = TcpListener::bind(("127.0.0.1", bus_port)) else { continue };
        held.push(listener);
        held.push(bus_listener);
        ports.push(port);
    }
    ports
}

fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else { return false };
    let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut conn).is_ok_and(|pong| pong == "PONG")
}

fn cluster_info(url: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_connection_with_timeout(Duration::from_millis(500)).ok()?;
    redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut conn).ok()
}
