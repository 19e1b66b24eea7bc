//! Peer credentials in a real cluster: the cluster runs on credentials made
//! by `chorus cluster init-ca` / `issue-cert` (the sandbox does that), and a
//! node of it refuses to start once they are taken away.

use chorus_cluster_tests::{Cluster, DEADLINE, chorus_binary};

#[tokio::test]
async fn a_node_of_a_cluster_refuses_to_start_without_its_credentials() -> anyhow::Result<()> {
    let mut cluster = Cluster::builder().nodes(2).partitions(2).start().await?;
    cluster.kill(1).await?;
    let path = cluster.nodes[1].config_path().to_path_buf();
    let mut config: toml::Table = std::fs::read_to_string(&path)?.parse()?;
    let section = config
        .get_mut("cluster")
        .and_then(|c| c.as_table_mut())
        .expect("a cluster section");
    section.remove("tls");
    // Without seeds too, so that the refusal comes from the data folder.
    section.insert("seeds".into(), toml::Value::Array(Vec::new()));
    std::fs::write(&path, toml::to_string(&config)?)?;
    let output = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(chorus_binary())
            .args(["serve", "--config"])
            .arg(&path)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    assert!(
        !output.status.success(),
        "the node started without credentials"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cluster of 2 nodes") && stderr.contains("cluster.tls"),
        "unexpected refusal: {stderr}"
    );
    // With seeds and no credentials the config itself is refused.
    section_with_seeds(&path)?;
    let output = std::process::Command::new(chorus_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .output()?;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("cluster.seeds is set but cluster.tls is not")
    );
    Ok(())
}

fn section_with_seeds(path: &std::path::Path) -> anyhow::Result<()> {
    let mut config: toml::Table = std::fs::read_to_string(path)?.parse()?;
    let section = config
        .get_mut("cluster")
        .and_then(|c| c.as_table_mut())
        .expect("a cluster section");
    section.insert(
        "seeds".into(),
        toml::Value::Array(vec!["127.0.0.1:1".into()]),
    );
    std::fs::write(path, toml::to_string(&config)?)?;
    Ok(())
}
