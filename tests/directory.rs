//! The org directory over REST: departments, user profiles and posts,
//! contact search and the audit trail (the OpenAPI document: rest_api.rs).

mod common;

use common::{TestNode, password};
use serde_json::{Value, json};

struct Api<'a> {
    node: &'a TestNode,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .node
            .http()
            .request(method, self.node.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// Creates a department and returns its id.
    async fn department(&self, name: &str, parent_id: u64, order: i32) -> u64 {
        let (status, body) = self
            .post(
                "/api/v1/departments",
                json!({ "name": name, "parent_id": parent_id, "order": order }),
            )
            .await;
        assert_eq!(status, 201, "creating {name}: {body}");
        body["department_id"].as_u64().unwrap()
    }
}

async fn admin_api(node: &TestNode) -> Api<'_> {
    Api {
        node,
        token: node.admin_token().await,
    }
}

async fn user_api<'a>(node: &'a TestNode, account: &str) -> Api<'a> {
    let reply: Value = node
        .rest_login(account, &password(account), "web")
        .await
        .json()
        .await
        .unwrap();
    Api {
        node,
        token: reply["token"].as_str().unwrap().to_string(),
    }
}

fn find<'v>(nodes: &'v Value, name: &str) -> &'v Value {
    nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no department {name} in {nodes}"))
}

fn names(nodes: &Value) -> Vec<&str> {
    nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn department_tree_with_counts_moves_and_deletes() {
    let node = TestNode::start().await;
    // Users first: `create_users` logs the admin in again, which replaces
    // the admin's earlier web token.
    let ids = node.create_users(&["alice", "bob"]).await;
    let (alice, bob) = (ids[0], ids[1]);
    let api = admin_api(&node).await;
    let hq = api.department("HQ", 0, 0).await;
    let engineering = api.department("Engineering", hq, 2).await;
    let sales = api.department("Sales", hq, 1).await;
    let platform = api.department("Platform", engineering, 0).await;
    let storage = api.department("Storage", platform, 0).await;
    let (status, _) = api
        .post(
            "/api/v1/departments",
            json!({ "name": "Storage", "parent_id": platform }),
        )
        .await;
    assert_eq!(status, 409, "sibling names are unique");

    // Alice holds posts in Storage (depth 4) and in Sales.
    let (status, user) = api
        .patch(
            &format!("/api/v1/users/{alice}"),
            json!({ "posts": [
                { "department_id": storage, "title": "Engineer" },
                { "department_id": sales }
            ], "title": "Engineer", "email": "alice@example.com" }),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["departments"], json!([storage, sales]));
    assert_eq!(user["email"], "alice@example.com");
    let (status, _) = api
        .patch(
            &format!("/api/v1/users/{bob}"),
            json!({ "posts": [{ "department_id": platform }] }),
        )
        .await;
    assert_eq!(status, 200);

    let (status, tree) = user_api(&node, "bob")
        .await
        .get("/api/v1/departments/tree")
        .await;
    assert_eq!(status, 200, "any logged-in user reads the tree");
    let hq_node = find(&tree, "HQ");
    assert_eq!(hq_node["total_count"], 3, "{tree}");
    assert_eq!(hq_node["member_count"], 0);
    assert_eq!(
        names(&hq_node["children"]),
        ["Sales", "Engineering"],
        "children by order"
    );
    let eng_node = find(&hq_node["children"], "Engineering");
    assert_eq!(eng_node["total_count"], 2);
    let platform_node = find(&eng_node["children"], "Platform");
    assert_eq!(
        (
            &platform_node["member_count"],
            &platform_node["total_count"]
        ),
        (&json!(1), &json!(2))
    );
    let storage_node = find(&platform_node["children"], "Storage");
    assert_eq!(storage_node["member_count"], 1);
    assert_eq!(find(&hq_node["children"], "Sales")["member_count"], 1);

    // Moving a department under its own descendant (or itself) is a cycle: CONFLICT.
    for parent in [storage, platform, engineering] {
        let (status, body) = api
            .post(
                &format!("/api/v1/departments/{engineering}/move"),
                json!({ "parent_id": parent }),
            )
            .await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "CONFLICT");
    }
    let (status, _) = api
        .post(
            &format!("/api/v1/departments/{platform}/move"),
            json!({ "parent_id": 999 }),
        )
        .await;
    assert_eq!(status, 404);
    let (status, moved) = api
        .post(
            &format!("/api/v1/departments/{platform}/move"),
            json!({ "parent_id": sales }),
        )
        .await;
    assert_eq!(status, 200, "{moved}");
    let (status, renamed) = api
        .patch(
            &format!("/api/v1/departments/{sales}"),
            json!({ "name": "Sales & Platform", "order": 5 }),
        )
        .await;
    assert_eq!((status, renamed["order"].as_i64()), (200, Some(5)));
    let (_, tree) = api.get("/api/v1/departments/tree").await;
    let hq_node = find(&tree, "HQ");
    assert_eq!(
        names(&hq_node["children"]),
        ["Engineering", "Sales & Platform"]
    );
    assert_eq!(find(&hq_node["children"], "Engineering")["total_count"], 0);
    assert_eq!(
        find(&hq_node["children"], "Sales & Platform")["total_count"],
        3
    );

    // Deleting refuses a department with sub-departments or members.
    let (status, _) = api.delete(&format!("/api/v1/departments/{sales}")).await;
    assert_eq!(status, 409);
    let (status, _) = api.delete(&format!("/api/v1/departments/{storage}")).await;
    assert_eq!(status, 409, "Alice holds a post in Storage");
    let (status, _) = api
        .delete(&format!("/api/v1/departments/{engineering}"))
        .await;
    assert_eq!(status, 204);
    let (status, _) = api.delete(&format!("/api/v1/users/{alice}")).await;
    assert_eq!(status, 204);
    let (status, _) = api.delete(&format!("/api/v1/departments/{storage}")).await;
    assert_eq!(status, 204, "empty once Alice is gone");
    let (_, tree) = api.get("/api/v1/departments/tree").await;
    assert_eq!(find(&tree, "HQ")["total_count"], 1, "{tree}");
}

