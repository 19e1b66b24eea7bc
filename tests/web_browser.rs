//! The web client in a real browser: Debian's headless chromium, driven
//! through chromedriver (WebDriver), against a real node serving web/dist.
//! scripts/test.sh installs chromium and chromium-driver and builds web/dist
//! first. Screenshots go to $CHORUS_SCREENSHOTS (docs/web/ to refresh the
//! ones docs/web.md shows), or to a temporary folder.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;

use common::{TestNode, password};
use serde_json::json;
use webdriver::{Browser, Driver};

fn built_client() -> PathBuf {
    let dist = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/dist");
    assert!(
        dist.join("index.html").exists(),
        "web/dist is not built: run `npm ci && npm run build` in web/ (scripts/test.sh does)"
    );
    dist
}

fn screenshots() -> PathBuf {
    let dir = std::env::var_os("CHORUS_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("chorus-web-screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn log_in(browser: &Browser, node: &TestNode, account: &str, pass: &str) {
    browser.goto(&node.url("/")).await;
    browser.type_into("input[name=account]", account).await;
    browser.type_into("input[name=password]", pass).await;
    browser.click("[data-test=login-submit]").await;
}

/// Signs `account` in (its test password) and waits until the page is
/// caught up: the account shown, no banner.
async fn sign_in(browser: &Browser, node: &TestNode, account: &str) {
    log_in(browser, node, account, &password(account)).await;
    browser
        .wait_until(
            "signed in and caught up (no banner)",
            &format!("return document.querySelector('[data-test=me]')?.innerText === '{account}' && !document.querySelector('.banner')"),
        )
        .await;
}

/// Returns a script that finds the message of the open conversation whose
/// text is `text`, and evaluates `then` on it as `m`.
fn on_message(text: &str, then: &str) -> String {
    format!(
        "const m = [...document.querySelectorAll('[data-test=message]')].find(e => e.innerText.includes({text})); return m ? {then} : null;",
        text = json!(text)
    )
}

#[tokio::test]
async fn two_browser_users_chat_one_to_one_and_see_the_read_receipt() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let shots = screenshots();
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;

    // A wrong password is refused plainly.
    log_in(&alice, &node, "alice", "not-her-password").await;
    let error = alice
        .wait_until(
            "the login error",
            "return document.querySelector('[data-test=login-error]')?.innerText",
        )
        .await;
    assert_eq!(error, "Wrong account or password.");
    alice.screenshot(&shots.join("login-error.png")).await;

    log_in(&alice, &node, "alice", &password("alice")).await;
    alice
        .wait_until(
            "alice signed in and caught up (no banner)",
            "return document.querySelector('[data-test=me]')?.innerText === 'alice' && !document.querySelector('.banner')",
        )
        .await;
    // Bob switches the page to Chinese (kept across loads) before signing in.
    bob.goto(&node.url("/")).await;
    bob.click("[data-test=lang]").await;
    bob.wait_until(
        "the login page in Chinese",
        "return document.querySelector('[data-test=login-submit]')?.innerText === '登录'",
    )
    .await;
    bob.screenshot(&shots.join("login-zh.png")).await;
    log_in(&bob, &node, "bob", &password("bob")).await;
    bob.wait_until(
        "bob signed in and caught up (no banner)",
        "return document.querySelector('[data-test=me]')?.innerText === 'bob' && !document.querySelector('.banner')",
    )
    .await;

    // Alice opens a chat with bob by account and writes.
    alice.type_into("[data-test=new-chat]", "bob").await;
    alice.click("[data-test=new-chat-go]").await;
    alice
        .type_into("[data-test=composer]", "hello bob 你好")
        .await;
    alice.click("[data-test=send]").await;
    alice
        .wait_until(
            "alice's message acked, not yet read",
            &on_message(
                "hello bob 你好",
                "m.querySelector('[data-test=receipt]')?.dataset.read === 'false'",
            ),
        )
        .await;

    // Bob sees the conversation with one unread message and its preview.
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    let row = format!("[data-test=conversation][data-conversation='{conversation}']");
    let badge = bob
        .wait_until(
            "bob's unread badge",
            &format!("return document.querySelector(\"{row} [data-test=unread]\")?.innerText"),
        )
        .await;
    assert_eq!(badge, "1");
    let row_text = bob
        .eval(
            &format!("return document.querySelector(\"{row}\").innerText"),
            json!([]),
        )
        .await;
    assert!(
        row_text.as_str().unwrap().contains("hello bob 你好"),
        "{row_text}"
    );
    bob.screenshot(&shots.join("conversation-list.png")).await;

    // Bob opens it: the message shows, and reading it reaches alice as a receipt.
    bob.click(&row).await;
    bob.wait_until(
        "bob sees the message",
        &on_message("hello bob 你好", "true"),
    )
    .await;
    alice
        .wait_until(
            "alice sees the read receipt",
            &on_message(
                "hello bob 你好",
                "m.querySelector('[data-test=receipt]')?.dataset.read === 'true'",
            ),
        )
        .await;

    bob.type_into("[data-test=composer]", "hi alice").await;
    bob.click("[data-test=send]").await;
    alice
        .wait_until("alice sees bob's reply", &on_message("hi alice", "true"))
        .await;
    bob.wait_until(
        "bob's reply read by alice, whose chat is open",
        &on_message(
            "hi alice",
            "m.querySelector('[data-test=receipt]')?.dataset.read === 'true'",
        ),
    )
    .await;
    alice.screenshot(&shots.join("chat-alice.png")).await;
    bob.screenshot(&shots.join("chat-bob.png")).await;

    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_message_recalled_in_the_browser_turns_into_the_placeholder_on_both_sides() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    for (browser, account) in [(&alice, "alice"), (&bob, "bob")] {
        sign_in(browser, &node, account).await;
    }
    alice.type_into("[data-test=new-chat]", "bob").await;
    alice.click("[data-test=new-chat-go]").await;
    alice
        .type_into("[data-test=composer]", "oops, wrong chat")
        .await;
    alice.click("[data-test=send]").await;
    alice
        .wait_until(
            "alice's message acked",
            &on_message(
                "oops, wrong chat",
                "!!m.querySelector('[data-test=recall]')",
            ),
        )
        .await;
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    bob.click(&format!(
        "[data-test=conversation][data-conversation='{conversation}']"
    ))
    .await;
    bob.wait_until(
        "bob sees the message",
        &on_message("oops, wrong chat", "true"),
    )
    .await;

    alice
        .eval(
            &on_message(
                "oops, wrong chat",
                "(m.querySelector('[data-test=recall]').click(), true)",
            ),
            json!([]),
        )
        .await;
    let placeholder = "return [...document.querySelectorAll('[data-test=recalled]')].map(e => e.innerText).join('|') || null";
    let mine = alice.wait_until("alice's placeholder", placeholder).await;
    assert_eq!(mine, "You recalled a message");
    let theirs = bob.wait_until("bob's placeholder", placeholder).await;
    assert_eq!(theirs, "alice recalled a message");
    for browser in [&alice, &bob] {
        let page = browser
            .eval("return document.body.innerText", json!([]))
            .await;
        assert!(!page.as_str().unwrap().contains("oops"), "{page}");
    }

    // With recall disabled, the refusal is shown under the message.
    let admin = node.admin_token().await;
    let disabled = node
        .http()
        .put(node.url("/api/v1/policies/messaging"))
        .bearer_auth(&admin)
        .json(&json!({ "recall_window_secs": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    alice
        .type_into("[data-test=composer]", "this one stays")
        .await;
    alice.click("[data-test=send]").await;
    alice
        .wait_until(
            "the second message acked",
            &on_message("this one stays", "!!m.querySelector('[data-test=recall]')"),
        )
        .await;
    alice
        .eval(
            &on_message(
                "this one stays",
                "(m.querySelector('[data-test=recall]').click(), true)",
            ),
            json!([]),
        )
        .await;
    let refusal = alice
        .wait_until(
            "the refusal",
            &on_message(
                "this one stays",
                "m.querySelector('[data-test=recall-error]')?.innerText ?? null",
            ),
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap()
            .starts_with("Not recalled: recall is disabled"),
        "{refusal}"
    );
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_group_is_managed_in_the_chat_screen_and_its_members_see_it() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (owner, _) = node
        .login(
            "alice",
            chorus::pb::DeviceClass::Pc,
            chorus::client::Transport::Tcp,
        )
        .await;
    let group = owner.create_group("team", &[ids[1]]).await.unwrap();
    let conv = group.conversation.clone();
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    let entry = format!("[data-test=conversation][data-conversation='{conv}']");
    for (browser, account) in [(&alice, "alice"), (&bob, "bob")] {
        sign_in(browser, &node, account).await;
        browser.click(&entry).await;
        browser
            .wait_until(
                "the group's panel",
                "return !!document.querySelector('[data-test=group-members]') || null",
            )
            .await;
    }
    alice.click("[data-test=group-settings] summary").await;

    // Rename: the title changes in both browsers.
    alice.type_into("[data-test=group-name]", "Core team").await;
    alice.click("[data-test=group-rename]").await;
    let title = format!(
        "return document.querySelector(\"{entry} .title\")?.innerText === 'Core team' || null"
    );
    alice.wait_until("alice's title", &title).await;
    bob.wait_until("bob's title, by the group event", &title)
        .await;

    // An announcement is pinned for bob; bob has read it, alice sees the count.
    alice
        .type_into("[data-test=group-announcement]", "Release on Friday")
        .await;
    alice.click("[data-test=group-announce]").await;
    bob.wait_until(
        "bob sees the announcement",
        "return document.querySelector('[data-test=announcement]')?.innerText.includes('Release on Friday') || null",
    )
    .await;
    let reads = "return document.querySelector('[data-test=announcement-reads]')?.innerText === 'read by 1'";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Opening the settings again reads the group again.
        alice.click("[data-test=group-settings] summary").await;
        alice.click("[data-test=group-settings] summary").await;
        alice
            .wait_until(
                "the panel reloaded",
                "return !!document.querySelector('[data-test=group-members]') || null",
            )
            .await;
        if alice.eval(reads, json!([])).await == json!(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the read count never reached 1"
        );
    }

    // Mute all: bob is told, and his send is refused with the reason.
    alice
        .wait_until(
            "the settings reloaded",
            "return !!document.querySelector('[data-test=mute-all]') || null",
        )
        .await;
    alice.click("[data-test=mute-all]").await;
    bob.wait_until(
        "bob's muted notice",
        "return document.querySelector('[data-test=muted-notice]')?.innerText || null",
    )
    .await;
    bob.type_into("[data-test=composer]", "can I speak?").await;
    bob.click("[data-test=send]").await;
    let refusal = bob
        .wait_until(
            "the refusal",
            "return document.querySelector('.msg.pending .meta')?.innerText.includes('the group is muted') || null",
        )
        .await;
    assert_eq!(refusal, json!(true));

    // Alice makes bob an admin: he may speak again.
    alice
        .click(&format!(
            "[data-test=group-member][data-user='{}'] [data-test=toggle-admin]",
            ids[1]
        ))
        .await;
    bob.wait_until(
        "bob's notice gone",
        "return !document.querySelector('[data-test=muted-notice]') || null",
    )
    .await;

    // Do not disturb, set in bob's chat screen, shows in his list.
    bob.click("[data-test=group-settings] summary").await;
    bob.click("[data-test=dnd]").await;
    bob.wait_until(
        "the DND mark",
        &format!("return !!document.querySelector(\"{entry} [data-test=dnd-mark]\") || null"),
    )
    .await;
    let page = node
        .http()
        .get(node.url(&format!("/api/v1/groups/{}", group.group_id)))
        .bearer_auth(node.rest_token("alice", &password("alice"), "mobile").await)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(page["mute_all"], true);
    assert_eq!(page["admins"], json!([ids[1]]));
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_message_to_sign_is_signed_in_one_browser_and_its_sender_sees_who_signed() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    for (browser, account) in [(&alice, "alice"), (&bob, "bob")] {
        sign_in(browser, &node, account).await;
    }
    alice.type_into("[data-test=new-chat]", "bob").await;
    alice.click("[data-test=new-chat-go]").await;
    alice.click("[data-test=must-sign]").await;
    alice
        .type_into("[data-test=composer]", "please sign the plan")
        .await;
    alice.click("[data-test=send]").await;
    alice
        .wait_until(
            "alice's message acked, with the sender's sign-off controls",
            &on_message(
                "please sign the plan",
                "!!m.querySelector('[data-test=sign-status]')",
            ),
        )
        .await;
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    bob.click(&format!(
        "[data-test=conversation][data-conversation='{conversation}']"
    ))
    .await;
    bob.wait_until(
        "bob sees it pending",
        &on_message(
            "please sign the plan",
            "!!m.querySelector('[data-test=sign-pending]')",
        ),
    )
    .await;
    bob.eval(
        &on_message(
            "please sign the plan",
            "(m.querySelector('[data-test=sign]').click(), true)",
        ),
        json!([]),
    )
    .await;
    let signed = bob
        .wait_until(
            "bob's message shows signed",
            &on_message(
                "please sign the plan",
                "m.querySelector('[data-test=signed]')?.innerText ?? null",
            ),
        )
        .await;
    assert_eq!(signed, "Signed");
    alice
        .eval(
            &on_message(
                "please sign the plan",
                "(m.querySelector('[data-test=sign-status]').click(), true)",
            ),
            json!([]),
        )
        .await;
    let status = alice
        .wait_until(
            "alice sees who signed",
            &on_message(
                "please sign the plan",
                "m.querySelector('[data-test=sign-note]')?.innerText ?? null",
            ),
        )
        .await;
    assert_eq!(status, "Signed by 1 of 1");
    bob.screenshot(&screenshots().join("sign-off.png")).await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_burn_message_is_hidden_until_revealed_and_burns_on_both_sides() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    for (browser, account) in [(&alice, "alice"), (&bob, "bob")] {
        sign_in(browser, &node, account).await;
    }
    alice.type_into("[data-test=new-chat]", "bob").await;
    alice.click("[data-test=new-chat-go]").await;
    alice
        .wait_until(
            "the chat open, its burn choice set",
            "const s = document.querySelector('[data-test=burn]'); if (!s) return null; s.value = '300'; s.dispatchEvent(new Event('change', { bubbles: true })); return true",
        )
        .await;
    let words = "meet at the north gate";
    alice.type_into("[data-test=composer]", words).await;
    alice.click("[data-test=send]").await;
    alice
        .wait_until(
            "alice's burn message acked, marked as one",
            &on_message(words, "!!m.querySelector('[data-test=burn-badge]')"),
        )
        .await;
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    let entry = format!("[data-test=conversation][data-conversation='{conversation}']");
    let listed = bob
        .wait_until(
            "bob's list shows a burn message, not its text",
            &format!("return document.querySelector(\"{entry}\")?.innerText ?? null"),
        )
        .await;
    assert!(
        listed.as_str().unwrap().contains("[burn after reading]"),
        "{listed}"
    );
    bob.click(&entry).await;
    bob.wait_until(
        "bob sees a hidden burn message",
        "return !!document.querySelector('[data-test=burn-reveal]')",
    )
    .await;
    let page = bob.eval("return document.body.innerText", json!([])).await;
    assert!(!page.as_str().unwrap().contains(words), "{page}");
    // Bob's cursor stopped before it: nothing burned yet, alice sees it unread.
    alice
        .wait_until(
            "alice still sees her message, unread",
            &on_message(
                words,
                "m.querySelector('[data-test=receipt]')?.dataset.read === 'false'",
            ),
        )
        .await;

    bob.click("[data-test=burn-reveal]").await;
    let shown = bob
        .wait_until(
            "bob read it, and it burned",
            "return document.querySelector('[data-test=burn-revealed]') && document.querySelector('[data-test=burned]') ? document.querySelector('[data-test=burn-revealed]').innerText : null",
        )
        .await;
    assert_eq!(shown, words);
    let burned = alice
        .wait_until(
            "alice's placeholder",
            "return document.querySelector('[data-test=burned]')?.innerText ?? null",
        )
        .await;
    assert_eq!(burned, "🔥 Burned after reading");
    let page = alice
        .eval("return document.body.innerText", json!([]))
        .await;
    assert!(!page.as_str().unwrap().contains(words), "{page}");
    // A new session of Bob's, catching up from the server, holds no copy.
    sign_in(&bob, &node, "bob").await;
    bob.click(&entry).await;
    bob.wait_until(
        "bob's placeholder after the reload",
        "return !!document.querySelector('[data-test=burned]')",
    )
    .await;
    let page = bob.eval("return document.body.innerText", json!([])).await;
    assert!(!page.as_str().unwrap().contains(words), "{page}");
    bob.screenshot(&screenshots().join("burn.png")).await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_message_kept_and_a_contact_starred_in_the_chat_show_in_the_personal_lists() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (bob, _) = node
        .login(
            "bob",
            chorus::pb::DeviceClass::Pc,
            chorus::client::Transport::Tcp,
        )
        .await;
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    bob.send_text(&conversation, "p1", "the plan for monday")
        .await
        .unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    log_in(&alice, &node, "alice", &password("alice")).await;
    let entry = format!("[data-test=conversation][data-conversation='{conversation}']");
    alice
        .wait_until(
            "alice's list holds bob's chat",
            &format!("return !!document.querySelector(\"{entry}\")"),
        )
        .await;
    alice.click(&entry).await;
    alice
        .wait_until(
            "the message and its Keep link",
            &on_message(
                "the plan for monday",
                "!!m.querySelector('[data-test=keep]')",
            ),
        )
        .await;
    alice
        .eval(
            &on_message(
                "the plan for monday",
                "(m.querySelector('[data-test=keep]').click(), true)",
            ),
            json!([]),
        )
        .await;
    alice
        .wait_until(
            "the message kept",
            &on_message(
                "the plan for monday",
                "m.querySelector('[data-test=kept]')?.innerText === 'Kept'",
            ),
        )
        .await;
    alice.click("[data-test=favourite-contact]").await;
    alice
        .wait_until(
            "bob starred",
            "return document.querySelector('[data-test=favourite-contact]')?.dataset.on === 'true'",
        )
        .await;

    alice.click("[data-test=tab-favourites]").await;
    let kept = alice
        .wait_until(
            "the favourites list",
            "const m = document.querySelector('[data-test=favourite-message]'); const c = document.querySelector('[data-test=favourite-contact-item]'); return m && c ? m.innerText + '|' + c.innerText : null",
        )
        .await;
    let kept = kept.as_str().unwrap();
    assert!(
        kept.contains("the plan for monday") && kept.contains("bob"),
        "{kept}"
    );
    alice.click("[data-test=tab-recent]").await;
    let recent = alice
        .wait_until(
            "the recent contacts",
            "return document.querySelector('[data-test=recent-contact]')?.innerText ?? null",
        )
        .await;
    assert!(recent.as_str().unwrap().contains("bob"), "{recent}");
    alice.screenshot(&screenshots().join("lists.png")).await;
    alice.click("[data-test=recent-contact]").await;
    alice
        .wait_until(
            "the chat with bob open from the list",
            "return document.querySelector('.chat-title')?.innerText.startsWith('bob') ?? null",
        )
        .await;
    // The server holds the same lists.
    let favourites = bob.favourites(0, 0).await.unwrap();
    assert_eq!(favourites.message_count, 0, "bob's are his own");
    alice.close().await;
}

#[tokio::test]
async fn a_discussion_started_from_several_accounts_becomes_a_group() {
    use chorus::client::Transport;
    use chorus::pb::DeviceClass;
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    node.create_users(&["alice", "bob", "carol"]).await;
    let (mut bob, _) = node.login("bob", DeviceClass::Pc, Transport::Tcp).await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    sign_in(&alice, &node, "alice").await;
    alice.type_into("[data-test=new-chat]", "bob, carol").await;
    alice.click("[data-test=new-chat-go]").await;
    let title = alice
        .wait_until(
            "the discussion open",
            "return document.querySelector('.chat-title')?.innerText || null",
        )
        .await;
    assert_eq!(title, "alice, bob, carol");
    alice.type_into("[data-test=composer]", "quick sync?").await;
    alice.click("[data-test=send]").await;
    let pushed = common::next_message(&mut bob).await;
    assert_eq!(common::text_of(&pushed), "quick sync?");
    let group_id: u64 = pushed.conversation[2..].parse().unwrap();
    assert!(bob.get_group(group_id).await.unwrap().temporary);

    alice.click("[data-test=group-settings] summary").await;
    alice
        .type_into("[data-test=make-permanent-name]", "Launch")
        .await;
    alice.click("[data-test=make-permanent]").await;
    alice
        .wait_until(
            "the discussion now a group named Launch",
            "return document.querySelector('.chat-title')?.innerText === 'Launch' && !document.querySelector('[data-test=make-permanent]')",
        )
        .await;
    assert!(!bob.get_group(group_id).await.unwrap().temporary);
    // The owner of a permanent group cannot just leave: the refusal shows.
    alice.click("[data-test=group-leave]").await;
    let refusal = alice
        .wait_until(
            "the refusal",
            "return document.querySelector('[data-test=group-error]')?.innerText ?? null",
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap()
            .contains("owner cannot be removed"),
        "{refusal}"
    );
    alice.close().await;
}

#[tokio::test]
async fn a_notice_is_read_acknowledged_and_voted_on_in_the_browser() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let admin = node.admin_token().await;
    let department: serde_json::Value = node
        .http()
        .post(node.url("/api/v1/departments"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "Staff" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let staff = department["department_id"].as_u64().unwrap();
    let created = node
        .http()
        .post(node.url("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({ "account": "alice", "password": password("alice"), "departments": [staff] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let sent: serde_json::Value = node
        .http()
        .post(node.url("/api/v1/notices"))
        .bearer_auth(&admin)
        .json(&json!({
            "title": "Offsite",
            "body": "We meet on the 12th.",
            "departments": [staff],
            "must_ack": true,
            "vote": { "options": ["Lunch", "Dinner"] },
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = sent["notice_id"].as_u64().unwrap();
    assert_eq!(sent["recipient_count"], 1);

    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    log_in(&alice, &node, "alice", &password("alice")).await;
    alice.click("[data-test=tab-notices]").await;
    let listed = alice
        .wait_until(
            "the notice listed as new",
            "return document.querySelector('[data-test=notice-open]')?.innerText ?? null",
        )
        .await;
    assert!(listed.as_str().unwrap().contains("New"), "{listed}");
    alice.click("[data-test=notice-open]").await;
    alice
        .wait_until(
            "the notice open and read",
            "return document.querySelector('[data-test=notice-text]')?.innerText === 'We meet on the 12th.' && !document.querySelector('[data-test=notice-open] .badge')",
        )
        .await;
    alice.click("[data-test=notice-ack]").await;
    alice
        .wait_until(
            "acknowledged",
            "return !!document.querySelector('[data-test=notice-acked]')",
        )
        .await;
    alice
        .eval(
            "document.querySelectorAll('[data-test=notice-option]')[1].click(); return true",
            json!([]),
        )
        .await;
    alice.click("[data-test=notice-vote-go]").await;
    let totals = alice
        .wait_until(
            "the vote counted",
            "const t = [...document.querySelectorAll('[data-test=notice-total]')].map(e => e.innerText).join(','); return document.querySelector('[data-test=notice-vote-go]') ? null : t",
        )
        .await;
    assert_eq!(totals, "0,1");
    alice.screenshot(&screenshots().join("notice.png")).await;
    let stats: serde_json::Value = node
        .http()
        .get(node.url(&format!("/api/v1/notices/{id}/stats")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            stats["read_count"].clone(),
            stats["acked_count"].clone(),
            stats["totals"].clone()
        ),
        (json!(1), json!(1), json!([0, 1]))
    );
    alice.close().await;
}

#[tokio::test]
async fn a_search_finds_a_message_and_jumps_to_it_in_the_browser() {
    use chorus::pb::{SearchKind, SearchRequest};
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let (bob, _) = node
        .login(
            "bob",
            chorus::pb::DeviceClass::Pc,
            chorus::client::Transport::Tcp,
        )
        .await;
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    let texts = [
        "the plan for monday",
        "年度预算审批",
        "the spec is at https://example.com/spec",
        "lunch at noon?",
    ];
    for (i, text) in texts.iter().enumerate() {
        bob.send_text(&conversation, &format!("s{i}"), text)
            .await
            .unwrap();
    }
    // The server indexes off the send path: wait until both are found.
    common::wait_for("the messages to be indexed", || async {
        let found = bob
            .search(SearchRequest {
                query: "预算".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let links = bob
            .search(SearchRequest {
                conversation: conversation.clone(),
                kind: SearchKind::Link as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        (found.hits.len() == 1 && links.hits.len() == 1).then_some(())
    })
    .await;

    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    sign_in(&alice, &node, "alice").await;
    // Enter (WebDriver's U+E007) submits the search.
    alice
        .type_into("[data-test=search-input]", "预算\u{E007}")
        .await;
    let hit = alice
        .wait_until(
            "exactly one hit, its match marked",
            "const r = [...document.querySelectorAll('[data-test=search-result]')]; if (r.length !== 1) return null; const marks = [...r[0].querySelectorAll('mark')].map(m => m.innerText); return marks.some(m => m.includes('预算')) ? JSON.stringify({ marks, text: r[0].innerText, conversation: r[0].dataset.conversation, seq: r[0].dataset.seq }) : null",
        )
        .await;
    let hit: serde_json::Value = serde_json::from_str(hit.as_str().unwrap()).unwrap();
    assert_eq!(hit["marks"], json!(["预算"]), "{hit}");
    assert_eq!(hit["conversation"], json!(conversation), "{hit}");
    let shown = hit["text"].as_str().unwrap();
    assert!(
        shown.contains("bob") && shown.contains("年度预算审批"),
        "the conversation's name and the fragment: {shown}"
    );
    alice.screenshot(&screenshots().join("search.png")).await;

    alice.click("[data-test=search-result]").await;
    let focused = alice
        .wait_until(
            "the chat with bob open at the message, highlighted and in view",
            "if (!document.querySelector('.chat-title')?.innerText.startsWith('bob')) return null; const m = document.querySelector('[data-test=message][data-focused=true]'); if (!m) return null; const box = m.getBoundingClientRect(); const list = document.querySelector('[data-test=messages]').getBoundingClientRect(); return box.top >= list.top && box.bottom <= list.bottom ? m.dataset.seq + '|' + m.innerText : null",
        )
        .await;
    let focused = focused.as_str().unwrap();
    let seq = hit["seq"].as_str().unwrap();
    assert!(
        focused.starts_with(&format!("{seq}|")) && focused.contains("年度预算审批"),
        "the message of the hit (seq {seq}): {focused}"
    );

    // The history manager's Links tab lists the link, opening in a new tab.
    alice.click("[data-test=history-manager]").await;
    alice.click("[data-test=history-links]").await;
    let links = alice
        .wait_until(
            "the Links tab lists the link",
            "const a = [...document.querySelectorAll('[data-test=history-link]')]; return a.length ? a.map(l => l.href + ' ' + l.target + ' ' + l.rel).join('|') : null",
        )
        .await;
    assert_eq!(links, "https://example.com/spec _blank noopener noreferrer");
    alice.screenshot(&screenshots().join("history.png")).await;
    alice.close().await;
}

#[tokio::test]
async fn an_image_and_a_file_sent_in_the_browser_show_as_a_thumbnail_and_a_card() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let profiles = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let photo = files.path().join("photo.png");
    image::RgbaImage::from_fn(640, 480, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 255])
    })
    .save(&photo)
    .unwrap();
    let notes = files.path().join("notes.txt");
    std::fs::write(&notes, "minutes of the meeting").unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    for (browser, account) in [(&alice, "alice"), (&bob, "bob")] {
        sign_in(browser, &node, account).await;
    }
    alice.type_into("[data-test=new-chat]", "bob").await;
    alice.click("[data-test=new-chat-go]").await;
    alice
        .wait_until(
            "the chat open",
            "return !!document.querySelector('[data-test=attach-input]')",
        )
        .await;
    alice
        .type_into("[data-test=attach-input]", photo.to_str().unwrap())
        .await;
    alice
        .wait_until(
            "alice's image shown as its thumbnail",
            "return document.querySelector('[data-test=image-thumb]')?.dataset.loaded === 'true' || null",
        )
        .await;
    alice
        .type_into("[data-test=attach-input]", notes.to_str().unwrap())
        .await;
    let conversation = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    bob.click(&format!(
        "[data-test=conversation][data-conversation='{conversation}']"
    ))
    .await;
    let size = bob
        .wait_until(
            "bob sees the thumbnail, scaled to at most 256 px",
            "const i = document.querySelector('[data-test=image-thumb] img'); return i?.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight] : null",
        )
        .await;
    assert_eq!(size, json!([256, 192]), "the server's thumbnail");
    let card = bob
        .wait_until(
            "bob sees the file as a card",
            "return document.querySelector('[data-test=file-card] [data-test=file-name]')?.innerText ?? null",
        )
        .await;
    assert_eq!(card, "notes.txt");
    bob.screenshot(&screenshots().join("files.png")).await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_groups_file_space_is_shared_in_the_browser() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let owner = node.rest_token("alice", &password("alice"), "mobile").await;
    let group: serde_json::Value = node
        .http()
        .post(node.url("/api/v1/groups"))
        .bearer_auth(&owner)
        .json(&json!({"name": "design", "members": [ids[1]]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = format!(
        "[data-test=conversation][data-conversation='g:{}']",
        group["group_id"]
    );
    let files = tempfile::tempdir().unwrap();
    let plan = files.path().join("plan.txt");
    std::fs::write(&plan, "the plan of the quarter").unwrap();
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    let bob = driver.browser(&profiles.path().join("bob")).await;
    for (browser, account) in [(&alice, "alice"), (&bob, "bob")] {
        sign_in(browser, &node, account).await;
        browser.click(&entry).await;
        browser.click("[data-test=space-open]").await;
        browser
            .wait_until(
                "the file space shown",
                "return !!document.querySelector('[data-test=space]')",
            )
            .await;
    }
    alice.click("[data-test=space-new-folder]").await;
    alice
        .type_into("[data-test=space-folder-name]", "Reports")
        .await;
    alice.click("[data-test=space-folder-create]").await;
    alice
        .type_into("[data-test=space-upload-input]", plan.to_str().unwrap())
        .await;
    let names = "return [...document.querySelectorAll('[data-test=space-entry]')].map(e => e.dataset.name).join(',') || null";
    alice
        .wait_until(
            "alice sees the folder and the file",
            &format!(
                "const n = (() => {{ {names} }})(); return n === 'Reports,plan.txt' ? n : null"
            ),
        )
        .await;
    // Bob's view lists them once he reopens it; his download is counted.
    bob.click("[data-test=space-open]").await;
    bob.click("[data-test=space-open]").await;
    bob.wait_until(
        "bob sees the folder and the file",
        &format!("const n = (() => {{ {names} }})(); return n === 'Reports,plan.txt' ? n : null"),
    )
    .await;
    bob.click("[data-test=space-entry][data-name='plan.txt'] [data-test=space-download]")
        .await;
    let count = bob
        .wait_until(
            "the download counted",
            "const c = document.querySelector(\"[data-test=space-entry][data-name='plan.txt'] [data-test=space-downloads]\")?.innerText.trim(); return c === '1' ? c : null",
        )
        .await;
    assert_eq!(count, "1");
    bob.screenshot(&screenshots().join("file-space.png")).await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_user_changes_their_password_in_the_browser_and_signs_in_with_it() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    node.create_users(&["alice"]).await;
    let (mut phone, _) = node
        .login(
            "alice",
            chorus::pb::DeviceClass::Mobile,
            chorus::client::Transport::Tcp,
        )
        .await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    sign_in(&alice, &node, "alice").await;
    alice.click("[data-test=password-open]").await;
    let said = "document.querySelector('[data-test=password-said]')?.innerText ?? ''";
    // A mismatch is caught in the page, a wrong current password by the server.
    alice
        .type_into("[data-test=password-current]", "not-her-password")
        .await;
    alice
        .type_into("[data-test=password-new]", "a-new-secret-1")
        .await;
    alice
        .type_into("[data-test=password-repeat]", "a-new-secret-2")
        .await;
    alice.click("[data-test=password-submit]").await;
    alice
        .wait_until(
            "the mismatch shown",
            &format!("return ({said}).includes('differ')"),
        )
        .await;
    alice
        .eval(
            "const r = document.querySelector('[data-test=password-repeat]'); r.value = ''; r.dispatchEvent(new Event('input', {bubbles: true})); return true;",
            json!([]),
        )
        .await;
    alice
        .type_into("[data-test=password-repeat]", "a-new-secret-1")
        .await;
    alice.click("[data-test=password-submit]").await;
    alice
        .wait_until(
            "the server's refusal shown",
            &format!("return ({said}).includes('wrong password')"),
        )
        .await;
    alice
        .eval(
            "const c = document.querySelector('[data-test=password-current]'); c.value = ''; c.dispatchEvent(new Event('input', {bubbles: true})); return true;",
            json!([]),
        )
        .await;
    alice
        .type_into("[data-test=password-current]", &password("alice"))
        .await;
    alice.click("[data-test=password-submit]").await;
    alice
        .wait_until(
            "the change confirmed",
            &format!("return ({said}).includes('Password changed')"),
        )
        .await;
    alice
        .screenshot(&screenshots().join("password-changed.png"))
        .await;
    // Her phone was signed out; the browser's session goes on.
    let (_, _, pushes) = common::wait_closed(&mut phone).await;
    assert!(
        pushes
            .iter()
            .any(|p| matches!(&p.body, Some(chorus::pb::server_frame::Body::Kicked(_)))),
        "{pushes:?}"
    );
    assert_eq!(
        node.rest_login("alice", "a-new-secret-1", "pc")
            .await
            .status(),
        200
    );
    alice.click("[data-test=logout]").await;
    log_in(&alice, &node, "alice", "a-new-secret-1").await;
    alice
        .wait_until(
            "signed in with the new password",
            "return document.querySelector('[data-test=me]')?.innerText === 'alice'",
        )
        .await;
    alice.close().await;
}

/// Fills the password dialog (current, new twice) and submits it.
async fn choose_password(browser: &Browser, current: &str, new: &str) {
    for (field, value) in [("current", current), ("new", new), ("repeat", new)] {
        let css = format!("[data-test=password-{field}]");
        browser
            .eval(
                "const e = document.querySelector(arguments[0]); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); return true;",
                json!([css]),
            )
            .await;
        browser.type_into(&css, value).await;
    }
    browser.click("[data-test=password-submit]").await;
}

/// Sets a `<select>` to `value` as a user's choice would (a change event).
async fn choose(browser: &Browser, css: &str, value: &str) {
    browser.find(css).await;
    let chosen = browser
        .eval(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change', {bubbles: true})); return s.value === arguments[1];",
            json!([css, value]),
        )
        .await;
    assert_eq!(chosen, json!(true), "{css} has no option {value}");
}

/// The id of the department named `name` in the console's tree.
async fn department_id(browser: &Browser, name: &str) -> String {
    browser
        .wait_until(
            &format!("department {name} in the tree"),
            &format!(
                "return [...document.querySelectorAll('[data-test=dept]')].find(e => e.dataset.name === {name})?.dataset.id ?? null",
                name = json!(name)
            ),
        )
        .await
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_admin_runs_the_organisation_from_the_console_and_the_new_user_signs_in() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let alice_token = node.rest_token("alice", &password("alice"), "pc").await;
    let made = node
        .http()
        .post(node.url("/api/v1/groups"))
        .bearer_auth(&alice_token)
        .json(&json!({ "name": "Sales team", "members": [ids[1]] }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);

    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let admin = driver.browser(&profiles.path().join("admin")).await;
    admin.goto(&node.url("/admin")).await;
    admin.type_into("input[name=account]", "admin").await;
    admin
        .type_into("input[name=password]", &node.admin_password)
        .await;
    admin.click("[data-test=login-submit]").await;
    admin.find("[data-test=admin]").await;

    // Departments: a top-level one, one under it, renamed, a third deleted.
    let tree_text = "document.querySelector('[data-test=dept-tree]')?.innerText ?? ''";
    for name in ["Sales", "Temp"] {
        admin.type_into("[data-test=dept-new-name]", name).await;
        admin.click("[data-test=dept-create]").await;
        department_id(&admin, name).await;
        // A new department is selected: unselect it to make the next at the top.
        admin.click("[data-test=dept][aria-pressed=true]").await;
    }
    let sales = department_id(&admin, "Sales").await;
    admin
        .click(&format!("[data-test=dept][data-id='{sales}']"))
        .await;
    admin.type_into("[data-test=dept-new-name]", "East").await;
    admin.click("[data-test=dept-create]").await;
    let east = department_id(&admin, "East").await;
    admin
        .eval(
            "const r = document.querySelector('[data-test=dept-rename]'); r.value = ''; r.dispatchEvent(new Event('input', {bubbles: true})); return true;",
            json!([]),
        )
        .await;
    admin
        .type_into("[data-test=dept-rename]", "East China")
        .await;
    admin.click("[data-test=dept-rename-go]").await;
    assert_eq!(department_id(&admin, "East China").await, east);
    let temp = department_id(&admin, "Temp").await;
    admin
        .click(&format!("[data-test=dept][data-id='{temp}']"))
        .await;
    admin.click("[data-test=dept-delete]").await;
    admin.click("[data-test=dept-delete-yes]").await;
    admin
        .wait_until(
            "Temp gone and East China under Sales",
            &format!("const t = {tree_text}; return !t.includes('Temp') && t.indexOf('Sales') < t.indexOf('East China')"),
        )
        .await;
    admin
        .screenshot(&screenshots().join("admin-departments.png"))
        .await;
    let tree: serde_json::Value = node
        .http()
        .get(node.url("/api/v1/departments/tree"))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tree.as_array().unwrap().len(), 1, "{tree}");
    assert_eq!(tree[0]["name"], "Sales");
    assert_eq!(tree[0]["children"][0]["name"], "East China");

    // Users: dora is created in East China and signs in in another browser.
    admin.click("[data-test=admin-tab-users]").await;
    admin.find("[data-test=user-new]").await;
    admin
        .type_into("[data-test=user-new-account]", "dora")
        .await;
    admin
        .type_into("[data-test=user-new-password]", "dora-first-1")
        .await;
    admin
        .type_into("[data-test=user-new-name]", "Dora Chen")
        .await;
    choose(&admin, "[data-test=user-new-department]", &east).await;
    admin.click("[data-test=user-create]").await;
    admin
        .wait_until(
            "dora in the list",
            "return document.querySelector('[data-test=user][data-account=dora]')?.innerText.includes('East China')",
        )
        .await;
    admin
        .screenshot(&screenshots().join("admin-users.png"))
        .await;
    // The box "must choose a new password" was left checked: her first
    // sign-in asks for her own before anything else.
    let dora = driver.browser(&profiles.path().join("dora")).await;
    log_in(&dora, &node, "dora", "dora-first-1").await;
    dora.find("[data-test=password-forced]").await;
    choose_password(&dora, "dora-first-1", "dora-own-pass-2").await;
    dora.wait_until(
        "dora signed in",
        "return document.querySelector('[data-test=me]')?.innerText === 'dora'",
    )
    .await;
    assert!(
        dora.eval(
            "return document.querySelector('[data-test=admin-open]') === null",
            json!([])
        )
        .await
            == json!(true),
        "no console link for a non-admin"
    );

    // Groups: the Sales team is found by name; dora is added and made owner.
    admin.click("[data-test=admin-tab-groups]").await;
    admin.type_into("[data-test=groups-q]", "sales").await;
    admin.click("[data-test=group-open]").await;
    admin.type_into("[data-test=group-add]", "dora").await;
    admin.click("[data-test=group-add-go]").await;
    admin
        .wait_until(
            "dora a member",
            "return document.querySelector('[data-test=group-members] [data-account=dora]') !== null",
        )
        .await;
    admin
        .click("[data-test=group-members] [data-account=dora] [data-test=group-transfer]")
        .await;
    admin
        .wait_until(
            "dora the owner in the list",
            "return document.querySelector('[data-test=group][data-name=\"Sales team\"] [data-test=group-owner]')?.innerText === 'dora'",
        )
        .await;

    // Cluster: the one node, ready, with the sessions it gossips.
    admin.click("[data-test=admin-tab-cluster]").await;
    admin
        .wait_until(
            "the node ready with its sessions and every partition led",
            "const n = document.querySelectorAll('[data-test=cluster-node]'); const p = [...document.querySelectorAll('[data-test=cluster-partition-leader]')]; return n.length === 1 && n[0].dataset.ready === 'true' && Number(n[0].querySelector('[data-test=cluster-node-sessions]').innerText) >= 2 && p.length === 8 && p.every(e => e.innerText === '1')",
        )
        .await;
    admin
        .screenshot(&screenshots().join("admin-cluster.png"))
        .await;

    // Audit: filtered to the creation of users, dora's is the newest.
    admin.click("[data-test=admin-tab-audit]").await;
    admin
        .type_into("[data-test=audit-action]", "user.create")
        .await;
    admin.click("[data-test=audit-apply]").await;
    admin
        .wait_until(
            "only user creations, dora's first",
            "const e = [...document.querySelectorAll('[data-test=audit-entry]')]; return e.length === 3 && e.every(x => x.dataset.action === 'user.create') && e[0].innerText.includes('dora')",
        )
        .await;
    admin
        .screenshot(&screenshots().join("admin-audit.png"))
        .await;

    // Disabling dora in the console ends her session in her browser.
    admin.click("[data-test=admin-tab-users]").await;
    admin
        .click("[data-test=user][data-account=dora] [data-test=user-open]")
        .await;
    admin.click("[data-test=user-disable]").await;
    admin
        .wait_until(
            "dora shown disabled",
            "return document.querySelector('[data-test=user][data-account=dora] [data-test=user-state]')?.innerText.includes('disabled')",
        )
        .await;
    dora.find("[data-test=ended]").await;
    assert_eq!(
        node.rest_login("dora", "dora-own-pass-2", "pc")
            .await
            .status(),
        401,
        "a disabled account cannot sign in"
    );
    dora.close().await;
    admin.close().await;
}

#[tokio::test]
async fn a_user_who_is_not_an_administrator_gets_no_admin_console() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    node.create_users(&["alice"]).await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    alice.goto(&node.url("/admin")).await;
    alice.type_into("input[name=account]", "alice").await;
    alice
        .type_into("input[name=password]", &password("alice"))
        .await;
    alice.click("[data-test=login-submit]").await;
    alice.find("[data-test=admin-refused]").await;
    assert_eq!(
        alice
            .eval(
                "return document.querySelector('[data-test=admin]') === null && document.querySelector('[data-test^=admin-tab]') === null",
                json!([])
            )
            .await,
        json!(true)
    );
    alice
        .screenshot(&screenshots().join("admin-refused.png"))
        .await;
    alice.close().await;
}

#[tokio::test]
async fn a_colleague_is_found_in_the_org_tree_and_by_pinyin_and_messaged_from_the_card() {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob", "zhangwei"]).await;
    let admin = node.admin_token().await;
    let sales: serde_json::Value = node
        .http()
        .post(node.url("/api/v1/departments"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "Sales" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sales = sales["department_id"].as_u64().unwrap();
    for (id, body) in [
        (
            ids[1],
            json!({ "display_name": "Bob Li", "posts": [{ "department_id": sales, "title": "Lead" }] }),
        ),
        (
            ids[2],
            json!({ "display_name": "张伟", "phone": "+86 10 8888", "posts": [{ "department_id": sales, "title": "Rep" }] }),
        ),
    ] {
        let response = node
            .http()
            .patch(node.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    // Bob is online (a terminal session); 张伟 is not.
    let (_bob, _) = node
        .login(
            "bob",
            chorus::pb::DeviceClass::Pc,
            chorus::client::Transport::Tcp,
        )
        .await;

    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    sign_in(&alice, &node, "alice").await;
    alice.click("[data-test=tab-contacts]").await;
    alice
        .wait_until(
            "Sales with one of its two online",
            "return document.querySelector('[data-test=org-dept][data-name=Sales] [data-test=org-counts]')?.innerText === '1 online of 2'",
        )
        .await;
    alice.click("[data-test=org-dept][data-name=Sales]").await;
    alice
        .wait_until(
            "both members listed with their titles",
            "const p = [...document.querySelectorAll('[data-test=org] [data-test=person]')].map(e => e.innerText.replace(/\\s+/g, ' ')); return p.length === 2 && p[0] === 'Bob Li Lead' && p[1] === '张伟 Rep'",
        )
        .await;
    alice.screenshot(&screenshots().join("directory.png")).await;

    // By pinyin initials: zw finds 张伟, whose card opens a chat.
    alice.type_into("[data-test=dir-q]", "zw").await;
    alice.click("[data-test=dir-q-go]").await;
    alice
        .click("[data-test=dir-found] [data-test=person][data-account=zhangwei]")
        .await;
    alice
        .wait_until(
            "the card with the phone",
            "return document.querySelector('[data-test=card-phone]')?.innerText === '+86 10 8888'",
        )
        .await;
    alice.click("[data-test=card-chat]").await;
    alice.type_into("[data-test=composer]", "你好").await;
    alice.click("[data-test=send]").await;
    let (zhang, _) = node
        .login(
            "zhangwei",
            chorus::pb::DeviceClass::Pc,
            chorus::client::Transport::Tcp,
        )
        .await;
    let direct = chorus::ConversationId::direct(ids[0], ids[2]).to_string();
    common::wait_for("alice's message in the 1:1 log", || async {
        let page = zhang.pull(&direct, 0, 0).await.ok()?;
        page.messages
            .iter()
            .any(|m| common::text_of(m) == "你好")
            .then_some(())
    })
    .await;
    alice.close().await;
}

#[tokio::test]
async fn an_admin_sets_the_password_policy_and_resets_a_password_and_the_user_must_choose_a_new_one()
 {
    let node = TestNode::start_with(|config| config.web.dir = built_client()).await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let profiles = tempfile::tempdir().unwrap();
    let driver = Driver::start().await;
    let alice = driver.browser(&profiles.path().join("alice")).await;
    sign_in(&alice, &node, "alice").await;

    // The admin asks for 10 characters of 3 classes in the Policies tab.
    let admin = driver.browser(&profiles.path().join("admin")).await;
    admin.goto(&node.url("/admin#policies")).await;
    admin.type_into("input[name=account]", "admin").await;
    admin
        .type_into("input[name=password]", &node.admin_password)
        .await;
    admin.click("[data-test=login-submit]").await;
    admin.find("[data-test=password-policy]").await;
    admin
        .wait_until(
            "the policy loaded",
            "return !document.querySelector('[data-test=policy-save]').disabled",
        )
        .await;
    for (field, value) in [("min_length", "10"), ("min_classes", "3")] {
        let css = format!("[data-test=policy-{field}]");
        admin
            .eval(
                "const e = document.querySelector(arguments[0]); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); return true;",
                json!([css]),
            )
            .await;
        admin.type_into(&css, value).await;
    }
    admin.click("[data-test=policy-save]").await;
    admin
        .wait_until(
            "the policy saved",
            "return document.querySelector('[data-test=admin-said]')?.innerText.includes('saved')",
        )
        .await;
    let policy: serde_json::Value = node
        .http()
        .get(node.url("/api/v1/policies/password"))
        .bearer_auth(node.rest_token("bob", &password("bob"), "pc").await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            policy["min_length"].as_u64(),
            policy["min_classes"].as_u64()
        ),
        (Some(10), Some(3))
    );

    // A reset that falls short of the policy is refused and says why; one
    // within it ends alice's session in her browser.
    admin.click("[data-test=admin-tab-users]").await;
    admin
        .click("[data-test=user][data-account=alice] [data-test=user-open]")
        .await;
    admin
        .type_into("[data-test=user-reset-password]", "short")
        .await;
    admin.click("[data-test=user-reset-submit]").await;
    admin
        .wait_until(
            "the short password refused",
            "return document.querySelector('[data-test=admin-said]')?.innerText.includes('at least 10 characters')",
        )
        .await;
    admin
        .eval(
            "const e = document.querySelector('[data-test=user-reset-password]'); e.value = ''; e.dispatchEvent(new Event('input', {bubbles: true})); return true;",
            json!([]),
        )
        .await;
    admin
        .type_into("[data-test=user-reset-password]", "Temp-2026-pass")
        .await;
    admin.click("[data-test=user-reset-submit]").await;
    admin
        .wait_until(
            "the reset done and alice marked",
            "return document.querySelector('[data-test=admin-said]')?.innerText.includes('was reset') && document.querySelector('[data-test=user][data-account=alice] [data-test=user-state]')?.innerText.includes('must change password')",
        )
        .await;
    alice.find("[data-test=ended]").await;

    // Her next sign-in gets only the forced change, with the policy's
    // rule; a password of one class is caught in the page.
    log_in(&alice, &node, "alice", "Temp-2026-pass").await;
    alice
        .wait_until(
            "the forced change with the policy's rule",
            "return document.querySelector('[data-test=password-forced]') !== null && document.querySelector('[data-test=password-rule]')?.innerText.includes('At least 10 characters')",
        )
        .await;
    assert_eq!(
        alice
            .eval(
                "return document.querySelector('[data-test=me]') === null",
                json!([])
            )
            .await,
        json!(true),
        "nothing but the change is shown"
    );
    let said = "document.querySelector('[data-test=password-said]')?.innerText ?? ''";
    choose_password(&alice, "Temp-2026-pass", "onlylowercaseletters").await;
    alice
        .wait_until(
            "the missing classes named",
            &format!("return ({said}).includes('at least 3 of')"),
        )
        .await;
    alice
        .screenshot(&screenshots().join("password-forced.png"))
        .await;
    choose_password(&alice, "Temp-2026-pass", "Alice-own-2026").await;
    alice
        .wait_until(
            "a full session after the change, caught up",
            "return document.querySelector('[data-test=me]')?.innerText === 'alice' && !document.querySelector('.banner')",
        )
        .await;

    // Her own card: she sets her mobile, and bob sees it on hers.
    alice.click("[data-test=me]").await;
    alice.find("[data-test=profile-mobile]").await;
    alice
        .wait_until(
            "the profile loaded",
            "return !document.querySelector('[data-test=profile-save]').disabled",
        )
        .await;
    alice
        .type_into("[data-test=profile-mobile]", "138 0000 1234")
        .await;
    alice.click("[data-test=profile-save]").await;
    alice
        .wait_until(
            "the profile saved",
            "return document.querySelector('[data-test=profile-said]')?.innerText.includes('Saved')",
        )
        .await;
    let card: serde_json::Value = node
        .http()
        .get(node.url(&format!("/api/v1/contacts/{}", ids[0])))
        .bearer_auth(node.rest_token("bob", &password("bob"), "pc").await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(card["mobile"], "138 0000 1234", "{card}");
    assert_eq!(
        node.rest_login("alice", "Alice-own-2026", "pc")
            .await
            .status(),
        200
    );
    admin.close().await;
    alice.close().await;
}
