//! This node's search index: one tantivy index over the messages of every
//! partition replica the node holds (docs/decisions/0021). A document names
//! its message (conversation and seq) and carries what a query filters on;
//! the text is read back from the partition when a hit is shown, so that a
//! hit never shows content the partition no longer holds.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, TermQuery, TermSetQuery};
use tantivy::schema::{FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, Value};
use tantivy::{DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use super::analyzer;
use crate::protocol::{ConversationId, pb};

/// Memory the writer buffers before it writes a segment.
const WRITER_BUDGET: usize = 48 * 1024 * 1024;

/// Why the index failed; a query answers INTERNAL, the indexer retries.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("search index watermarks are corrupt: {0}")]
    Payload(String),
}

#[derive(Clone, Copy)]
struct Fields {
    /// `conversation#seq`: names the message, to replace or delete it.
    key: Field,
    partition: Field,
    conversation: Field,
    /// Both members of a 1:1 conversation (a group's come from the metadata).
    direct: Field,
    sender: Field,
    time: Field,
    /// Orders messages sent in the same millisecond, alike on every node.
    tie: Field,
    kind: Field,
    words: Field,
    grams: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        key: builder.add_text_field("key", STRING | STORED),
        partition: builder.add_u64_field("partition", INDEXED),
        conversation: builder.add_text_field("conversation", STRING),
        direct: builder.add_u64_field("direct", INDEXED),
        sender: builder.add_u64_field("sender", INDEXED),
        time: builder.add_i64_field("time", INDEXED | FAST),
        tie: builder.add_u64_field("tie", FAST),
        kind: builder.add_text_field("kind", STRING),
        words: builder.add_text_field("words", analyzer::text_options(analyzer::WORDS, false)),
        grams: builder.add_text_field("grams", analyzer::text_options(analyzer::GRAMS, false)),
    };
    (builder.build(), fields)
}

/// What a message contributes to the index: its text (a file's name) and
/// its kinds. Burn-after-reading messages, recalled and burned ones,
/// notices and emoji contribute nothing.
pub fn indexed_text(message: &pb::Message) -> Option<(&str, Vec<pb::SearchKind>)> {
    if message.burn_after_secs > 0 {
        return None;
    }
    match message.content.as_ref()?.kind.as_ref()? {
        pb::content::Kind::Text(text) if !text.text.is_empty() => {
            let mut kinds = vec![pb::SearchKind::Text];
            if !super::links(&text.text).is_empty() {
                kinds.push(pb::SearchKind::Link);
            }
            Some((&text.text, kinds))
        }
        pb::content::Kind::File(file) => Some((
            &file.name,
            vec![if file.image {
                pb::SearchKind::Image
            } else {
                pb::SearchKind::File
            }],
        )),
        _ => None,
    }
}

/// The position of a message in the newest-first order of results:
/// `(time, tie)`, greater first.
pub type Order = (i64, u64);

/// The tie-break of a message, the same on every node: the conversation's
/// hash in the high half, the seq's low bits in the low half.
pub fn tie(conv: &ConversationId, seq: u64) -> u64 {
    // FNV-1a: fixed, so that every node orders alike.
    let hash = conv.key().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash << 32) | (seq & 0xffff_ffff)
}

fn doc_key(conv: &ConversationId, seq: u64) -> String {
    format!("{conv}#{seq}")
}

fn parse_doc_key(key: &str) -> Option<(ConversationId, u64)> {
    let (conv, seq) = key.rsplit_once('#')?;
    Some((conv.parse().ok()?, seq.parse().ok()?))
}

/// What a query asks of one node's index.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only messages of these partitions (those the asking node sent here).
    pub partitions: Vec<u16>,
    /// The user's scope: 1:1 conversations with this user…
    pub user: u64,
    /// …and these group conversations; or, when `conversation` is set,
    /// that conversation alone (its membership checked by the asker).
    pub groups: Vec<String>,
    pub conversation: Option<String>,
    pub sender: Option<u64>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub kind: Option<pb::SearchKind>,
    /// Only messages after this position in the order (a page's cursor).
    pub before: Option<Order>,
    pub limit: usize,
}

/// A message that matched, with its position in the order.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub conversation: ConversationId,
    pub seq: u64,
    pub order: Order,
}

pub struct SearchIndex {
    index: Index,
    fields: Fields,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
}