#[tokio::test]
async fn only_admins_write_the_directory() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["mallory"]).await;
    let api = user_api(&node, "mallory").await;
    let writes = [
        (
            reqwest::Method::POST,
            "/api/v1/departments".to_string(),
            Some(json!({ "name": "X" })),
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/departments/1".to_string(),
            Some(json!({ "name": "X" })),
        ),
        (
            reqwest::Method::POST,
            "/api/v1/departments/1/move".to_string(),
            Some(json!({ "parent_id": 0 })),
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/departments/1".into(),
            None,
        ),
        (
            reqwest::Method::PATCH,
            format!("/api/v1/users/{}", ids[0]),
            Some(json!({ "admin": true })),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/v1/users/{}", ids[0]),
            None,
        ),
        (reqwest::Method::GET, "/api/v1/admin/audit".into(), None),
    ];
    for (method, path, body) in writes {
        let (status, reply) = api.call(method.clone(), &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {reply}");
        assert_eq!(reply["code"], "FORBIDDEN");
    }
    let anonymous = Api {
        node: &node,
        token: "nope".into(),
    };
    assert_eq!(anonymous.get("/api/v1/departments/tree").await.0, 401);
    assert_eq!(anonymous.get("/api/v1/contacts?q=a").await.0, 401);
}

