//! Just enough XML to drive an XMPP stream: split the byte stream into the
//! stream header, top-level stanzas and the stream close, and read an
//! attribute or a child's text out of a stanza. Not a general parser: no
//! namespaces, no entity decoding (the load generator's payloads need none).

/// One top-level item of an XMPP stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// `<stream:stream ...>` (also sent again after SASL).
    StreamOpen,
    /// `</stream:stream>`.
    StreamClose,
    /// A complete top-level element, `<message ...>...</message>` and the like.
    Stanza,
    /// An XML declaration, comment or whitespace keepalive.
    Skip,
}

/// Returns the end (exclusive) of the tag that starts at `buf[0] == b'<'`,
/// honouring quoted attribute values, or `None` if it is incomplete.
fn tag_end(buf: &[u8]) -> Option<usize> {
    let mut quote = None;
    for (i, &byte) in buf.iter().enumerate().skip(1) {
        match (quote, byte) {
            (None, b'"' | b'\'') => quote = Some(byte),
            (Some(q), _) if byte == q => quote = None,
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Finds the first complete top-level item at the front of `buf`; returns
/// it and its length in bytes, or `None` until more bytes arrive.
pub fn next_item(buf: &[u8]) -> Option<(Item, usize)> {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return (!buf.is_empty()).then_some((Item::Skip, buf.len()));
    };
    if start > 0 {
        return Some((Item::Skip, start));
    }
    if buf[0] != b'<' {
        // Stray text between stanzas: skip up to the next tag.
        let next = buf.iter().position(|&b| b == b'<').unwrap_or(buf.len());
        return Some((Item::Skip, next));
    }
    if buf.starts_with(b"<?") {
        return find(buf, b"?>").map(|at| (Item::Skip, at + 2));
    }
    if buf.starts_with(b"<!--") {
        return find(buf, b"-->").map(|at| (Item::Skip, at + 3));
    }
    if buf.starts_with(b"</stream:stream") {
        return tag_end(buf).map(|end| (Item::StreamClose, end));
    }
    if buf.starts_with(b"<stream:stream") {
        return tag_end(buf).map(|end| (Item::StreamOpen, end));
    }
    let mut depth = 0usize;
    let mut at = 0;
    while at < buf.len() {
        if buf[at] != b'<' {
            at += buf[at..]
                .iter()
                .position(|&b| b == b'<')
                .unwrap_or(buf.len() - at);
            continue;
        }
        let rest = &buf[at..];
        if rest.starts_with(b"<![CDATA[") {
            at += find(rest, b"]]>")? + 3;
            continue;
        }
        if rest.starts_with(b"<!--") {
            at += find(rest, b"-->")? + 3;
            continue;
        }
        let end = tag_end(rest)?;
        let tag = &rest[..end];
        if tag.starts_with(b"</") {
            depth = depth.saturating_sub(1);
        } else if !tag.ends_with(b"/>") {
            depth += 1;
        }
        at += end;
        if depth == 0 {
            return Some((Item::Stanza, at));
        }
    }
    None
}

/// Returns the element name of a stanza (`message`, `iq`, `presence` ...).
pub fn name(stanza: &[u8]) -> &[u8] {
    let body = stanza.strip_prefix(b"<").unwrap_or(stanza);
    let end = body
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')
        .unwrap_or(body.len());
    &body[..end]
}

/// Returns an attribute of the stanza's opening tag.
pub fn attr<'a>(stanza: &'a [u8], attribute: &str) -> Option<&'a [u8]> {
    let open = &stanza[..tag_end(stanza)?];
    let mut at = 1 + name(open).len();
    loop {
        while at < open.len() && open[at].is_ascii_whitespace() {
            at += 1;
        }
        let key_end = at + open[at..].iter().position(|&b| b == b'=')?;
        let key = open[at..key_end].trim_ascii();
        let quote = *open.get(key_end + 1)?;
        if quote != b'"' && quote != b'\'' {
            return None;
        }
        let value_start = key_end + 2;
        let value_end = value_start + open[value_start..].iter().position(|&b| b == quote)?;
        if key == attribute.as_bytes() {
            return Some(&open[value_start..value_end]);
        }
        at = value_end + 1;
    }
}

