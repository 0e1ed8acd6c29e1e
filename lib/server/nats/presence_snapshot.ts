/**
 * The snapshots of `NatsPresence` (PROTOCOL.md 11.3), a part of it
 * (presence.ts): a node's users as its snapshot carries them, the payload
 * `{"t":"snapshot","node":N,"users":[...],"leaving":true?}` written and
 * read (every field checked: `cluster-malformed`), the envelope under a
 * node's key opened and checked against the newest accepted of that node
 * (`cluster-replayed`), and who wins when a user is online on two nodes.
 * @module
 */

import {
  type ClusterKeys,
  type EnvelopeWindow,
  isValidUsername,
  openEnvelope,
  type UserState,
} from "../../proto/mod.ts";
import { fromUtf8, ProtocolError, utf8 } from "../../util/mod.ts";
import type { PresenceEntry, PresenceFields } from "../seams.ts";

/** One user of a node, as its snapshot carries it. */
export interface Held {
  entry: PresenceEntry;
  /** When it logged in on that node (ms, that node's clock). */
  since: number;
}

/** A snapshot's payload, read. */
export interface Parsed {
  users: Map<string, Held>;
  /** The node's last snapshot: it closed. */
  leaving: boolean;
}

/** The newest envelope accepted of a node: an older one is refused (11.3). */
export interface Newest {
  time: number;
  boot: string;
  seq: number;
}

/** The newest verified snapshot of another node. */
export interface Snapshot {
  users: Map<string, Held>;
  /** The KV entry's server time (ms). */
  created: number;
  boot: string;
  seq: number;
  /** The envelope, to know a copy of it from a replay. */
  bytes: Uint8Array;
}

const STATES: ReadonlySet<string> = new Set(["IDLE", "HOSTING", "BUSY"]);
/** Longest `addr` and `ticketId` a snapshot may carry. */
const MAX_DETAIL = 300;

export function makeEntry(
  name: string,
  node: string,
  fields: PresenceFields,
): PresenceEntry {
  const e: PresenceEntry = { name, node, state: fields.state };
  const more: Partial<PresenceFields> = {};
  if (fields.addr !== undefined) more.addr = fields.addr;
  if (fields.partner !== undefined) more.partner = fields.partner;
  if (fields.isHost !== undefined) more.isHost = fields.isHost;
  if (fields.ticketId !== undefined) more.ticketId = fields.ticketId;
  return Object.freeze({ ...e, ...more });
}

export function sameFields(a: PresenceEntry, b: PresenceEntry): boolean {
  return a.node === b.node && a.state === b.state && a.addr === b.addr &&
    a.partner === b.partner && a.isHost === b.isHost &&
    a.ticketId === b.ticketId;
}

/** Does `a` win over `b` (later since, then the greater node name)? */
export function wins(a: Held, b: Held): boolean {
  if (a.since !== b.since) return a.since > b.since;
  return a.entry.node > b.entry.node;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function malformed(why: string): ProtocolError {
  return new ProtocolError("cluster-malformed", `Snapshot refused: ${why}`);
}

/**
 * Read a snapshot's payload (11.3).
 * @throws {ProtocolError} `cluster-malformed`
 */
export function parseSnapshot(payload: Uint8Array, node: string): Parsed {
  let msg: unknown;
  try {
    msg = JSON.parse(fromUtf8(payload, "snapshot"));
  } catch {
    throw malformed("not JSON");
  }
  const m = msg as {
    t?: unknown;
    node?: unknown;
    users?: unknown;
    leaving?: unknown;
  };
  if (typeof msg !== "object" || msg === null || m.t !== "snapshot") {
    throw malformed("not a snapshot");
  }
  if (m.node !== node) throw malformed(`node "${m.node}" under key ${node}`);
  if (!Array.isArray(m.users)) throw malformed("no users");
  if (m.leaving !== undefined && m.leaving !== true) throw malformed("leaving");
  const leaving = m.leaving === true;
  if (leaving && m.users.length > 0) throw malformed("users while leaving");
  const users = new Map<string, Held>();
  for (const u of m.users as unknown[]) {
    const x = u as Record<string, unknown>;
    if (typeof u !== "object" || u === null) throw malformed("a user");
    const { name, state, addr, partner, isHost, ticketId, since } = x;
    if (typeof name !== "string" || !isValidUsername(name)) {
      throw malformed("a user's name");
    }
    if (users.has(name)) throw malformed(`${name} twice`);
    if (typeof state !== "string" || !STATES.has(state)) {
      throw malformed(`${name}'s state`);
    }
    if (
      typeof since !== "number" || !Number.isSafeInteger(since) || since < 0
    ) {
      throw malformed(`${name}'s since`);
    }
    const fields: PresenceFields = { state: state as UserState };
    if (addr !== undefined) {
      if (typeof addr !== "string" || addr.length > MAX_DETAIL) {
        throw malformed(`${name}'s addr`);
      }
      fields.addr = addr;
    }
    if (partner !== undefined) {
      if (typeof partner !== "string" || !isValidUsername(partner)) {
        throw malformed(`${name}'s partner`);
      }
      fields.partner = partner;
    }
    if (isHost !== undefined) {
      if (typeof isHost !== "boolean") throw malformed(`${name}'s isHost`);
      fields.isHost = isHost;
    }
    if (ticketId !== undefined) {
      if (typeof ticketId !== "string" || ticketId.length > MAX_DETAIL) {
        throw malformed(`${name}'s ticketId`);
      }
      fields.ticketId = ticketId;
    }
    users.set(name, { entry: makeEntry(name, node, fields), since });
  }
  return { users, leaving };
}

/** A snapshot's payload: `users` of `node` (none and `leaving` in its last). */
export function snapshotPayload(
  node: string,
  users: (Omit<PresenceEntry, "node"> & { since: number })[],
  leaving = false,
): Uint8Array {
  return utf8(
    JSON.stringify({
      t: "snapshot",
      node,
      users,
      ...(leaving && { leaving: true }),
    }),
  );
}

/** A snapshot opened: its users, and its envelope's boot (hex), seq and time. */
export interface Opened {
  parsed: Parsed;
  boot: string;
  seq: number;
  time: number;
}

/**
 * Open the envelope under `node`'s key of the bucket (11.2, 11.3): it
 * verifies for the key's subject, was sealed by that node, is a snapshot
 * of it, and is not older than `newest` (by its sealed time; by seq within
 * one boot).
 * @throws {ProtocolError} why it is refused
 */
export function openSnapshot(
  keys: ClusterKeys,
  value: Uint8Array,
  o: {
    bucket: string;
    node: string;
    now: number;
    window: EnvelopeWindow;
    newest: Newest | undefined;
  },
): Opened {
  const { node } = o;
  const opened = openEnvelope(keys, value, {
    subject: `$KV.${o.bucket}.${node}`,
    now: o.now,
    window: o.window,
  });
  if (opened.node !== node) {
    throw malformed(`node ${opened.node}'s envelope under key ${node}`);
  }
  const parsed = parseSnapshot(opened.payload, node);
  const boot = opened.boot.toHex();
  const seq = opened.seq;
  const time = opened.time;
  const last = o.newest;
  if (
    last &&
    (last.boot === boot ? seq < last.seq : time < last.time)
  ) {
    throw new ProtocolError(
      "cluster-replayed",
      `Snapshot refused: older than the newest of ${node} (sealed at ${time}, boot ${boot} seq ${seq}; the newest at ${last.time}, boot ${last.boot} seq ${last.seq})`,
    );
  }
  return { parsed, boot, seq, time };
}
