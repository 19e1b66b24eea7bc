//! Upgrading: a data folder written by the earlier Chorus, whose Raft log
//! is JSON, is refused at start with an error that says what it is and
//! what to do.

mod common;

use chorus::Node;

#[tokio::test]
async fn a_data_folder_of_the_json_version_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    // What the JSON version left: Raft state, and no storage format record.
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db =
            rocksdb::DB::open_cf(&opts, dir.path().join("db"), ["raft_state", "raft_log"]).unwrap();
        let state = db.cf_handle("raft_state").unwrap();
        db.put_cf(
            &state,
            [0, 0, 0, 0, b'v'],
            br#"{"leader_id":{"term":1,"node_id":1},"committed":true}"#,
        )
        .unwrap();
    }
    let config = common::test_config(dir.path()).validate().unwrap();
    let err = Node::start(config)
        .await
        .err()
        .expect("the node refuses the folder");
    let message = err.to_string();
    assert!(message.contains("raft log is JSON"), "{message}");
    assert!(
        message.contains("start with an empty data folder"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}
