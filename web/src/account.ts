// The signed-in user's own account over REST: their record, the contact
// fields they may change themselves, and the password policy with the
// check the page makes before asking the server (which checks again).

import { type Fetch, pageFetch, refusal } from "./rest.js";

export interface PasswordPolicy {
  min_length: number;
  min_classes: number;
  history: number;
  max_age_days: number;
}

/** The policy the server applies until an administrator sets one. */
export const DEFAULT_POLICY: PasswordPolicy = { min_length: 8, min_classes: 1, history: 0, max_age_days: 0 };

export interface Me {
  user_id: number;
  account: string;
  display_name: string;
  admin: boolean;
  title: string;
  phone: string;
  email: string;
  mobile: string;
  posts: { department_id: number; title: string }[];
  must_change_password: boolean;
}

/** The contact fields a user changes themselves; the rest is the organisation's. */
export type OwnFields = Partial<Pick<Me, "phone" | "email" | "mobile">>;

async function call<T>(fetchFn: Fetch, url: string, token: string, method = "GET", body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetchFn(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw await refusal(response);
  return (response.status === 204 ? null : await response.json()) as T;
}

export function me(token: string, fetchFn: Fetch = pageFetch): Promise<Me> {
  return call<Me>(fetchFn, "/api/v1/me", token);
}

export function updateMe(token: string, fields: OwnFields, fetchFn: Fetch = pageFetch): Promise<Me> {
  return call<Me>(fetchFn, "/api/v1/me", token, "PATCH", fields);
}

export function passwordPolicy(token: string, fetchFn: Fetch = pageFetch): Promise<PasswordPolicy> {
  return call<PasswordPolicy>(fetchFn, "/api/v1/policies/password", token);
}

export function setPasswordPolicy(token: string, policy: PasswordPolicy, fetchFn: Fetch = pageFetch): Promise<PasswordPolicy> {
  return call<PasswordPolicy>(fetchFn, "/api/v1/policies/password", token, "PUT", policy);
}

/** How many classes a password mixes: lowercase, uppercase, digits, the rest (as the server counts). */
export function classes(password: string): number {
  const seen = new Set<number>();
  for (const c of password) {
    const lower = c.toLowerCase() === c && c.toUpperCase() !== c;
    const upper = c.toUpperCase() === c && c.toLowerCase() !== c;
    seen.add(lower ? 0 : upper ? 1 : c >= "0" && c <= "9" ? 2 : 3);
  }
  return seen.size;
}

/** What a new password lacks under the policy: "short", "classes", or null when it passes. */
export function weakness(policy: PasswordPolicy, password: string): "short" | "classes" | null {
  if ([...password].length < policy.min_length) return "short";
  if (classes(password) < policy.min_classes) return "classes";
  return null;
}
