//! Read cursors never move backwards: the cursor a MarkRead answer reports
//! for a client's conversation is never below one reported earlier.

use std::collections::HashMap;

use super::{Events, Invariant};
use crate::history::Event;

pub struct CursorsMonotonic;

impl Invariant for CursorsMonotonic {
    fn name(&self) -> &'static str {
        "cursors_monotonic"
    }

    fn check_history(&self, events: &Events) -> Vec<String> {
        let mut last: HashMap<(usize, &str), u64> = HashMap::new();
        let mut found = Vec::new();
        for (_, event) in events {
            if let Event::Cursor {
                client,
                conv,
                read_seq,
            } = event
            {
                let before = last.entry((*client, conv.as_str())).or_default();
                if *read_seq < *before {
                    found.push(format!(
                        "client {client}'s cursor in {conv} moved back from {before} to {read_seq}"
                    ));
                }
                *before = (*before).max(*read_seq);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_cursor_moving_back_is_found() {
        let cursor = |read_seq| {
            (
                Duration::ZERO,
                Event::Cursor {
                    client: 0,
                    conv: "c".to_string(),
                    read_seq,
                },
            )
        };
        assert_eq!(
            CursorsMonotonic
                .check_history(&[cursor(3), cursor(5), cursor(4)])
                .len(),
            1
        );
    }
}