/// Returns the text of the first `<child>` element anywhere in the stanza.
pub fn child_text<'a>(stanza: &'a [u8], child: &str) -> Option<&'a [u8]> {
    let open = format!("<{child}");
    let mut from = 0;
    loop {
        let at = from + find(&stanza[from..], open.as_bytes())?;
        let after = *stanza.get(at + open.len())?;
        if after == b'>' || after.is_ascii_whitespace() || after == b'/' {
            let tag = &stanza[at..];
            let end = tag_end(tag)?;
            if tag[..end].ends_with(b"/>") {
                return Some(&[]);
            }
            let text_start = at + end;
            let close = format!("</{child}>");
            let text_end = text_start + find(&stanza[text_start..], close.as_bytes())?;
            return Some(&stanza[text_start..text_end]);
        }
        from = at + open.len();
    }
}

/// Tells whether the stanza contains `needle` anywhere.
pub fn contains(stanza: &[u8], needle: &str) -> bool {
    find(stanza, needle.as_bytes()).is_some()
}

/// Escapes text for an attribute value or element content.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(mut buf: &[u8]) -> Vec<(Item, String)> {
        let mut out = Vec::new();
        while let Some((item, len)) = next_item(buf) {
            out.push((item, String::from_utf8_lossy(&buf[..len]).into_owned()));
            buf = &buf[len..];
        }
        out
    }

    #[test]
    fn splits_a_stream_into_items() {
        let stream = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='x>y' version='1.0'>\
            <stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms><sm/></stream:features> \
            <message from='a@b/c' type='chat'><body>1.2.3</body><x a=\"q>\"/></message></stream:stream>";
        let found = items(stream);
        let kinds: Vec<&Item> = found.iter().map(|(i, _)| i).collect();
        assert_eq!(
            kinds,
            [
                &Item::Skip,
                &Item::StreamOpen,
                &Item::Stanza,
                &Item::Skip,
                &Item::Stanza,
                &Item::StreamClose
            ]
        );
        assert!(found[2].1.ends_with("</stream:features>"));
        assert!(found[4].1.starts_with("<message"));
    }

    #[test]
    fn waits_for_incomplete_stanzas() {
        let whole = b"<iq type='result' id='b1'><bind><jid>u@h/r</jid></bind></iq>";
        for cut in 1..whole.len() {
            assert_eq!(next_item(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(next_item(whole), Some((Item::Stanza, whole.len())));
        assert_eq!(next_item(b"<success xmlns='x'/>rest").unwrap().1, 20);
    }

    #[test]
    fn reads_names_attributes_and_children() {
        let stanza =
            b"<message to=\"r@c\" type='groupchat' id='7'><body>123.0.4.xx</body></message>";
        assert_eq!(name(stanza), b"message");
        assert_eq!(attr(stanza, "type"), Some(&b"groupchat"[..]));
        assert_eq!(attr(stanza, "to"), Some(&b"r@c"[..]));
        assert_eq!(attr(stanza, "from"), None);
        assert_eq!(child_text(stanza, "body"), Some(&b"123.0.4.xx"[..]));
        assert_eq!(child_text(stanza, "subject"), None);
        assert_eq!(
            child_text(b"<message><bodyx>1</bodyx></message>", "body"),
            None
        );
        assert_eq!(
            child_text(b"<message><subject/></message>", "subject"),
            Some(&b""[..])
        );
        assert!(contains(stanza, "groupchat"));
        assert_eq!(escape("a<'b'>&"), "a&lt;&apos;b&apos;&gt;&amp;");
    }
}