#[tokio::test]
async fn contact_search_by_name_account_and_pinyin_initials() {
    let node = TestNode::start().await;
    let api = admin_api(&node).await;
    let team = api.department("研发部", 0, 0).await;
    let create = |account: &'static str, name: &'static str| {
        let api = &api;
        async move {
            let (status, body) = api
                .post(
                    "/api/v1/users",
                    json!({ "account": account, "password": password(account),
                            "display_name": name, "departments": [team] }),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["user_id"].as_u64().unwrap()
        }
    };
    let zhang = create("zhangwei", "张伟").await;
    let wang = create("wangfang", "王芳").await;
    let grace = create("grace.hopper", "Grace Hopper").await;
    let searcher = user_api(&node, "wangfang").await;
    let search = |q: &'static str| {
        let searcher = &searcher;
        async move {
            let (status, body) = searcher
                .get(&format!("/api/v1/contacts?q={}", urlencode(q)))
                .await;
            assert_eq!(status, 200, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|c| c["user_id"].as_u64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("zw").await, [zhang], "pinyin initials");
    assert_eq!(search("ZW").await, [zhang]);
    assert_eq!(search("wf").await, [wang]);
    assert_eq!(search("grace.").await, [grace], "account prefix");
    assert_eq!(search("hopp").await, [grace], "name substring");
    assert_eq!(search("伟").await, [zhang], "Chinese name substring");
    assert!(
        search("fang").await.is_empty(),
        "accounts match by prefix only"
    );

    let (_, contacts) = searcher.get("/api/v1/contacts?q=zw").await;
    assert_eq!(contacts[0]["account"], "zhangwei");
    assert_eq!(contacts[0]["display_name"], "张伟");
    assert_eq!(contacts[0]["departments"][0]["name"], "研发部");
    assert_eq!(contacts[0]["departments"][0]["department_id"], team);

    // Disabled users are not found and cannot log in.
    let (status, _) = api
        .patch(
            &format!("/api/v1/users/{zhang}"),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(search("zw").await.is_empty());
    let login = node
        .rest_login("zhangwei", &password("zhangwei"), "web")
        .await;
    assert_eq!(login.status(), 401);
    let (status, _) = api
        .patch(
            &format!("/api/v1/users/{zhang}"),
            json!({ "disabled": false }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(search("zw").await, [zhang]);
    let (status, _) = searcher.get("/api/v1/contacts?q=").await;
    assert_eq!(status, 400);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn admin_writes_leave_an_audit_trail() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice"]).await;
    let api = admin_api(&node).await;
    let (_, me) = api.get("/api/v1/me").await;
    let admin_id = me["user_id"].as_u64().unwrap();
    let department = api.department("Audit", 0, 0).await;
    let (status, _) = api
        .patch(
            &format!("/api/v1/users/{}", ids[0]),
            json!({ "phone": "+86 10 1234" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, group) = api
        .post(
            "/api/v1/groups",
            json!({ "name": "Admins", "members": ids }),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = api
        .post(
            &format!("/api/v1/departments/{department}/move"),
            json!({ "parent_id": department }),
        )
        .await;
    assert_eq!(status, 409, "a refused write leaves no entry");

    let (status, entries) = api.get("/api/v1/admin/audit").await;
    assert_eq!(status, 200);
    let entries = entries.as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "group.create",
            "user.update",
            "department.create",
            "user.create"
        ],
        "newest first"
    );
    for entry in entries {
        assert_eq!(entry["actor"], admin_id);
        assert_eq!(entry["ip"], "127.0.0.1");
        assert!(entry["at_ms"].as_i64().unwrap() > 0);
    }
    assert_eq!(entries[1]["target"], format!("user:{}", ids[0]));
    assert_eq!(entries[1]["detail"], json!({ "phone": "+86 10 1234" }));
    assert_eq!(entries[0]["target"], format!("group:{}", group["group_id"]));
    assert_eq!(entries[2]["target"], format!("department:{department}"));
    assert_eq!(entries[3]["target"], format!("user:{}", ids[0]));
    assert_eq!(entries[3]["detail"]["account"], "alice");

    let before = entries[1]["seq"].as_u64().unwrap();
    let (_, page) = api
        .get(&format!("/api/v1/admin/audit?limit=1&before={before}"))
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["action"], "department.create");
}

#[tokio::test]
async fn demo_seed_builds_a_department_tree() {
    let node = TestNode::start().await;
    let created = node.node.seed_demo().await.unwrap();
    assert_eq!(created.len(), 5);
    assert!(
        node.node.seed_demo().await.unwrap().is_empty(),
        "seeding again changes nothing"
    );
    let api = admin_api(&node).await;
    let (_, tree) = api.get("/api/v1/departments/tree").await;
    assert_eq!(names(&tree), ["Branch Shanghai", "Headquarters"]);
    let hq = find(&tree, "Headquarters");
    // Carol holds posts in Sales and in Engineering/Clients: counted twice.
    assert_eq!(hq["total_count"], 5, "{tree}");
    let engineering = find(&hq["children"], "Engineering");
    assert_eq!(
        find(&engineering["children"], "Platform")["member_count"],
        1
    );
    assert_eq!(find(&engineering["children"], "Clients")["member_count"], 2);
    let (_, contacts) = api.get("/api/v1/contacts?q=carol").await;
    let departments: Vec<&str> = contacts[0]["departments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(departments, ["Sales", "Clients"]);
}

#[tokio::test]
async fn the_audit_trail_is_filtered_by_actor_action_target_and_time() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let api = admin_api(&node).await;
    // A second admin, whose writes the filter by actor keeps apart.
    let (status, _) = api
        .post(
            "/api/v1/users",
            json!({ "account": "root2", "password": password("root2"), "admin": true }),
        )
        .await;
    assert_eq!(status, 201);
    let second = user_api(&node, "root2").await;
    let sales = second.department("Sales", 0, 0).await;
    let started = api.get("/api/v1/admin/audit?limit=1").await.1[0]["at_ms"]
        .as_i64()
        .unwrap();
    for id in &ids {
        let (status, _) = api
            .patch(
                &format!("/api/v1/users/{id}"),
                json!({ "title": "Engineer" }),
            )
            .await;
        assert_eq!(status, 200);
    }

    let actions = |entries: &Value| -> Vec<String> {
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["target"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (status, by_second) = api.get("/api/v1/admin/audit?actor=root2").await;
    assert_eq!(status, 200);
    assert_eq!(
        actions(&by_second),
        [format!("department.create department:{sales}")]
    );
    assert_eq!(by_second[0]["actor_account"], "root2");
    // `user` keeps user.create and user.update, not a prefix of a word.
    let (_, users) = api.get("/api/v1/admin/audit?action=user").await;
    assert_eq!(users.as_array().unwrap().len(), 5, "{users}");
    assert!(
        api.get("/api/v1/admin/audit?action=use")
            .await
            .1
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (_, bob) = api
        .get(&format!(
            "/api/v1/admin/audit?action=user.update&target=user:{}",
            ids[1]
        ))
        .await;
    assert_eq!(actions(&bob), [format!("user.update user:{}", ids[1])]);
    assert_eq!(bob[0]["actor_account"], "admin");
    let (_, since) = api
        .get(&format!(
            "/api/v1/admin/audit?since_ms={started}&action=user.update"
        ))
        .await;
    assert_eq!(since.as_array().unwrap().len(), 2);
    let (_, until) = api
        .get(&format!(
            "/api/v1/admin/audit?until_ms={}&action=user.update",
            started
        ))
        .await;
    assert!(until.as_array().unwrap().is_empty(), "{until}");

    // Paging through a filter: the header names the next page until the last.
    let response = node
        .http()
        .get(node.url("/api/v1/admin/audit?action=user&limit=2"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    let next: u64 = response.headers()["x-chorus-next-before"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let first: Value = response.json().await.unwrap();
    assert_eq!(first.as_array().unwrap().len(), 2);
    let (_, rest) = api
        .get(&format!("/api/v1/admin/audit?action=user&before={next}"))
        .await;
    assert_eq!(rest.as_array().unwrap().len(), 3);
    let last = node
        .http()
        .get(node.url(&format!("/api/v1/admin/audit?action=user&before={next}")))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert!(last.headers().get("x-chorus-next-before").is_none());

    for (query, code) in [
        ("actor=nobody", "NOT_FOUND"),
        ("since_ms=5&until_ms=5", "INVALID"),
        ("since_ms=-1", "INVALID"),
        ("colour=red", "INVALID"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/admin/audit?{query}")).await;
        assert_eq!(body["code"], code, "{query}: {status} {body}");
    }
}

#[tokio::test]
async fn an_admin_lists_every_group_by_name_in_pages_and_others_may_not() {
    let node = TestNode::start().await;
    let ids = node.create_users(&["alice", "bob"]).await;
    let api = admin_api(&node).await;
    let alice = user_api(&node, "alice").await;
    let mut groups = Vec::new();
    for name in ["Sales east", "Sales west", "Engineering"] {
        let (status, group) = alice
            .post(
                "/api/v1/groups",
                json!({ "name": name, "members": [ids[1]] }),
            )
            .await;
        assert_eq!(status, 201);
        groups.push(group["group_id"].as_u64().unwrap());
    }
    let (status, all) = api.get("/api/v1/groups").await;
    assert_eq!(status, 200);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0]["name"], "Sales east");
    assert_eq!(all[0]["owner"], ids[0]);
    assert_eq!(all[0]["member_count"], 2);
    assert_eq!(all[0]["conversation"], format!("g:{}", groups[0]));
    let (_, sales) = api.get("/api/v1/groups?q=SALES").await;
    assert_eq!(sales.as_array().unwrap().len(), 2);

    let response = node
        .http()
        .get(node.url("/api/v1/groups?limit=2"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-chorus-next-after"],
        groups[1].to_string().as_str()
    );
    let (_, rest) = api
        .get(&format!("/api/v1/groups?after={}", groups[1]))
        .await;
    assert_eq!(rest[0]["name"], "Engineering");
    assert_eq!(rest.as_array().unwrap().len(), 1);

    let (status, refused) = alice.get("/api/v1/groups").await;
    assert_eq!((status, refused["code"].as_str()), (403, Some("FORBIDDEN")));
}

#[tokio::test]
async fn anyone_browses_a_departments_members_and_opens_a_contact_card() {
    let node = TestNode::start().await;
    let ids = node
        .create_users(&["alice", "bob", "carol", "dave", "erin"])
        .await;
    let api = admin_api(&node).await;
    let sales = api.department("Sales", 0, 0).await;
    let east = api.department("East", sales, 0).await;
    for (i, title) in [(1, "Lead"), (2, "Rep"), (3, "Rep")] {
        let (status, _) = api
            .patch(
                &format!("/api/v1/users/{}", ids[i]),
                json!({ "posts": [{ "department_id": sales, "title": title }], "phone": "+86 21 555" }),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = api
        .patch(
            &format!("/api/v1/users/{}", ids[4]),
            json!({ "posts": [{ "department_id": east, "title": "Rep" }] }),
        )
        .await;
    assert_eq!(status, 200);
    // Dave is disabled: he is no longer listed.
    let (status, _) = api
        .patch(
            &format!("/api/v1/users/{}", ids[3]),
            json!({ "disabled": true }),
        )
        .await;
    assert_eq!(status, 200);

    let alice = user_api(&node, "alice").await;
    let (status, members) = alice
        .get(&format!("/api/v1/departments/{sales}/members"))
        .await;
    assert_eq!(status, 200, "{members}");
    let listed: Vec<(&str, &str)> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["account"].as_str().unwrap(), m["title"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [("bob", "Lead"), ("carol", "Rep")],
        "not East's erin, not disabled dave"
    );

    let first = node
        .http()
        .get(node.url(&format!("/api/v1/departments/{sales}/members?limit=1")))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    let next = first.headers()["x-chorus-next-after"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(next, ids[1].to_string());
    let last = node
        .http()
        .get(node.url(&format!(
            "/api/v1/departments/{sales}/members?limit=1&after={next}"
        )))
        .bearer_auth(&alice.token)
        .send()
        .await
        .unwrap();
    assert!(last.headers().get("x-chorus-next-after").is_none());
    let page: Value = last.json().await.unwrap();
    assert_eq!(page[0]["account"], "carol");

    let (status, card) = alice.get(&format!("/api/v1/contacts/{}", ids[1])).await;
    assert_eq!(status, 200);
    assert_eq!(card["account"], "bob");
    assert_eq!(card["phone"], "+86 21 555");
    assert_eq!(card["departments"][0]["name"], "Sales");
    assert_eq!(card["departments"][0]["title"], "Lead");
    assert_eq!(card["disabled"], false);
    let direct = format!("d:{}:{}", ids[0].min(ids[1]), ids[0].max(ids[1]));
    assert_eq!(card["direct_conversation"], direct);
    let (_, own) = alice.get(&format!("/api/v1/contacts/{}", ids[0])).await;
    assert_eq!(own["direct_conversation"], "");

    for (path, code) in [
        ("/api/v1/departments/999/members".to_string(), "NOT_FOUND"),
        ("/api/v1/departments/x/members".to_string(), "INVALID"),
        (
            format!("/api/v1/departments/{sales}/members?sort=name"),
            "INVALID",
        ),
        ("/api/v1/contacts/999".to_string(), "NOT_FOUND"),
    ] {
        let (_, body) = alice.get(&path).await;
        assert_eq!(body["code"], code, "{path}: {body}");
    }
}
