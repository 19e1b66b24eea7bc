import assert from "node:assert/strict";
import { test } from "node:test";

import { departmentMembers, searchContacts } from "./directory.js";
import type { Fetch } from "./rest.js";

test("a department's members page on the id the server names, and a search is encoded", async () => {
  const urls: string[] = [];
  const answers = [
    new Response(JSON.stringify([{ user_id: 4, account: "bob", display_name: "Bob", title: "Lead" }]), {
      headers: { "x-chorus-next-after": "4" },
    }),
    new Response("[]"),
    new Response("[]"),
  ];
  const fetchFn: Fetch = async (url, init) => {
    assert.equal(init.headers.Authorization, "Bearer tok");
    urls.push(url);
    return answers[urls.length - 1];
  };
  const first = await departmentMembers("tok", 3, 0, fetchFn);
  assert.equal(first.next, 4);
  assert.equal(first.members[0].title, "Lead");
  const last = await departmentMembers("tok", 3, 4, fetchFn);
  assert.equal(last.next, null);
  await searchContacts("tok", " 张 伟 ", fetchFn);
  assert.deepEqual(urls, [
    "/api/v1/departments/3/members",
    "/api/v1/departments/3/members?after=4",
    `/api/v1/contacts?q=${encodeURIComponent("张 伟")}`,
  ]);
});
