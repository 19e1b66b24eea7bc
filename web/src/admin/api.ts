// The REST calls of the admin console (/admin), each with the admin's
// token: the directory, users, groups, the cluster and the audit trail.
// The shapes are the server's (GET /api/openapi.json); only what the
// console reads is typed.

import { type Fetch, type FetchInit, pageFetch, refusal } from "../rest.js";

export interface DepartmentNode {
  department_id: number;
  parent_id: number;
  name: string;
  order: number;
  member_count: number;
  total_count: number;
  online_count: number;
  online_total: number;
  children: DepartmentNode[];
}

export interface Post {
  department_id: number;
  title: string;
}

export interface User {
  user_id: number;
  account: string;
  display_name: string;
  admin: boolean;
  disabled: boolean;
  title: string;
  phone: string;
  email: string;
  mobile: string;
  departments: number[];
  posts: Post[];
  must_change_password: boolean;
}

export interface NewUser {
  account: string;
  password: string;
  display_name?: string;
  admin?: boolean;
  departments?: number[];
  must_change_password?: boolean;
}

export interface UserChange {
  display_name?: string;
  title?: string;
  phone?: string;
  email?: string;
  mobile?: string;
  disabled?: boolean;
  posts?: Post[];
}

export interface GroupSummary {
  group_id: number;
  conversation: string;
  name: string;
  owner: number;
  member_count: number;
  temporary: boolean;
  created_at_ms: number;
  dissolved_at_ms: number;
}

export interface Group {
  group_id: number;
  conversation: string;
  name: string;
  owner: number;
  members: number[];
  admins: number[];
  dissolved_at_ms: number;
  temporary: boolean;
}

export interface NodeLoad {
  sessions: number;
  homes: number;
  actors: number;
}

export interface ClusterStatus {
  node_id: number;
  nodes: { node_id: number; peer_addr: string; tcp_addr: string; http_addr: string }[];
  meta_leader: number | null;
  meta_voters: number[];
  partitions: { partition: number; leader: number | null; voters: number[]; placement: number[]; epoch: number; last_applied: number | null }[];
  actors: [number, number];
  sessions: number;
  view: { node_id: number; generation: number; peer_addr: string; tcp_addr: string; http_addr: string }[];
  view_id: number;
  online: Record<string, number>;
  load: Record<string, NodeLoad>;
}

export interface AuditEntry {
  seq: number;
  actor: number;
  actor_account: string;
  action: string;
  target: string;
  detail: unknown;
  ip: string;
  at_ms: number;
}

/** What the audit list is limited to; an empty field keeps everything. */
export interface AuditFilter {
  actor?: string;
  action?: string;
  target?: string;
  since_ms?: number;
  until_ms?: number;
}

/** A page of a list and where the next one starts (null: none follows). */
export interface Page<T> {
  items: T[];
  next: number | null;
}

function query(params: Record<string, string | number | undefined>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== "" && v !== 0)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  return parts.length ? `?${parts.join("&")}` : "";
}

function nextOf(response: Response, header: string): number | null {
  const value = response.headers.get(header);
  return value ? Number(value) : null;
}

export class AdminApi {
  constructor(
    private readonly token: string,
    private readonly fetchFn: Fetch = pageFetch,
  ) {}

  private async send(method: string, url: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}` };
    const init: FetchInit = { method, headers };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await this.fetchFn(url, init);
    if (!response.ok) throw await refusal(response);
    return response;
  }

  private async json<R>(method: string, url: string, body?: unknown): Promise<R> {
    return (await (await this.send(method, url, body)).json()) as R;
  }

  /** The caller, to tell an admin from anyone else. */
  me(): Promise<User> {
    return this.json("GET", "/api/v1/me");
  }

  departments(): Promise<DepartmentNode[]> {
    return this.json("GET", "/api/v1/departments/tree");
  }

  createDepartment(name: string, parentId: number, order = 0): Promise<{ department_id: number }> {
    return this.json("POST", "/api/v1/departments", { name, parent_id: parentId, order });
  }

  changeDepartment(id: number, change: { name?: string; order?: number }): Promise<unknown> {
    return this.json("PATCH", `/api/v1/departments/${id}`, change);
  }

  moveDepartment(id: number, parentId: number): Promise<unknown> {
    return this.json("POST", `/api/v1/departments/${id}/move`, { parent_id: parentId });
  }

  async deleteDepartment(id: number): Promise<void> {
    await this.send("DELETE", `/api/v1/departments/${id}`);
  }

  users(): Promise<User[]> {
    return this.json("GET", "/api/v1/users");
  }

  createUser(user: NewUser): Promise<User> {
    return this.json("POST", "/api/v1/users", user);
  }

  changeUser(id: number, change: UserChange): Promise<User> {
    return this.json("PATCH", `/api/v1/users/${id}`, change);
  }

  async deleteUser(id: number): Promise<void> {
    await this.send("DELETE", `/api/v1/users/${id}`);
  }

  /** Sets a user's password; their sessions end, and by default the next sign-in must change it. */
  async resetPassword(id: number, password: string, mustChange: boolean): Promise<void> {
    await this.send("PUT", `/api/v1/users/${id}/password`, { password, must_change_password: mustChange });
  }

  async groups(q: string, after = 0, limit = 100): Promise<Page<GroupSummary>> {
    const response = await this.send("GET", `/api/v1/groups${query({ q: q.trim(), after, limit })}`);
    return { items: (await response.json()) as GroupSummary[], next: nextOf(response, "x-chorus-next-after") };
  }

  group(id: number): Promise<Group> {
    return this.json("GET", `/api/v1/groups/${id}`);
  }

  changeMembers(id: number, add: number[], remove: number[]): Promise<unknown> {
    return this.json("POST", `/api/v1/groups/${id}/members`, { add, remove });
  }

  transferOwner(id: number, userId: number): Promise<unknown> {
    return this.json("POST", `/api/v1/groups/${id}/changes`, { transfer_owner: userId });
  }

  cluster(): Promise<ClusterStatus> {
    return this.json("GET", "/api/v1/admin/cluster");
  }

  async audit(filter: AuditFilter, before = 0, limit = 50): Promise<Page<AuditEntry>> {
    const response = await this.send("GET", `/api/v1/admin/audit${query({ ...filter, before, limit })}`);
    return { items: (await response.json()) as AuditEntry[], next: nextOf(response, "x-chorus-next-before") };
  }
}

/** Every department of a tree, depth first, with its depth (0: top level). */
export function flatten(tree: DepartmentNode[], depth = 0): { node: DepartmentNode; depth: number }[] {
  return tree.flatMap((node) => [{ node, depth }, ...flatten(node.children, depth + 1)]);
}

/** The ids of a department and every department below it. */
export function subtree(node: DepartmentNode): Set<number> {
  return new Set(flatten([node]).map((d) => d.node.department_id));
}
