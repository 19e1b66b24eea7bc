//! Full-text search of history, and the history manager's listings
//! (docs/decisions/0021). Each node indexes the messages of the partition
//! replicas it holds ([`indexer`], fed by the partitions' change feed off
//! the send path). A query is scoped by the asker's memberships at query
//! time, then answered by a node holding each partition (this one where it
//! can), in parallel, and merged newest first.

mod analyzer;
mod index;
mod indexer;
mod metrics;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::cluster::{PeerLinks, Request, Response, response_label};
use crate::messaging::members_for;
use crate::meta::Meta;
use crate::partition::Partitions;
use crate::protocol::{ConversationId, ErrorCode, ProtocolError, blocking, pb, peer_pb};

pub use index::IndexError;
use index::{Filter, Order, SearchIndex};
pub use indexer::{run as run_indexer, wait_idle};

/// Hits per page unless the request says otherwise, and at most.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;
/// The longest query taken, in characters.
const MAX_QUERY_CHARS: usize = 200;
/// Characters of text shown around the first match.
const FRAGMENT_CHARS: usize = 80;

/// The search plane of this node.
#[derive(Clone)]
pub struct Search {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: u64,
    /// `None` when search is off on this node (`search.enabled`).
    index: Option<SearchIndex>,
    partitions: Partitions,
    meta: Meta,
    links: PeerLinks,
}

/// A parsed page cursor: the order of the last hit shown.
fn parse_cursor(cursor: &str) -> Result<Option<Order>, ProtocolError> {
    if cursor.is_empty() {
        return Ok(None);
    }
    let bad = || ProtocolError::invalid(format!("malformed search cursor {cursor:?}"));
    let (time, tie) = cursor.split_once('.').ok_or_else(bad)?;
    Ok(Some((
        time.parse().map_err(|_| bad())?,
        tie.parse().map_err(|_| bad())?,
    )))
}

fn cursor_of((time, tie): Order) -> String {
    format!("{time}.{tie}")
}