fn kind_name(kind: pb::SearchKind) -> &'static str {
    kind.as_str_name()
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it if absent.
    pub fn open(dir: &Path) -> Result<SearchIndex, IndexError> {
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Folder {
            path: dir.display().to_string(),
            source,
        })?;
        let (schema, fields) = schema();
        let directory =
            tantivy::directory::MmapDirectory::open(dir).map_err(|e| IndexError::Folder {
                path: dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let index = Index::open_or_create(directory, schema)?;
        analyzer::register(index.tokenizers());
        // Made on a thread of the indexer's priority: tantivy's indexing
        // and merge threads, spawned here, inherit it.
        let writing = index.clone();
        let writer = super::indexer::at_low_priority(move || {
            writing.writer_with_num_threads(1, WRITER_BUDGET)
        })
        .map_err(|e| IndexError::Folder {
            path: dir.display().to_string(),
            source: e,
        })??;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            index,
            fields,
            writer: Mutex::new(writer),
            reader,
        })
    }

    /// Returns the log index each partition was indexed through, as the
    /// last commit recorded it; `None` for an index that never committed
    /// (new, or lost: everything must be indexed again).
    pub fn watermarks(&self) -> Result<Option<BTreeMap<u16, u64>>, IndexError> {
        match self.index.load_metas()?.payload {
            None => Ok(None),
            Some(payload) => serde_json::from_str(&payload)
                .map(Some)
                .map_err(|e| IndexError::Payload(e.to_string())),
        }
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces what the index holds of a message by what it is now
    /// (`None`: gone). Visible after the next [`SearchIndex::commit`].
    pub fn put(
        &self,
        partition: u16,
        conv: &ConversationId,
        seq: u64,
        message: Option<&pb::Message>,
    ) -> Result<(), IndexError> {
        let f = &self.fields;
        let key = doc_key(conv, seq);
        let writer = self.writer();
        writer.delete_term(Term::from_field_text(f.key, &key));
        let Some((message, (text, kinds))) = message.and_then(|m| Some((m, indexed_text(m)?)))
        else {
            return Ok(());
        };
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, &key);
        doc.add_u64(f.partition, u64::from(partition));
        doc.add_text(f.conversation, conv.to_string());
        if let ConversationId::Direct { lo, hi } = *conv {
            doc.add_u64(f.direct, lo);
            doc.add_u64(f.direct, hi);
        }
        doc.add_u64(f.sender, message.sender);
        doc.add_i64(f.time, message.server_time_ms);
        doc.add_u64(f.tie, tie(conv, seq));
        for kind in kinds {
            doc.add_text(f.kind, kind_name(kind));
        }
        doc.add_text(f.words, text);
        doc.add_text(f.grams, text);
        writer.add_document(doc)?;
        Ok(())
    }

    /// Forgets every message of a partition (before it is indexed again).
    pub fn clear_partition(&self, partition: u16) {
        self.writer().delete_term(Term::from_field_u64(
            self.fields.partition,
            u64::from(partition),
        ));
    }

    /// Makes every change since the last commit durable and visible, with
    /// the partitions' watermarks.
    pub fn commit(&self, watermarks: &BTreeMap<u16, u64>) -> Result<(), IndexError> {
        let payload =
            serde_json::to_string(watermarks).map_err(|e| IndexError::Payload(e.to_string()))?;
        {
            let mut writer = self.writer();
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
        }
        self.reader.reload()?;
        Ok(())
    }

    /// Returns the number of messages the index holds, as of the last commit.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// Runs a query: up to `filter.limit` hits, newest first.
    pub fn search(&self, text: Option<&str>, filter: &Filter) -> Result<Vec<Hit>, IndexError> {
        let f = &self.fields;
        let mut must: Vec<Box<dyn Query>> = Vec::new();
        if let Some(text) = text {
            match analyzer::parse_query(f.words, f.grams, text) {
                Some(query) => must.push(query),
                None => return Ok(Vec::new()),
            }
        }
        must.push(Box::new(TermSetQuery::new(
            filter
                .partitions
                .iter()
                .map(|p| Term::from_field_u64(f.partition, u64::from(*p))),
        )));
        match &filter.conversation {
            Some(conv) => must.push(term(Term::from_field_text(f.conversation, conv))),
            None => {
                let mut scope: Vec<(Occur, Box<dyn Query>)> = vec![(
                    Occur::Should,
                    term(Term::from_field_u64(f.direct, filter.user)),
                )];
                if !filter.groups.is_empty() {
                    scope.push((
                        Occur::Should,
                        Box::new(TermSetQuery::new(
                            filter
                                .groups
                                .iter()
                                .map(|g| Term::from_field_text(f.conversation, g)),
                        )),
                    ));
                }
                must.push(Box::new(BooleanQuery::new(scope)));
            }
        }
        if let Some(sender) = filter.sender {
            must.push(term(Term::from_field_u64(f.sender, sender)));
        }
        if let Some(kind) = filter.kind {
            must.push(term(Term::from_field_text(f.kind, kind_name(kind))));
        }
        let upper = match (filter.to_ms, filter.before) {
            (Some(to), Some((at, _))) => Some(to.min(at)),
            (to, before) => to.or(before.map(|(at, _)| at)),
        };
        if filter.from_ms.is_some() || upper.is_some() {
            let bound = |ms: Option<i64>| match ms {
                Some(ms) => Bound::Included(Term::from_field_i64(f.time, ms)),
                None => Bound::Unbounded,
            };
            must.push(Box::new(RangeQuery::new(
                bound(filter.from_ms),
                bound(upper),
            )));
        }
        let query = BooleanQuery::new(must.into_iter().map(|q| (Occur::Must, q)).collect());

        let before = filter.before;
        let collector = TopDocs::with_limit(filter.limit.max(1)).order_by(
            move |segment: &tantivy::SegmentReader| {
                let column = |name: &str| segment.fast_fields().u64(name);
                let times = segment
                    .fast_fields()
                    .i64("time")
                    .map(|c| c.first_or_default_col(i64::MIN));
                let ties = column("tie").map(|c| c.first_or_default_col(0));
                move |doc: tantivy::DocId| -> Order {
                    let (Ok(times), Ok(ties)) = (&times, &ties) else {
                        return (i64::MIN, 0);
                    };
                    let order = (times.get_val(doc), ties.get_val(doc));
                    // At or after the cursor: last, and dropped below.
                    match before {
                        Some(cursor) if order >= cursor => (i64::MIN, 0),
                        _ => order,
                    }
                }
            },
        );
        let searcher = self.reader.searcher();
        let found: Vec<(Order, DocAddress)> = searcher.search(&query, &collector)?;
        let mut hits = Vec::with_capacity(found.len());
        for (order, address) in found {
            if order == (i64::MIN, 0) {
                continue;
            }
            let doc: TantivyDocument = searcher.doc(address)?;
            let parsed = doc
                .get_first(f.key)
                .and_then(|v| v.as_str())
                .and_then(parse_doc_key);
            if let Some((conversation, seq)) = parsed {
                hits.push(Hit {
                    conversation,
                    seq,
                    order,
                });
            }
        }
        Ok(hits)
    }
}

fn term(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}
