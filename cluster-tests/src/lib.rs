//! A sandbox of real `chorus` processes on loopback for cluster tests, built
//! from the example configs in `configs/`: each
//! node gets its own data folder and free ports, the first bootstraps and the
//! others join through it. Nodes can be SIGKILLed and restarted on the same
//! data and ports.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chorus::client::{ClientOptions, Connection, Transport};
use chorus::pb::DeviceClass;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

mod proxy;
pub mod traffic;

pub use proxy::{FaultProxy, LinkFault};

/// How long any wait in a cluster test may take.
pub const DEADLINE: Duration = Duration::from_secs(60);
pub const ADMIN_PASSWORD: &str = "cluster-admin-password";

/// Returns the password the sandbox gives a test user.
pub fn password(account: &str) -> String {
    format!("password-of-{account}")
}

/// Waits until `check` holds, polling it, up to [`DEADLINE`].
/// The lowercase hex SHA-256 of bytes, as uploads are completed with.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Logs `account` (a test user, see [`password`]) in over REST at
/// `http` (a node's HTTP address) as a web device; returns the token.
pub async fn rest_token(client: &reqwest::Client, http: &str, account: &str) -> String {
    let body = serde_json::json!({
        "account": account,
        "password": password(account),
        "device_class": "web",
    });
    let reply: Value = client
        .post(format!("http://{http}/api/v1/login"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["token"]
        .as_str()
        .unwrap_or_else(|| panic!("a login of {account} through {http}: {reply}"))
        .to_string()
}

pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {DEADLINE:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Returns a port that was free a moment ago (bound to 0 by the OS).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Finds a binary of the workspace next to the test executable (same profile).
pub fn workspace_binary(name: &str, build: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder");
    let binary = dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: build it with `{build}`",
        binary.display()
    );
    binary
}

/// Returns the `chorus` binary the cluster runs.
pub fn chorus_binary() -> PathBuf {
    workspace_binary("chorus", "cargo build --bin chorus")
}

/// Runs `chorus cluster ARGS…`, the CLI an operator makes credentials with.
fn chorus_cluster(args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let output = std::process::Command::new(chorus_binary())
        .arg("cluster")
        .args(args)
        .output()
        .context("running chorus cluster")?;
    if !output.status.success() {
        bail!(
            "chorus cluster {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

pub struct NodeProcess {
    pub id: u64,
    pub tcp: String,
    pub http: String,
    pub peer: String,
    /// The peer address the node publishes: `peer`, or its fault proxy's.
    pub advertised_peer: String,
    config: PathBuf,
    child: Option<Child>,
}

impl NodeProcess {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Returns the process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Returns the path of the node's config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Returns the node's data folder (next to its config).
    pub fn data_dir(&self) -> PathBuf {
        self.config.with_file_name("data")
    }
}

/// Builds a cluster of real processes.
pub struct ClusterBuilder {
    nodes: usize,
    partitions: u32,
    rebalance_delay_secs: u64,
    fault_proxy: bool,
    storage: Vec<(String, i64)>,
    files_s3: Option<toml::Table>,
    files: Vec<(String, i64)>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder {
            nodes: 3,
            partitions: 8,
            rebalance_delay_secs: 1,
            fault_proxy: false,
            storage: Vec::new(),
            files_s3: None,
            files: Vec::new(),
        }
    }
}

impl ClusterBuilder {
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Sets `[storage] key = value` in every node's config (as the burn
    /// test shortens the sweeper's and the scrubber's periods).
    pub fn storage(mut self, key: &str, value: i64) -> Self {
        self.storage.push((key.to_string(), value));
        self
    }

    /// Sets `[files] key = value` in every node's config (as the files
    /// test shortens the repair's period).
    pub fn files(mut self, key: &str, value: i64) -> Self {
        self.files.push((key.to_string(), value));
        self
    }

    /// Gives every node the same `[files.s3]` section: blobs in one
    /// object store they share.
    pub fn files_s3(mut self, section: toml::Table) -> Self {
        self.files_s3 = Some(section);
        self
    }

    /// Puts a [`FaultProxy`] between the nodes: each advertises a proxy
    /// address for its peer links and gossip (clients still connect directly).
    pub fn fault_proxy(mut self, on: bool) -> Self {
        self.fault_proxy = on;
        self
    }

    /// Starts the nodes and waits until every partition is replicated on
    /// `min(3, nodes)` of them, as placed, with a leader.
    pub async fn start(self) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        chorus_cluster(&[
            "init-ca".as_ref(),
            "--out".as_ref(),
            dir.path().join("ca").as_os_str(),
        ])?;
        let mut cluster = Cluster {
            dir,
            nodes: Vec::new(),
            partitions: self.partitions,
            rebalance_delay_secs: self.rebalance_delay_secs,
            storage: self.storage,
            files_s3: self.files_s3,
            files: self.files,
            http: reqwest::Client::new(),
            token: None,
            proxy: self.fault_proxy.then(FaultProxy::default),
        };
        for _ in 0..self.nodes {
            cluster.add_node().await?;
        }
        let replicas = self.nodes.min(3);
        cluster
            .wait_for("every partition to be fully replicated", |status| {
                let me = status["node_id"].as_u64();
                let ids = sorted_ids;
                status["partitions"].as_array().is_some_and(|parts| {
                    parts.len() == self.partitions as usize
                        && parts.iter().all(|p| {
                            // A node knows only the groups it replicates.
                            let placement = ids(&p["placement"]);
                            placement.len() == replicas
                                && (!me.is_some_and(|me| placement.contains(&me))
                                    || (ids(&p["voters"]) == placement && !p["leader"].is_null()))
                        })
                })
            })
            .await?;
        cluster.wait_for_view().await?;
        Ok(cluster)
    }
}

/// Returns the node ids of a JSON array (voters, placement), sorted.
pub fn sorted_ids(value: &Value) -> Vec<u64> {
    let mut ids: Vec<u64> = value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

pub struct Cluster {
    dir: tempfile::TempDir,
    pub nodes: Vec<NodeProcess>,
    partitions: u32,
    rebalance_delay_secs: u64,
    storage: Vec<(String, i64)>,
    files_s3: Option<toml::Table>,
    files: Vec<(String, i64)>,
    http: reqwest::Client,
    token: Option<String>,
    proxy: Option<FaultProxy>,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Returns the fault proxy between the nodes, when the cluster has one.
    pub fn proxy(&self) -> Option<&FaultProxy> {
        self.proxy.as_ref()
    }

    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// Returns the index of the node with id `id`.
    pub fn index_of(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node")
    }

    /// The folder of the cluster CA and secret (`chorus cluster init-ca`).
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Adds a node: the first bootstraps, the others join through the first
    /// that runs.
    /// A start that fails (a port taken between choosing and binding it) is
    /// retried on fresh ports and a fresh data folder.
    pub async fn add_node(&mut self) -> anyhow::Result<usize> {
        let before = self.nodes.len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_add_node().await {
                Ok(index) => return Ok(index),
                Err(err) if attempt < 3 => {
                    eprintln!("node start failed, retrying on other ports: {err:#}");
                    self.nodes.truncate(before);
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Makes an empty folder for node `id` with its certificate, and picks
    /// its free ports (tcp, http, peer).
    fn fresh_node_dir(&self, id: u64) -> anyhow::Result<(PathBuf, [String; 3])> {
        let dir = self.dir.path().join(format!("node{id}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let name = format!("node{id}");
        chorus_cluster(&[
            "issue-cert".as_ref(),
            "--ca".as_ref(),
            self.ca_dir().as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
            "--out".as_ref(),
            dir.as_os_str(),
        ])?;
        let port = || format!("127.0.0.1:{}", free_port());
        Ok((dir, [port(), port(), port()]))
    }

    async fn try_add_node(&mut self) -> anyhow::Result<usize> {
        let id = self.nodes.len() as u64 + 1;
        let (dir, [tcp, http, peer]) = self.fresh_node_dir(id)?;
        // The first running node: after a restore, the first ones may be gone.
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .map(|first| first.advertised_peer.clone())
            .into_iter()
            .collect();
        let index = self.nodes.len();
        let advertised_peer = match &mut self.proxy {
            Some(proxy) => proxy.expose(index, peer.parse()?).await?.to_string(),
            None => peer.clone(),
        };
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            self.node_config(id, &dir, [&tcp, &http, &peer, &advertised_peer], &seeds)?,
        )?;
        self.nodes.push(NodeProcess {
            id,
            tcp,
            http,
            peer,
            advertised_peer,
            config,
            child: None,
        });
        self.restart(index).await?;
        Ok(index)
    }

    /// Takes an online backup of node `index` with `chorus backup`, named
    /// `name`; returns the backup's folder (on this host: the sandbox's).
    pub async fn backup(&mut self, index: usize, name: &str) -> anyhow::Result<PathBuf> {
        let token = self.token().await?;
        let output = Command::new(chorus_binary())
            .args(["backup", "--json", "--http"])
            .arg(&self.nodes[index].http)
            .args(["--name", name])
            .env("CHORUS_TOKEN", token)
            .output()
            .await
            .context("running chorus backup")?;
        if !output.status.success() {
            bail!(
                "chorus backup failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let reply: Value = serde_json::from_slice(&output.stdout)?;
        Ok(PathBuf::from(reply["path"].as_str().context("path")?))
    }

    /// Restores `backup` with `chorus restore` as a new node (the next id,
    /// fresh ports and data folder, no seeds: the first node of a new
    /// cluster) and starts it; returns its index.
    pub async fn add_restored_node(&mut self, backup: &Path) -> anyhow::Result<usize> {
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let (dir, [tcp, http, peer]) = self.fresh_node_dir(id)?;
        let config = dir.join("node.toml");
        std::fs::write(
            &config,
            self.node_config(id, &dir, [&tcp, &http, &peer, &peer], &[])?,
        )?;
        let output = Command::new(chorus_binary())
            .arg("restore")
            .arg("--backup")
            .arg(backup)
            .arg("--config")
            .arg(&config)
            .output()
            .await
            .context("running chorus restore")?;
        if !output.status.success() {
            bail!(
                "chorus restore failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        eprint!("{}", String::from_utf8_lossy(&output.stdout));
        self.nodes.push(NodeProcess {
            id,
            tcp,
            http,
            advertised_peer: peer.clone(),
            peer,
            config,
            child: None,
        });
        let index = self.nodes.len() - 1;
        self.restart(index).await?;
        Ok(index)
    }

    /// Writes a node's config: the example `configs/node{id}.toml` (node 3's
    /// for later nodes) with this sandbox's ports, data folder and seeds, a
    /// short rebalance delay, and quiet logs.
    fn node_config(
        &self,
        id: u64,
        dir: &Path,
        [tcp, http, peer, advertised_peer]: [&String; 4],
        seeds: &[String],
    ) -> anyhow::Result<String> {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let example = examples.join(format!("node{}.toml", id.min(3)));
        let text =
            std::fs::read_to_string(&example).with_context(|| example.display().to_string())?;
        let mut config: toml::Table = text.parse()?;
        let table = |config: &mut toml::Table, name: &str| -> toml::Table {
            config
                .get(name)
                .and_then(|v| v.as_table())
                .cloned()
                .unwrap_or_default()
        };
        let mut listen = table(&mut config, "listen");
        listen.insert("tcp".into(), tcp.clone().into());
        listen.insert("http".into(), http.clone().into());
        listen.insert("peer".into(), peer.clone().into());
        if advertised_peer != peer {
            let mut advertise = table(&mut config, "advertise");
            advertise.insert("peer".into(), advertised_peer.clone().into());
            config.insert("advertise".into(), advertise.into());
        }
        let mut cluster = table(&mut config, "cluster");
        cluster.insert(
            "seeds".into(),
            toml::Value::Array(seeds.iter().map(|s| s.clone().into()).collect()),
        );
        cluster.insert(
            "rebalance_delay_secs".into(),
            (self.rebalance_delay_secs as i64).into(),
        );
        cluster.insert("placement_interval_ms".into(), 300.into());
        let ca = self.ca_dir();
        let mut tls = toml::Table::new();
        for (key, path) in [
            ("ca_path", ca.join(chorus::pki::CA_CERT_FILE)),
            ("secret_path", ca.join(chorus::pki::SECRET_FILE)),
            ("cert_path", dir.join(format!("node{id}.pem"))),
            ("key_path", dir.join(format!("node{id}-key.pem"))),
        ] {
            tls.insert(key.into(), path.display().to_string().into());
        }
        cluster.insert("tls".into(), tls.into());
        let mut storage = table(&mut config, "storage");
        storage.insert("partitions".into(), i64::from(self.partitions).into());
        for (key, value) in &self.storage {
            storage.insert(key.clone(), (*value).into());
        }
        // The scale test opens thousands of connections per node, all from
        // 127.0.0.1: far past the per-address default.
        let mut limits = table(&mut config, "limits");
        limits.insert("max_connections_per_ip".into(), 20_000.into());
        let mut log = toml::Table::new();
        log.insert(
            "level".into(),
            std::env::var("CHORUS_TEST_LOG")
                .unwrap_or_else(|_| "warn".into())
                .into(),
        );
        config.insert("node_id".into(), (id as i64).into());
        config.insert(
            "data_dir".into(),
            dir.join("data").display().to_string().into(),
        );
        config.insert("listen".into(), listen.into());
        config.insert("cluster".into(), cluster.into());
        config.insert("storage".into(), storage.into());
        config.insert("limits".into(), limits.into());
        config.insert("log".into(), log.into());
        let mut files = table(&mut config, "files");
        if let Some(s3) = &self.files_s3 {
            files.insert("s3".into(), s3.clone().into());
        }
        for (key, value) in &self.files {
            files.insert(key.clone(), (*value).into());
        }
        config.insert("files".into(), files.into());
        Ok(toml::to_string(&config)?)
    }

    /// Starts (again) the process of node `index` on its data and ports.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[index];
        let mut child = Command::new(chorus_binary())
            .args(["serve", "--config"])
            .arg(&node.config)
            .env("CHORUS_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning chorus")?;
        if let Some(proxy) = &self.proxy {
            proxy.set_pid(index, child.id());
        }
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("\"event\":\"ready\"") {
                    return Ok(());
                }
            }
            bail!("node {} exited before it was ready", node.id)
        })
        .await
        .with_context(|| format!("node {} not ready within {DEADLINE:?}", node.id))??;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        node.child = Some(child);
        Ok(())
    }

    /// Stops node `index` as an operator would, with SIGTERM, and waits
    /// until it exited; fails if it did not exit cleanly in time.
    pub async fn stop(&mut self, index: usize) -> anyhow::Result<()> {
        let Some(mut child) = self.nodes[index].child.take() else {
            return Ok(());
        };
        let pid = child.id().context("a running node has a pid")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let status = tokio::time::timeout(DEADLINE, child.wait())
            .await
            .with_context(|| {
                format!(
                    "node {} did not exit within {DEADLINE:?}",
                    self.nodes[index].id
                )
            })??;
        if !status.success() {
            bail!("node {} exited with {status}", self.nodes[index].id);
        }
        Ok(())
    }

    /// Kills node `index` with SIGKILL and reaps it.
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    fn running(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().filter(|n| n.is_running())
    }

    /// Returns the HTTP address of the first running node.
    fn any_http(&self) -> anyhow::Result<String> {
        Ok(self
            .running()
            .next()
            .context("no running node")?
            .http
            .clone())
    }

    async fn token(&mut self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let http = self.any_http()?;
        let token = self.login_admin(&http).await?;
        self.token = Some(token.clone());
        Ok(token)
    }

    /// Logs the admin in as a mobile device: chorus-bench, run against a
    /// sandbox, logs the admin in as web, which would end this session.
    async fn login_admin(&self, http: &str) -> anyhow::Result<String> {
        let reply: Value = self
            .http
            .post(format!("http://{http}/api/v1/login"))
            .json(
                &json!({"account": "admin", "password": ADMIN_PASSWORD, "device_class": "mobile"}),
            )
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(reply["token"].as_str().context("token")?.to_string())
    }

    /// Returns `GET /api/v1/admin/cluster` from node `index`.
    pub async fn status(&mut self, index: usize) -> anyhow::Result<Value> {
        let token = self.token().await?;
        let http = &self.nodes[index].http;
        Ok(self
            .http
            .get(format!("http://{http}/api/v1/admin/cluster"))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Waits until the status seen by every running node satisfies `check`.
    pub async fn wait_for(
        &mut self,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].is_running())
                .collect();
            let mut failing = None;
            for index in running {
                match self.status(index).await {
                    Ok(status) if check(&status) => {}
                    other => failing = Some((index, other.map_err(|e| e.to_string()))),
                }
            }
            let Some((index, status)) = failing else {
                return Ok(());
            };
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for {what}; node index {index} sees {status:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `partition` is led by its preferred voter, where leaders
    /// move after the start (decision 0009) and stay while every node is
    /// up; returns the index of that node.
    pub async fn settled_leader(&mut self, partition: u16) -> anyhow::Result<usize> {
        let preferred = move |status: &Value| {
            let voters = sorted_ids(&status["partitions"][partition as usize]["voters"]);
            (!voters.is_empty()).then(|| voters[partition as usize % voters.len()])
        };
        self.wait_for("the partition led by its preferred voter", |status| {
            preferred(status).is_some() && leader_of(status, partition) == preferred(status)
        })
        .await?;
        let status = self.status(0).await?;
        let leader = leader_of(&status, partition).context("no leader")?;
        Ok(self.index_of(leader))
    }

    /// Waits until every running node's gossip view holds exactly the
    /// running nodes, so that all of them place user homes alike.
    pub async fn wait_for_view(&mut self) -> anyhow::Result<()> {
        let mut running: Vec<u64> = self
            .nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect();
        running.sort_unstable();
        self.wait_for("every node's view to hold the running nodes", |status| {
            let mut view: Vec<u64> = status["view"]
                .as_array()
                .map(|nodes| nodes.iter().filter_map(|n| n["node_id"].as_u64()).collect())
                .unwrap_or_default();
            view.sort_unstable();
            view == running
        })
        .await
    }

    /// Creates users through REST on any running node; returns their ids.
    pub async fn create_users(&mut self, accounts: &[&str]) -> anyhow::Result<Vec<u64>> {
        let token = self.token().await?;
        let http = self.any_http()?;
        let mut ids = Vec::new();
        for account in accounts {
            let response = self
                .http
                .post(format!("http://{http}/api/v1/users"))
                .bearer_auth(&token)
                .json(&json!({"account": account, "password": password(account)}))
                .send()
                .await?;
            if response.status() != 201 {
                bail!(
                    "creating {account}: {} {}",
                    response.status(),
                    response.text().await?
                );
            }
            let user: Value = response.json().await?;
            ids.push(user["user_id"].as_u64().context("user_id")?);
        }
        Ok(ids)
    }

    /// Connects to node `index` over TCP and logs in.
    pub async fn login(
        &self,
        index: usize,
        account: &str,
        class: DeviceClass,
    ) -> anyhow::Result<Connection> {
        let conn = Connection::connect(&ClientOptions::new(
            self.nodes[index].tcp.clone(),
            Transport::Tcp,
        ))
        .await?;
        conn.login(account, &password(account), class).await?;
        Ok(conn)
    }

    /// Calls the admin REST API of node `index`; returns the status and the
    /// JSON body (null when there is none).
    pub async fn api(
        &mut self,
        index: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let token = self.token().await?;
        let http = &self.nodes[index].http;
        let mut request = self
            .http
            .request(method, format!("http://{http}{path}"))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Returns the REST client and the admin token (for tests that drive REST directly).
    pub async fn rest(&mut self) -> anyhow::Result<(reqwest::Client, String)> {
        Ok((self.http.clone(), self.token().await?))
    }
}

/// Returns the leader of `partition` in a status document.
pub fn leader_of(status: &Value, partition: u16) -> Option<u64> {
    status["partitions"][partition as usize]["leader"].as_u64()
}

/// Returns how many partitions each node id leads, as `status` sees it.
pub fn leaders_per_node(status: &Value) -> std::collections::BTreeMap<u64, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for partition in status["partitions"].as_array().into_iter().flatten() {
        if let Some(leader) = partition["leader"].as_u64() {
            *counts.entry(leader).or_insert(0) += 1;
        }
    }
    counts
}

/// True when every partition has a leader and each of `nodes` leads
/// within ±2 of the mean.
pub fn leaders_spread(status: &Value, nodes: &[u64], partitions: usize) -> bool {
    let counts = leaders_per_node(status);
    let mean = partitions as f64 / nodes.len() as f64;
    counts.values().sum::<usize>() == partitions
        && nodes.iter().all(|n| {
            let c = *counts.get(n).unwrap_or(&0) as f64;
            (c - mean).abs() <= 2.0
        })
}
