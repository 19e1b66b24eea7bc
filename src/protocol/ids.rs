use std::fmt;
use std::str::FromStr;

use super::ProtocolError;

/// Names a conversation: a 1:1 conversation is derived from its two user ids
/// (ascending), so both sides name it without a lookup; a group's id is
/// assigned at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversationId {
    Direct { lo: u64, hi: u64 },
    Group(u64),
}

impl ConversationId {
    /// Returns the 1:1 conversation of two distinct users.
    pub fn direct(a: u64, b: u64) -> Self {
        ConversationId::Direct {
            lo: a.min(b),
            hi: a.max(b),
        }
    }

    /// Returns the other side of a 1:1 conversation, if `user` is one side.
    pub fn peer_of(&self, user: u64) -> Option<u64> {
        match *self {
            ConversationId::Direct { lo, hi } if lo == user => Some(hi),
            ConversationId::Direct { lo, hi } if hi == user => Some(lo),
            _ => None,
        }
    }

    /// Returns the bytes used as a storage key prefix (fixed width, so that
    /// a conversation's keys sort together and by seq).
    pub fn key(&self) -> [u8; 17] {
        let mut key = [0u8; 17];
        match *self {
            ConversationId::Direct { lo, hi } => {
                key[0] = b'd';
                key[1..9].copy_from_slice(&lo.to_be_bytes());
                key[9..17].copy_from_slice(&hi.to_be_bytes());
            }
            ConversationId::Group(id) => {
                key[0] = b'g';
                key[9..17].copy_from_slice(&id.to_be_bytes());
            }
        }
        key
    }

    /// Parses a storage key prefix written by [`ConversationId::key`].
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let word = |range: std::ops::Range<usize>| {
            key.get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
        };
        match key.first()? {
            b'd' => Some(ConversationId::Direct {
                lo: word(1..9)?,
                hi: word(9..17)?,
            }),
            b'g' => Some(ConversationId::Group(word(9..17)?)),
            _ => None,
        }
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConversationId::Direct { lo, hi } => write!(f, "d:{lo}:{hi}"),
            ConversationId::Group(id) => write!(f, "g:{id}"),
        }
    }
}

/// Parses a user, group or department id in its one canonical form: decimal
/// digits without a sign, whitespace or leading zero, from 1 to `u64::MAX`.
/// `u64::from_str` alone also takes `+7` and `007`, which would give one
/// conversation several names (`g:7`, `g:+7`, `g:007`).
pub fn parse_id(s: &str) -> Option<u64> {
    let canonical = !s.is_empty() && !s.starts_with('0') && s.bytes().all(|b| b.is_ascii_digit());
    if canonical { s.parse().ok() } else { None }
}

impl FromStr for ConversationId {
    type Err = ProtocolError;

    /// Parses the form `Display` writes and nothing else: `d:<lo>:<hi>`
    /// with `lo < hi`, or `g:<id>`, each id as [`parse_id`] takes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProtocolError::invalid(format!("malformed conversation id {s:?}"));
        let mut parts = s.split(':');
        let id = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("d"), Some(a), Some(b), None) => {
                let lo = parse_id(a).ok_or_else(bad)?;
                let hi = parse_id(b).ok_or_else(bad)?;
                if lo >= hi {
                    return Err(bad());
                }
                ConversationId::Direct { lo, hi }
            }
            (Some("g"), Some(a), None, None) => ConversationId::Group(parse_id(a).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_ids_are_symmetric_and_round_trip() {
        let id = ConversationId::direct(9, 3);
        assert_eq!(id, ConversationId::direct(3, 9));
        assert_eq!(id.to_string(), "d:3:9");
        assert_eq!("d:3:9".parse::<ConversationId>().unwrap(), id);
        assert_eq!(ConversationId::from_key(&id.key()), Some(id));
        assert_eq!(id.peer_of(3), Some(9));
        assert_eq!(id.peer_of(4), None);
        let group = ConversationId::Group(42);
        assert_eq!(group.to_string().parse::<ConversationId>().unwrap(), group);
        assert_eq!(ConversationId::from_key(&group.key()), Some(group));
    }

    #[test]
    fn malformed_ids_are_invalid() {
        for bad in [
            "", "d:1", "d:2:1", "d:1:1", "g:x", "x:1", "g:1:2", "d:1:2:3",
        ] {
            assert!(bad.parse::<ConversationId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_canonical_form_parses() {
        for bad in [
            "d:02:3",
            "d:1:03",
            "g:+2",
            "g:-2",
            "g:07",
            "g:0",
            "d:0:1",
            "g: 2",
            "g:2 ",
            " g:2",
            "g:2\n",
            "G:2",
            "g:",
            "d::2",
            "g:18446744073709551616",
            "d:1:99999999999999999999",
            "g:\u{0663}",
            "g:\u{FF12}",
            "g:2:",
        ] {
            let err = bad.parse::<ConversationId>().unwrap_err();
            assert_eq!(err.code, crate::protocol::ErrorCode::Invalid, "{bad:?}");
        }
        let max = format!("g:{}", u64::MAX);
        assert_eq!(
            max.parse::<ConversationId>().unwrap(),
            ConversationId::Group(u64::MAX)
        );
        for good in ["d:1:2", "g:10", "d:9:18446744073709551615"] {
            assert_eq!(good.parse::<ConversationId>().unwrap().to_string(), good);
        }
        assert_eq!(parse_id("42"), Some(42));
        for bad in ["", "0", "042", "+42", "-1", "4 2", "4_2", "0x2a"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
