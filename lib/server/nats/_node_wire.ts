/**
 * The requests between nodes and their answers (PROTOCOL.md 11.4), as they
 * travel inside the sealed envelopes: the subject a node answers on, the
 * answer's shape, the error that stands for no answer, and the patterns a
 * request's fields are checked against. Shared by the side that asks
 * (`_node_requests.ts`) and the side that answers (`_request_server.ts`).
 * @module
 */

import { NetError } from "../../util/mod.ts";

/** A reply subject a request may name: NATS subject tokens, no wildcards. */
export const REPLY_SUBJECT = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+){1,15}$/;
/** The pushes a `deliver` may carry to another node's user (11.4). */
export const PUSHES: ReadonlySet<string> = new Set([
  "grant",
  "cancelled",
  "relayed",
]);
/** The reasons a `kick` may give. */
export const REASONS: ReadonlySet<string> = new Set(["replaced", "revoked"]);
/** A session a `cancelled` may name: a ticket id, hex (11.4). */
export const TICKET_ID = /^[0-9a-f]{1,128}$/;
/** A host's address in a grant's answer (11.4), as `host` takes it (6). */
export const HOST_ADDR = /^[A-Za-z0-9.:\[\]_-]{1,80}:\d{1,5}$/;
/** A key fingerprint a `kick` may name in `keep`: printable, no spaces. */
export const FINGERPRINT = /^[\x21-\x7e]{1,128}$/;

/** Why a connection is closed by a `kick`. */
export type KickReason = "replaced" | "revoked";

/**
 * What a node does with a `kick` for one of its users: true when it closed
 * a connection (none, or one that logged in with the key `keep` names: false).
 */
export type KickHandler = (
  user: string,
  reason: KickReason,
  keep?: string,
) => boolean;

/** A node's answer to a `deliver` or a `kick` (11.4). */
export type Answer =
  | { ok: "written"; addr?: string }
  | { ok: "absent" | "busy" | "closed" | "not-hosting" }
  | { ok: "failed"; code: string; message: string };

/**
 * The subject a node answers on (11.4).
 * @param cluster the cluster's name
 * @param node the node's name
 * @returns `im.<cluster>.node.<node>`
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { nodeSubject } from "./_node_wire.ts";
 * assert.equal(nodeSubject("team", "n1"), "im.team.node.n1");
 * ```
 */
export function nodeSubject(cluster: string, node: string): string {
  return `im.${cluster}.node.${node}`;
}

/**
 * The error that stands for a node's answer when none can come.
 * @param node the node asked
 * @param why what happened
 * @returns a `cluster-unreachable` error
 */
export function unreachable(node: string, why: string): NetError {
  return new NetError(
    "cluster-unreachable",
    `Node ${node} cannot be reached (${why})`,
  );
}
