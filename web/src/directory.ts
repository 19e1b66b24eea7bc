// The organisation directory as every employee reads it over REST: the
// tree with online counts, a department's members, contact search and a
// contact card.

import type { DepartmentNode } from "./admin/api.js";
import { type Fetch, pageFetch, refusal } from "./rest.js";

export type { DepartmentNode };

export interface DepartmentMember {
  user_id: number;
  account: string;
  display_name: string;
  title: string;
}

export interface ContactDepartment {
  department_id: number;
  name: string;
  title: string;
}

export interface Contact {
  user_id: number;
  account: string;
  display_name: string;
  departments: ContactDepartment[];
}

export interface ContactCard extends Contact {
  title: string;
  phone: string;
  mobile: string;
  email: string;
  disabled: boolean;
  direct_conversation: string;
}

async function get(token: string, url: string, fetchFn: Fetch): Promise<Response> {
  const response = await fetchFn(url, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) throw await refusal(response);
  return response;
}

export async function departmentTree(token: string, fetchFn: Fetch = pageFetch): Promise<DepartmentNode[]> {
  return (await (await get(token, "/api/v1/departments/tree", fetchFn)).json()) as DepartmentNode[];
}

/** A page of a department's members, and the `after` of the next (null: none). */
export async function departmentMembers(
  token: string,
  departmentId: number,
  after = 0,
  fetchFn: Fetch = pageFetch,
): Promise<{ members: DepartmentMember[]; next: number | null }> {
  const url = `/api/v1/departments/${departmentId}/members${after ? `?after=${after}` : ""}`;
  const response = await get(token, url, fetchFn);
  const next = response.headers.get("x-chorus-next-after");
  return { members: (await response.json()) as DepartmentMember[], next: next ? Number(next) : null };
}

/** Contacts whose name contains `q`, whose account begins with it, or whose pinyin initials are it. */
export async function searchContacts(token: string, q: string, fetchFn: Fetch = pageFetch): Promise<Contact[]> {
  return (await (await get(token, `/api/v1/contacts?q=${encodeURIComponent(q.trim())}`, fetchFn)).json()) as Contact[];
}

export async function contactCard(token: string, userId: number, fetchFn: Fetch = pageFetch): Promise<ContactCard> {
  return (await (await get(token, `/api/v1/contacts/${userId}`, fetchFn)).json()) as ContactCard;
}