/// Returns the URLs in a text: `http://` or `https://` up to the first
/// space, or the first character no URL holds unescaped.
pub fn links(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("http") {
        let candidate = &rest[at..];
        let scheme = ["https://", "http://"]
            .into_iter()
            .find(|s| candidate.starts_with(s));
        let Some(scheme) = scheme else {
            rest = &candidate[4..];
            continue;
        };
        let end = candidate
            .char_indices()
            .find(|(_, c)| c.is_whitespace() || !c.is_ascii() || "<>\"'`".contains(*c))
            .map_or(candidate.len(), |(i, _)| i);
        let url = candidate[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        if url.len() > scheme.len() {
            found.push(url);
        }
        rest = &candidate[end.max(scheme.len())..];
    }
    found
}

/// The request, checked.
struct Query {
    text: Option<String>,
    conversation: Option<ConversationId>,
    kind: Option<pb::SearchKind>,
    before: Option<Order>,
    limit: usize,
}

fn check(request: &pb::SearchRequest) -> Result<Query, ProtocolError> {
    let text = request.query.trim();
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ProtocolError::invalid(format!(
            "a search query holds at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let kind = match pb::SearchKind::try_from(request.kind) {
        Ok(pb::SearchKind::Any) => None,
        Ok(kind) => Some(kind),
        Err(_) => {
            return Err(ProtocolError::invalid(format!(
                "unknown search kind {}",
                request.kind
            )));
        }
    };
    let conversation = match request.conversation.as_str() {
        "" => None,
        conv => Some(conv.parse::<ConversationId>()?),
    };
    if text.is_empty() && (kind.is_none() || conversation.is_none()) {
        return Err(ProtocolError::invalid(
            "a search needs a query, or a conversation and a kind to list",
        ));
    }
    if request.from_ms < 0 || request.to_ms < 0 {
        return Err(ProtocolError::invalid(
            "search times are Unix ms, not negative",
        ));
    }
    if request.to_ms != 0 && request.to_ms < request.from_ms {
        return Err(ProtocolError::invalid("search to_ms is before from_ms"));
    }
    if request.limit > MAX_LIMIT {
        return Err(ProtocolError::invalid(format!(
            "a search page holds at most {MAX_LIMIT} hits"
        )));
    }
    Ok(Query {
        text: (!text.is_empty()).then(|| text.to_string()),
        conversation,
        kind,
        before: parse_cursor(&request.cursor)?,
        limit: if request.limit == 0 {
            DEFAULT_LIMIT
        } else {
            request.limit
        } as usize,
    })
}

fn nonzero<T: PartialEq + Default>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

impl Search {
    /// Opens this node's index in `dir` (none when not `enabled`).
    pub fn open(
        node_id: u64,
        dir: &Path,
        enabled: bool,
        partitions: Partitions,
        meta: Meta,
        links: PeerLinks,
    ) -> Result<Search, IndexError> {
        metrics::describe();
        let index = match enabled {
            true => Some(SearchIndex::open(dir)?),
            false => None,
        };
        Ok(Search {
            inner: Arc::new(Inner {
                node_id,
                index,
                partitions,
                meta,
                links,
            }),
        })
    }

    /// Runs a user's search: scoped by their memberships now, answered by
    /// a node holding each partition, merged newest first.
    pub async fn search(
        &self,
        user: u64,
        request: pb::SearchRequest,
    ) -> Result<pb::SearchResult, ProtocolError> {
        let started = Instant::now();
        let result = match self.inner.index {
            Some(_) => self.search_checked(user, request).await,
            None => Err(disabled(self.inner.node_id)),
        };
        metrics::record_query(&result, started.elapsed());
        result
    }

    async fn search_checked(
        &self,
        user: u64,
        request: pb::SearchRequest,
    ) -> Result<pb::SearchResult, ProtocolError> {
        let query = check(&request)?;
        let meta = self.inner.meta.clone();
        let (partitions, groups) = match &query.conversation {
            Some(conv) => {
                members_for(&meta, conv, user)?;
                (vec![self.inner.partitions.partition_of(conv)], Vec::new())
            }
            None => {
                let groups = blocking(move || scope_groups(&meta, user)).await?;
                ((0..self.inner.partitions.count() as u16).collect(), groups)
            }
        };
        let ask = peer_pb::SearchPartitions {
            user,
            partitions: Vec::new(),
            groups,
            request: Some(request),
        };
        let mut answers = Vec::new();
        let mut plan = self.plan(&partitions, &[])?;
        let mut tried: Vec<u64> = Vec::new();
        while !plan.is_empty() {
            let calls = plan.iter().map(|(node, partitions)| {
                let ask = peer_pb::SearchPartitions {
                    partitions: partitions.iter().map(|p| u32::from(*p)).collect(),
                    ..ask.clone()
                };
                async move { (*node, self.ask(*node, ask).await) }
            });
            let mut failed = Vec::new();
            let mut last_error = None;
            for (node, answer) in futures::future::join_all(calls).await {
                match answer {
                    Ok(hits) => answers.extend(hits),
                    Err(err) if err.code == ErrorCode::UnavailableRetry => {
                        tried.push(node);
                        failed.extend(plan[&node].iter().copied());
                        last_error = Some(err);
                    }
                    Err(err) => return Err(err),
                }
            }
            if failed.is_empty() {
                break;
            }
            // A node that did not answer: its partitions go to another replica.
            plan = self.plan(&failed, &tried).map_err(|_| {
                last_error.unwrap_or_else(|| {
                    ProtocolError::new(ErrorCode::UnavailableRetry, "no replica answered")
                })
            })?;
        }
        answers.sort_by_key(|(_, order)| std::cmp::Reverse(*order));
        let more = answers.len() > query.limit;
        answers.truncate(query.limit);
        let next_cursor = match answers.last() {
            Some((_, order)) if more => cursor_of(*order),
            _ => String::new(),
        };
        Ok(pb::SearchResult {
            hits: answers.into_iter().map(|(hit, _)| hit).collect(),
            next_cursor,
        })
    }

    /// Chooses, for each partition, the node that answers for it, among
    /// the replicas of its committed placement (a node that was moved off
    /// a partition still believes in the membership it last saw, and its
    /// copy stopped then): this one if it is one, else the partition's
    /// leader, else another; none of `avoid`.
    fn plan(
        &self,
        partitions: &[u16],
        avoid: &[u64],
    ) -> Result<BTreeMap<u64, Vec<u16>>, ProtocolError> {
        let me = self.inner.node_id;
        let mut plan: BTreeMap<u64, Vec<u16>> = BTreeMap::new();
        for &partition in partitions {
            let placement = self.inner.meta.placement(partition)?.replicas;
            let mut candidates = Vec::new();
            {
                // Read in place: cloning the metrics per partition would copy
                // every membership and replication map on each query.
                let metrics = self.inner.partitions.rafts()[usize::from(partition)].metrics();
                let metrics = metrics.borrow();
                let holds = metrics
                    .membership_config
                    .membership()
                    .get_node(&me)
                    .is_some();
                if placement.contains(&me) && holds {
                    candidates.push(me);
                }
                candidates.extend(metrics.current_leader.filter(|l| placement.contains(l)));
            }
            candidates.extend(placement);
            let node = candidates
                .into_iter()
                .find(|n| !avoid.contains(n))
                .ok_or_else(|| {
                    ProtocolError::new(
                        ErrorCode::UnavailableRetry,
                        format!("no replica of partition {partition} can be searched"),
                    )
                })?;
            plan.entry(node).or_default().push(partition);
        }
        Ok(plan)
    }

    async fn ask(
        &self,
        node: u64,
        ask: peer_pb::SearchPartitions,
    ) -> Result<Vec<(pb::SearchHit, Order)>, ProtocolError> {
        if node == self.inner.node_id {
            let search = self.clone();
            return blocking(move || search.search_here(&ask)).await;
        }
        let addr = self
            .inner
            .meta
            .nodes()?
            .into_iter()
            .find(|n| n.node_id == node)
            .map(|n| n.peer_addr)
            .ok_or_else(|| {
                ProtocolError::new(ErrorCode::UnavailableRetry, format!("node {node} unknown"))
            })?;
        match self.inner.links.call(&addr, Request::Search(ask)).await? {
            Response::Search(answer) => Ok(answer
                .hits
                .into_iter()
                .filter_map(|h| Some((h.hit?, (h.time, h.tie))))
                .collect()),
            other => Err(ProtocolError::internal(format!(
                "unexpected {} answer to a search",
                response_label(&other)
            ))),
        }
    }

    /// Answers a peer's search of this node's index.
    pub async fn serve(&self, ask: peer_pb::SearchPartitions) -> Response {
        let search = self.clone();
        match blocking(move || search.search_here(&ask)).await {
            Ok(hits) => Response::Search(peer_pb::SearchHits {
                hits: hits
                    .into_iter()
                    .map(|(hit, (time, tie))| peer_pb::search_hits::Hit {
                        hit: Some(hit),
                        time,
                        tie,
                    })
                    .collect(),
            }),
            Err(err) => crate::cluster::error_response(&err),
        }
    }

    /// Searches this node's index over the partitions asked, and reads each
    /// hit from its replica: a message changed since it was indexed (a
    /// recall, a burn) is left out.
    fn search_here(
        &self,
        ask: &peer_pb::SearchPartitions,
    ) -> Result<Vec<(pb::SearchHit, Order)>, ProtocolError> {
        let request = ask.request.clone().unwrap_or_default();
        let query = check(&request)?;
        let filter = Filter {
            partitions: ask.partitions.iter().map(|p| *p as u16).collect(),
            user: ask.user,
            groups: ask.groups.clone(),
            conversation: query.conversation.map(|c| c.to_string()),
            sender: nonzero(request.sender),
            from_ms: nonzero(request.from_ms),
            to_ms: nonzero(request.to_ms),
            kind: query.kind,
            before: query.before,
            // One more than a page: the asker learns whether there is more.
            limit: query.limit + 1,
        };
        let found = self
            .index()
            .ok_or_else(|| disabled(self.inner.node_id))?
            .search(query.text.as_deref(), &filter)
            .map_err(|e| ProtocolError::internal(e.to_string()))?;
        let mut hits = Vec::with_capacity(found.len());
        for found in found {
            let Some(message) = self
                .inner
                .partitions
                .message(&found.conversation, found.seq)?
            else {
                continue;
            };
            let Some((text, _)) = index::indexed_text(&message) else {
                continue;
            };
            let shown =
                analyzer::highlight(text, query.text.as_deref().unwrap_or(""), FRAGMENT_CHARS);
            let highlights = shown
                .ranges
                .iter()
                .map(|(start, end)| pb::TextRange {
                    start: shown.fragment[..*start].chars().count() as u32,
                    end: shown.fragment[..*end].chars().count() as u32,
                })
                .collect();
            let links = links(text).into_iter().map(str::to_string).collect();
            hits.push((
                pb::SearchHit {
                    fragment: shown.fragment,
                    highlights,
                    links,
                    message: Some(message),
                },
                found.order,
            ));
        }
        Ok(hits)
    }

    /// Returns how many messages this node's index holds.
    pub fn indexed(&self) -> u64 {
        self.index().map_or(0, SearchIndex::len)
    }

    /// Whether this node indexes its replicas (`search.enabled`).
    pub fn enabled(&self) -> bool {
        self.inner.index.is_some()
    }

    fn index(&self) -> Option<&SearchIndex> {
        self.inner.index.as_ref()
    }

    pub(crate) fn partitions(&self) -> &Partitions {
        &self.inner.partitions
    }
}

fn disabled(node: u64) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::UnavailableRetry,
        format!("search is off on node {node} (search.enabled = false)"),
    )
}

/// The group conversations a user may read now: the groups they belong
/// to, less those dissolved without their history.
fn scope_groups(meta: &Meta, user: u64) -> Result<Vec<String>, ProtocolError> {
    let mut groups = Vec::new();
    for group in meta.groups_of(user)? {
        let conv = ConversationId::Group(group);
        match members_for(meta, &conv, user) {
            Ok(_) => groups.push(conv.to_string()),
            Err(err) if matches!(err.code, ErrorCode::NotFound | ErrorCode::Forbidden) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_found_and_trimmed() {
        assert_eq!(
            links("see https://example.com/a?b=1, and http://x.cn/路径 or http:// nothing."),
            vec!["https://example.com/a?b=1", "http://x.cn/"]
        );
        assert!(links("no url, just httpd").is_empty());
    }

    #[test]
    fn a_cursor_round_trips_and_a_bad_one_is_refused() {
        assert_eq!(parse_cursor(&cursor_of((5, 7))).unwrap(), Some((5, 7)));
        assert_eq!(parse_cursor("").unwrap(), None);
        assert_eq!(parse_cursor("x.1").unwrap_err().code, ErrorCode::Invalid);
    }
}
