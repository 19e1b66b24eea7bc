import assert from "node:assert/strict";
import { test } from "node:test";

import { AdminApi, type DepartmentNode, flatten, subtree } from "./admin/api.js";
import type { Fetch } from "./rest.js";

function recorder(answers: Response[]): { fetchFn: Fetch; asked: { url: string; method: string; auth: string; body?: unknown }[] } {
  const asked: { url: string; method: string; auth: string; body?: unknown }[] = [];
  const fetchFn: Fetch = async (url, init) => {
    asked.push({
      url,
      method: init.method ?? "GET",
      auth: init.headers.Authorization,
      body: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
    });
    return answers[asked.length - 1];
  };
  return { fetchFn, asked };
}

test("the audit filter sends only the fields given, and the next page comes from the header", async () => {
  const { fetchFn, asked } = recorder([
    new Response(JSON.stringify([{ seq: 9, action: "user.create" }]), { headers: { "x-chorus-next-before": "9" } }),
    new Response(JSON.stringify([])),
  ]);
  const api = new AdminApi("tok", fetchFn);
  const page = await api.audit({ actor: "root", action: "", target: "user:3", since_ms: 1000, until_ms: undefined });
  assert.equal(asked[0].url, "/api/v1/admin/audit?actor=root&target=user%3A3&since_ms=1000&limit=50");
  assert.equal(asked[0].auth, "Bearer tok");
  assert.deepEqual(page, { items: [{ seq: 9, action: "user.create" }], next: 9 });
  const last = await api.audit({}, 9);
  assert.equal(asked[1].url, "/api/v1/admin/audit?before=9&limit=50");
  assert.equal(last.next, null);
});

test("writes carry their JSON body and a refusal rejects with the server's message", async () => {
  const { fetchFn, asked } = recorder([
    new Response(JSON.stringify({ user_id: 5, account: "dora" }), { status: 201 }),
    new Response(JSON.stringify({ code: "CONFLICT", message: "account 'dora' exists" }), { status: 409 }),
  ]);
  const api = new AdminApi("tok", fetchFn);
  const made = await api.createUser({ account: "dora", password: "secret-123", departments: [2] });
  assert.equal(made.user_id, 5);
  assert.deepEqual(asked[0], {
    url: "/api/v1/users",
    method: "POST",
    auth: "Bearer tok",
    body: { account: "dora", password: "secret-123", departments: [2] },
  });
  await assert.rejects(api.createUser({ account: "dora", password: "secret-123" }), /account 'dora' exists/);
});

test("groups are searched by name and paged by the id the server names", async () => {
  const { fetchFn, asked } = recorder([new Response("[]", { headers: { "x-chorus-next-after": "40" } })]);
  const page = await new AdminApi("tok", fetchFn).groups(" Sales team ", 0, 20);
  assert.equal(asked[0].url, "/api/v1/groups?q=Sales%20team&limit=20");
  assert.equal(page.next, 40);
});

test("a tree flattens depth first and a subtree holds a department and all below it", () => {
  const dept = (id: number, parent: number, children: DepartmentNode[] = []): DepartmentNode => ({
    department_id: id,
    parent_id: parent,
    name: `d${id}`,
    order: 0,
    member_count: 0,
    total_count: 0,
    online_count: 0,
    online_total: 0,
    children,
  });
  const tree = [dept(1, 0, [dept(2, 1, [dept(3, 2)]), dept(4, 1)]), dept(5, 0)];
  assert.deepEqual(
    flatten(tree).map((d) => [d.node.department_id, d.depth]),
    [
      [1, 0],
      [2, 1],
      [3, 2],
      [4, 1],
      [5, 0],
    ],
  );
  assert.deepEqual([...subtree(tree[0].children[0])], [2, 3]);
});
