//! Metrics of search.

use std::time::Duration;

use crate::protocol::{ProtocolError, pb};

/// Searches answered, by outcome (`ok`, or the error code's label).
pub const QUERIES: &str = "chorus_search_queries_total";
/// Time from a search's request to its merged answer, seconds.
pub const QUERY_SECONDS: &str = "chorus_search_query_seconds";
/// Message changes this node's index took in from the change feed.
pub const CHANGES_INDEXED: &str = "chorus_search_changes_indexed_total";
/// Messages this node's index holds, as of its last commit.
pub const DOCUMENTS: &str = "chorus_search_documents";
/// Time from a change's apply to its commit in the index, seconds
/// (measured per commit, from the oldest change it holds).
pub const INDEX_LAG_SECONDS: &str = "chorus_search_index_lag_seconds";
/// Index commits that failed (the indexer retries).
pub const INDEX_FAILURES: &str = "chorus_search_index_failures_total";

pub fn describe() {
    metrics::describe_counter!(QUERIES, "Searches answered, by outcome");
    metrics::describe_histogram!(
        QUERY_SECONDS,
        metrics::Unit::Seconds,
        "Time from a search's request to its merged answer"
    );
    metrics::describe_counter!(
        CHANGES_INDEXED,
        "Message changes this node's index took in from the change feed"
    );
    metrics::describe_gauge!(DOCUMENTS, "Messages this node's search index holds");
    metrics::describe_histogram!(
        INDEX_LAG_SECONDS,
        metrics::Unit::Seconds,
        "Time from a change's apply to its commit in the search index"
    );
    metrics::describe_counter!(
        INDEX_FAILURES,
        "Search index updates that failed and will be retried"
    );
}

pub fn record_query(result: &Result<pb::SearchResult, ProtocolError>, took: Duration) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(err) => err.code.label(),
    };
    metrics::counter!(QUERIES, "outcome" => outcome).increment(1);
    metrics::histogram!(QUERY_SECONDS).record(took.as_secs_f64());
}
