//! Metrics of files.

/// Uploads announced.
pub const UPLOADS_CREATED: &str = "chorus_files_uploads_created_total";
/// Uploads completed, by whether their content was already held (`dedup`).
pub const UPLOADS_COMPLETED: &str = "chorus_files_uploads_completed_total";
/// Uploads refused after they began, by reason (`type`, `hash`, `image`).
pub const UPLOADS_REFUSED: &str = "chorus_files_uploads_refused_total";
/// Uploads discarded unfinished past their expiry.
pub const UPLOADS_EXPIRED: &str = "chorus_files_uploads_expired_total";
/// Uploads in progress on this node.
pub const UPLOADS_OPEN: &str = "chorus_files_uploads_open";
/// Bytes of uploads received.
pub const RECEIVED_BYTES: &str = "chorus_files_received_bytes_total";
/// Bytes of files completed.
pub const STORED_BYTES: &str = "chorus_files_completed_bytes_total";
/// Downloads begun, by where the bytes come from (`local`, `peer`, `store`).
pub const DOWNLOADS: &str = "chorus_files_downloads_total";

/// Blobs deleted because no file needs them, and their bytes.
pub const COLLECTED: &str = "chorus_files_collected_blobs_total";
pub const COLLECTED_BYTES: &str = "chorus_files_collected_bytes_total";

/// Copies of blobs this node fetched because it should hold them.
pub const REPAIRED: &str = "chorus_files_repaired_blobs_total";

pub fn repaired(blobs: u64) {
    metrics::counter!(REPAIRED).increment(blobs);
}

pub fn collected(blobs: u64, bytes: u64) {
    metrics::counter!(COLLECTED).increment(blobs);
    metrics::counter!(COLLECTED_BYTES).increment(bytes);
}

pub fn describe() {
    metrics::describe_counter!(
        REPAIRED,
        "Copies of blobs this node fetched from another because the ring gives it them and it lacked them"
    );
    metrics::describe_counter!(
        COLLECTED,
        "Blobs this node deleted because no file needs them (retention ended, in no group's space)"
    );
    metrics::describe_counter!(
        COLLECTED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of the blobs this node deleted because no file needs them"
    );
    metrics::describe_counter!(UPLOADS_CREATED, "Uploads announced");
    metrics::describe_counter!(
        UPLOADS_COMPLETED,
        "Uploads completed, by whether their content was held already"
    );
    metrics::describe_counter!(
        UPLOADS_REFUSED,
        "Uploads refused after they began, by reason"
    );
    metrics::describe_counter!(
        UPLOADS_EXPIRED,
        "Uploads discarded unfinished past their expiry"
    );
    metrics::describe_gauge!(UPLOADS_OPEN, "Uploads in progress on this node");
    metrics::describe_counter!(
        RECEIVED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of uploads received"
    );
    metrics::describe_counter!(
        STORED_BYTES,
        metrics::Unit::Bytes,
        "Bytes of files completed"
    );
    metrics::describe_counter!(DOWNLOADS, "Downloads begun, by where the bytes come from");
}

pub fn created() {
    metrics::counter!(UPLOADS_CREATED).increment(1);
}

pub fn completed(bytes: u64, dedup: bool) {
    let dedup = if dedup { "true" } else { "false" };
    metrics::counter!(UPLOADS_COMPLETED, "dedup" => dedup).increment(1);
    metrics::counter!(STORED_BYTES).increment(bytes);
}

pub fn refused(reason: &'static str) {
    metrics::counter!(UPLOADS_REFUSED, "reason" => reason).increment(1);
}

pub fn expired() {
    metrics::counter!(UPLOADS_EXPIRED).increment(1);
}

pub fn open_uploads(count: usize) {
    metrics::gauge!(UPLOADS_OPEN).set(count as f64);
}

pub fn received(bytes: usize) {
    metrics::counter!(RECEIVED_BYTES).increment(bytes as u64);
}

/// Counts a download whose bytes come `from` this node's disk (`local`),
/// another node (`peer`) or the shared object store (`store`).
pub fn download(from: &'static str) {
    metrics::counter!(DOWNLOADS, "from" => from).increment(1);
}
