//! `runnel dev`: a local cluster of three combined nodes (coordinator and
//! broker) in this process, data under one folder, stopped by Ctrl-C.

use crate::runtime::settings::load_server_properties;
use anyhow::Result;
use std::path::Path;

pub struct DevArgs {
    pub dir: String,
    pub nodes: u32,
    pub port: u16,
    pub overrides: Vec<String>,
}

/// The `server.properties` text of dev node `id`.
pub fn node_properties(a: &DevArgs, dir: &Path, id: u32) -> String {
    let controller_port = |i: u32| a.port + 100 + i as u16;
    let voters: Vec<String> = (0..a.nodes)
        .map(|i| format!("{i}@127.0.0.1:{}", controller_port(i)))
        .collect();
    let rf = a.nodes.min(3);
    format!(
        "process.roles=broker,controller\nnode.id={id}\n\
         listeners=PLAINTEXT://localhost:{},CONTROLLER://127.0.0.1:{}\n\
         controller.quorum.voters={}\nlog.dirs={}\n\
         num.partitions=3\ndefault.replication.factor={rf}\noffsets.topic.replication.factor={rf}\n\
         min.insync.replicas={}\nreplica.lag.time.max.ms=10000\nbroker.session.timeout.ms=6000\nbroker.heartbeat.interval.ms=500\n\
         cluster.secret.file={}\n",
        a.port + id as u16,
        controller_port(id),
        voters.join(","),
        dir.join(format!("node-{id}")).display(),
        if rf >= 3 { 2 } else { 1 },
        dir.join(SECRET_FILE).display(),
    )
}

/// The dev cluster's secret for internal links, made on first start.
const SECRET_FILE: &str = "cluster.secret";

/// Writes a random secret (readable by its owner only) unless one exists.
fn ensure_secret(dir: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(SECRET_FILE);
    if path.exists() {
        return Ok(());
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for the secret: {e}"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    writeln!(f, "{hex}")?;
    f.sync_all()?;
    Ok(())
}

pub async fn run(a: DevArgs) -> Result<()> {
    let dir = Path::new(&a.dir);
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    ensure_secret(&dir)?;
    let mut tasks = Vec::new();
    for id in 0..a.nodes {
        let text = node_properties(&a, &dir, id);
        std::fs::write(dir.join(format!("server-{id}.properties")), &text)?;
        let settings =
            load_server_properties(&text, &a.overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (_handle, task) = crate::runtime::start(settings).await?;
        tasks.push(task);
    }
    let bootstrap: Vec<String> = (0..a.nodes)
        .map(|i| format!("localhost:{}", a.port + i as u16))
        .collect();
    println!(
        "Runnel dev cluster: {} nodes, data in {}",
        a.nodes,
        dir.display()
    );
    println!("bootstrap servers: {}", bootstrap.join(","));
    println!(
        "try: kcat -b {} -L     (Ctrl-C stops the cluster)",
        bootstrap[0]
    );
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    for t in tasks {
        t.abort();
    }
    Ok(())
}
