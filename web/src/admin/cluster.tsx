// The cluster as the serving node sees it, refreshed every two seconds:
// nodes with their roles and load (gossiped by each node), the partitions
// with their leaders, voters and placement.

import { useEffect, useState } from "preact/hooks";

import { useT } from "../context.js";
import type { AdminApi, ClusterStatus } from "./api.js";

const REFRESH_MS = 2000;

export function ClusterTab({ api }: { api: AdminApi }) {
  const t = useT();
  const [status, setStatus] = useState<ClusterStatus | null>(null);
  const [at, setAt] = useState(0);
  const [failed, setFailed] = useState("");

  useEffect(() => {
    let live = true;
    const refresh = () =>
      api.cluster().then(
        (s) => {
          if (!live) return;
          setStatus(s);
          setAt(Date.now());
          setFailed("");
        },
        (err: Error) => live && setFailed(err.message),
      );
    void refresh();
    const timer = setInterval(refresh, REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [api]);

  if (!status) return failed ? <p class="error">{t("admin.failed", { message: failed })}</p> : null;
  const inView = new Set(status.view.map((m) => m.node_id));
  const leaders = new Map<number, number>();
  for (const p of status.partitions) if (p.leader !== null) leaders.set(p.leader, (leaders.get(p.leader) ?? 0) + 1);
  const roles = (id: number) =>
    [status.meta_leader === id ? t("cluster.meta.leader") : status.meta_voters.includes(id) ? t("cluster.meta.voter") : ""].filter(Boolean).join(", ");

  return (
    <div class="admin-cluster" data-test="cluster">
      <p class="quiet" data-test="cluster-updated">
        {t("cluster.updated", { time: new Date(at).toLocaleTimeString(), id: status.node_id })} · {t("cluster.view", { id: status.view_id })} ·{" "}
        {t("cluster.online", { count: status.online["0"] ?? 0 })}
      </p>
      {failed ? <p class="error">{t("admin.failed", { message: failed })}</p> : null}
      <h3>{t("cluster.nodes")}</h3>
      <table class="admin-table" data-test="cluster-nodes">
        <thead>
          <tr>
            <th>{t("cluster.node", { id: "" })}</th>
            <th>{t("users.state")}</th>
            <th>{t("cluster.roles")}</th>
            <th>{t("cluster.addresses")}</th>
            <th>{t("cluster.sessions")}</th>
            <th>{t("cluster.homes")}</th>
            <th>{t("cluster.actors")}</th>
            <th>{t("cluster.leaders")}</th>
          </tr>
        </thead>
        <tbody>
          {status.nodes.map((n) => {
            const load = status.load[String(n.node_id)];
            return (
              <tr data-test="cluster-node" data-id={n.node_id} data-ready={inView.has(n.node_id)}>
                <td>{n.node_id}</td>
                <td data-test="cluster-node-state">{inView.has(n.node_id) ? t("cluster.ready") : t("cluster.absent")}</td>
                <td>{roles(n.node_id)}</td>
                <td class="mono">
                  {n.http_addr} · {n.tcp_addr} · {n.peer_addr}
                </td>
                <td data-test="cluster-node-sessions">{load?.sessions ?? "–"}</td>
                <td>{load?.homes ?? "–"}</td>
                <td>{load?.actors ?? "–"}</td>
                <td data-test="cluster-node-leaders">{leaders.get(n.node_id) ?? 0}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <h3>{t("cluster.partitions")}</h3>
      <table class="admin-table" data-test="cluster-partitions">
        <thead>
          <tr>
            <th>{t("cluster.partition")}</th>
            <th>{t("cluster.leader")}</th>
            <th>{t("cluster.voters")}</th>
            <th>{t("cluster.placement")}</th>
            <th>{t("cluster.applied")}</th>
          </tr>
        </thead>
        <tbody>
          {status.partitions.map((p) => (
            <tr data-test="cluster-partition">
              <td>{p.partition}</td>
              <td data-test="cluster-partition-leader">{p.leader ?? "–"}</td>
              <td>{p.voters.join(", ")}</td>
              <td>
                {p.placement.join(", ")} ({p.epoch})
              </td>
              <td>{p.last_applied ?? "–"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
