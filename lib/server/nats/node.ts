/**
 * {@link ClusterNode}: one `im serve` as a node of a cluster on NATS
 * (PROTOCOL.md 11.1, 11.3-11.6): the connection to NATS, this node's
 * {@link NatsPresence} and {@link NatsDelivery}, the mailboxes every node
 * shares ({@link JetStreamStore}, {@link KvPrekeys}, sealed at rest) and
 * their wake-ups between nodes ({@link MailWake}), the rooms every node
 * shares ({@link JetStreamRoomStore}) and theirs ({@link RoomWake}), and
 * the options that make an `ImServer` use them. It logs the nodes it sees
 * once it joined, and every node that joins or leaves after.
 *
 * @example
 * ```ts ignore
 * const node = await ClusterNode.join({ servers: ["nats://127.0.0.1:4222"], node: "n1", clusterKey });
 * const server = await ImServer.start({ identity, clients, ...node.serverOptions() });
 * node.attach(server);             // replaced logins and kicks close connections here
 * await server.close();
 * await node.close();
 * ```
 * @module
 */

import {
  connect,
  type NatsConnection,
  nkeyAuthenticator,
  nkeys,
} from "@nats-io/transport-node";
import { ClusterKeys, isValidUsername, StoreKeys } from "../../proto/mod.ts";
import { sha256 } from "../../crypto/mod.ts";
import { constantTimeEqual, KeyError, type Logger } from "../../util/mod.ts";
import type {
  Delivery,
  Outbox,
  Prekeys,
  Presence,
  RoomStore,
  Store,
} from "../seams.ts";
import { NatsPresence, type PresenceTiming } from "./presence.ts";
import { type KickReason, NatsDelivery } from "./delivery.ts";
import { JetStreamStore } from "./store.ts";
import { KvPrekeys } from "./prekeys.ts";
import { MailWake } from "./mail_wake.ts";
import { JetStreamRoomStore } from "./room_store.ts";
import { RoomWake, type RoomWakeLocal } from "./room_wake.ts";

/** The cluster's name when none is given: subjects `im.im.node.<node>`, bucket `im_im_presence`. */
export const DEFAULT_CLUSTER = "im";

/** How membership is checked for the log (ms). */
const MEMBERS_CHECK_MS = 1_000;

/** What a node needs of the server it serves. */
export interface ClusterServer {
  /**
   * Close a user's connection on this node.
   * @param keep a key fingerprint: a connection that logged in with it is kept
   * @returns true when a connection was closed
   */
  kick(user: string, reason: KickReason, keep?: string): boolean;
}

/** Options of {@link ClusterNode.join}. */
export interface ClusterNodeOptions {
  /** NATS URLs (`nats://h:p`, `tls://h:p`). */
  servers: string[];
  /** This node's name (rule 2.9). */
  node: string;
  /** The 32-byte cluster key (`server/cluster.key`). */
  clusterKey: Uint8Array;
  /** The cluster's name (rule 2.9; default {@link DEFAULT_CLUSTER}). */
  cluster?: string;
  /** NATS user and password. */
  user?: string;
  pass?: string;
  /**
   * A NATS user nkey seed (`SU...`, as bytes): the client signs the
   * server's nonce with it. Kept by the node for reconnects.
   */
  nkeySeed?: Uint8Array;
  log?: Logger;
  now?: () => number;
  /** Shorter presence timings (tests). */
  presenceTiming?: Partial<PresenceTiming>;
  /** Answer wait of requests between nodes (default 2 s). */
  deliveryTimeoutMs?: number;
  /** How long the first connection may take (default 5 s). */
  connectTimeoutMs?: number;
  /** Wait between reconnects (default 1 s; tests shorten it). */
  reconnectTimeWaitMs?: number;
  /**
   * Replicas (1 to 5, default 1) of what this node makes in JetStream when
   * it is not there: the mail stream, the prekeys and presence buckets, the
   * room stream (`--cluster-replicas`, PROTOCOL.md 11.1, 11.6). One already
   * there is used as it is (`cluster-replicas-differ` logged).
   */
  replicas?: number;
  /**
   * Another process runs with this node's name (presence's
   * `cluster-duplicate-node`; this node has stopped putting its snapshot).
   * Default: one error line on stderr and the process exits (code 1).
   */
  onDuplicate?: (node: string) => void;
}

/**
 * Check a NATS user nkey seed as the NATS client decodes it (its base32,
 * its checksum, a user's prefix).
 * @param seed the seed's characters as bytes
 * @returns a copy, for the client to keep
 * @throws {KeyError} `bad-nkey-seed`: one line saying what is wrong
 */
export function checkNkeySeed(seed: Uint8Array): Uint8Array {
  let publicKey: string;
  try {
    publicKey = nkeys.fromSeed(seed).getPublicKey();
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e))
      .replace(/^nkeys: /, "");
    throw new KeyError("bad-nkey-seed", `NATS nkey seed: ${why}`);
  }
  if (!publicKey.startsWith("U")) {
    throw new KeyError("bad-nkey-seed", "NATS nkey seed: not a user's seed");
  }
  return new Uint8Array(seed);
}

/** One node of a cluster: NATS, presence, delivery. */
export class ClusterNode {
  readonly node: string;
  readonly cluster: string;
  readonly nc: NatsConnection;
  readonly presence: NatsPresence;
  readonly delivery: NatsDelivery;
  /** The mailboxes' logs, one stream for every node (11.6). */
  readonly store: JetStreamStore;
  /** The users' published mailbox keys, one bucket for every node (11.6). */
  readonly prekeys: KvPrekeys;
  /** Mail wake-ups between nodes (11.4). */
  readonly mailWake: MailWake;
  /** The rooms, one stream for every node (11.6). */
  readonly rooms: JetStreamRoomStore;
  /** Room wake-ups between nodes (11.4). */
  readonly roomWake: RoomWake;
  readonly #keys: ClusterKeys;
  /** The SHA-256 of the cluster key in use, to tell a changed one. */
  #keyHash: Uint8Array;
  readonly #storeKeys: StoreKeys;
  readonly #log: Logger;
  readonly #to: { server?: ClusterServer };
  #members: Set<string>;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  private constructor(
    o: ClusterNodeOptions,
    cluster: string,
    nc: NatsConnection,
    keys: ClusterKeys,
    parts: {
      storeKeys: StoreKeys;
      presence: NatsPresence;
      delivery: NatsDelivery;
      store: JetStreamStore;
      prekeys: KvPrekeys;
      mailWake: MailWake;
      rooms: JetStreamRoomStore;
      roomWake: RoomWake;
    },
    to: { server?: ClusterServer },
  ) {
    this.#to = to;
    this.node = o.node;
    this.cluster = cluster;
    this.nc = nc;
    this.#keys = keys;
    this.#keyHash = sha256(o.clusterKey);
    this.#storeKeys = parts.storeKeys;
    this.presence = parts.presence;
    this.delivery = parts.delivery;
    this.store = parts.store;
    this.prekeys = parts.prekeys;
    this.mailWake = parts.mailWake;
    this.rooms = parts.rooms;
    this.roomWake = parts.roomWake;
    this.#log = o.log ?? (() => {});
    this.#members = new Set(parts.presence.nodes());
  }

  /**
   * Connect to NATS and join the cluster.
   * @param o NATS servers and credentials, this node's name, the cluster key
   * @returns the node, its snapshot put and its subject subscribed
   * @throws {RangeError} a bad node or cluster name, a key of another length
   * @throws the NATS client's error when no server can be reached
   */
  static async join(o: ClusterNodeOptions): Promise<ClusterNode> {
    const cluster = o.cluster ?? DEFAULT_CLUSTER;
    if (!isValidUsername(o.node)) {
      throw new RangeError(`node name "${o.node}" (rule 2.9)`);
    }
    const seed = o.nkeySeed && checkNkeySeed(o.nkeySeed);
    const keys = new ClusterKeys(o.clusterKey);
    const storeKeys = new StoreKeys(o.clusterKey);
    const log = o.log ?? (() => {});
    const nc = await connect({
      servers: o.servers,
      name: `im-${o.node}`,
      ...(o.user !== undefined && { user: o.user }),
      ...(o.pass !== undefined && { pass: o.pass }),
      ...(seed && { authenticator: nkeyAuthenticator(seed) }),
      timeout: o.connectTimeoutMs ?? 5_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: o.reconnectTimeWaitMs ?? 1_000,
    });
    // The server comes after the node: replaced logins reach it through this.
    const to: { server?: ClusterServer } = {};
    let node: ClusterNode;
    try {
      const presence = await NatsPresence.open({
        nc,
        cluster,
        node: o.node,
        keys,
        log,
        ...(o.now && { now: o.now }),
        ...(o.presenceTiming && { timing: o.presenceTiming }),
        ...(o.replicas !== undefined && { replicas: o.replicas }),
        onReplaced: (name, by) => {
          log("replaced", { user: name, by: by.node });
          to.server?.kick(name, "replaced");
        },
        onDuplicate: () => {
          if (o.onDuplicate) return o.onDuplicate(o.node);
          // Two processes with one node name overwrite each other's users:
          // this one stops at once (presence logged cluster-duplicate-node).
          console.error(
            `im: error: another process runs as node ${o.node} of cluster ${cluster}; stopping this one (give each node a name of its own)`,
          );
          Deno.exit(1);
        },
      });
      // What is opened is closed again, latest first, when a later part fails.
      const opened: Array<{ close(): Promise<void> }> = [presence];
      try {
        const delivery = await NatsDelivery.open({
          nc,
          cluster,
          node: o.node,
          keys,
          presence,
          log,
          ...(o.now && { now: o.now }),
          ...(o.deliveryTimeoutMs !== undefined &&
            { timeoutMs: o.deliveryTimeoutMs }),
        });
        opened.push(delivery);
        // 11.6: the mailboxes every node shares, sealed at rest.
        const shared = {
          nc,
          cluster,
          keys: storeKeys,
          log,
          ...(o.replicas !== undefined && { replicas: o.replicas }),
        };
        const store = await JetStreamStore.open({
          ...shared,
          ...(o.now && { now: o.now }),
        });
        opened.push(store);
        const prekeys = await KvPrekeys.open(shared);
        opened.push(prekeys);
        const mailWake = await MailWake.open({
          nc,
          cluster,
          node: o.node,
          keys,
          log,
          ...(o.now && { now: o.now }),
        });
        opened.push(mailWake);
        // 11.6: the rooms every node shares, and their wake-ups (11.4).
        const rooms = await JetStreamRoomStore.open({
          ...shared,
          ...(o.now && { now: o.now }),
        });
        opened.push(rooms);
        const roomWake = await RoomWake.open({
          nc,
          cluster,
          node: o.node,
          keys,
          log,
          ...(o.now && { now: o.now }),
        });
        opened.push(roomWake);
        node = new ClusterNode(o, cluster, nc, keys, {
          storeKeys,
          presence,
          delivery,
          store,
          prekeys,
          mailWake,
          rooms,
          roomWake,
        }, to);
      } catch (e) {
        for (const x of opened.reverse()) await x.close().catch(() => {});
        throw e;
      }
    } catch (e) {
      await nc.close().catch(() => {});
      keys.wipe();
      storeKeys.wipe();
      throw e;
    }
    return node;
  }

  /**
   * Log the nodes seen now (after a short wait for their snapshots), then
   * every node that joins or leaves.
   * @param settleMs how long to wait for the other nodes' snapshots first
   */
  async announce(settleMs = 500): Promise<string[]> {
    const until = Date.now() + settleMs;
    while (Date.now() < until && !this.#closed) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const others = this.presence.nodes();
    this.#members = new Set(others);
    this.#log("cluster", {
      cluster: this.cluster,
      node: this.node,
      nodes: [this.node, ...others].sort().join(","),
    });
    if (!this.#closed && this.#timer === undefined) {
      this.#timer = setInterval(() => this.#checkMembers(), MEMBERS_CHECK_MS);
    }
    return others;
  }

  #checkMembers(): void {
    const now = new Set(this.presence.nodes());
    for (const n of now) {
      if (!this.#members.has(n)) this.#log("node-joined", { node: n });
    }
    for (const n of this.#members) {
      if (!now.has(n)) this.#log("node-left", { node: n });
    }
    this.#members = now;
  }

  /** The other nodes whose users are in the view now. */
  nodes(): string[] {
    return this.presence.nodes();
  }

  /** True while NATS cannot be reached. */
  get partial(): boolean {
    return this.presence.partial;
  }

  /**
   * What `ImServer.start` needs to be this node: its name, presence,
   * delivery, the partial flag, and the mailboxes and rooms every node
   * shares with their wake-ups (11.4, 11.6; the node closes them, after the
   * server).
   */
  serverOptions(): {
    node: string;
    presence: Presence;
    delivery: (local: (user: string) => Outbox | undefined) => Delivery;
    partial: () => boolean;
    store: Store;
    prekeys: Prekeys;
    mailWake: (
      local: (user: string) => void,
      everyone: () => void,
    ) => (user: string) => void;
    rooms: RoomStore;
    roomWake: (
      local: RoomWakeLocal,
      everyone: () => void,
    ) => RoomWakeLocal;
  } {
    return {
      node: this.node,
      presence: this.presence,
      store: this.store,
      prekeys: this.prekeys,
      mailWake: (local, everyone) => {
        this.mailWake.attach(local, everyone);
        return (user) => this.mailWake.tell(user);
      },
      rooms: this.rooms,
      roomWake: (local, everyone) => {
        this.roomWake.attach(local, everyone);
        return (room, users, made, receipts) =>
          this.roomWake.tell(room, users, made, receipts);
      },
      delivery: (local) => {
        this.delivery.attach(local, {
          kick: (user, reason, keep) =>
            this.#to.server?.kick(user, reason, keep) ?? false,
        });
        return this.delivery;
      },
      partial: () => this.presence.partial,
    };
  }

  /**
   * Use another cluster key from now on (PROTOCOL.md 11.1, a SIGHUP): every
   * envelope is sealed and opened under it at once (presence, requests, mail
   * and room wake-ups), what the old key sealed is refused, and the
   * snapshot is put again under the new key. The store's keys (11.6) stay
   * those of the start: what is stored was sealed under them.
   * @param clusterKey the 32 bytes (the caller wipes them)
   * @returns false when it is the key in use, or the node closed (nothing changed)
   * @throws {ProtocolError} `bad-length` for another length (nothing changed)
   */
  replaceKey(clusterKey: Uint8Array): boolean {
    if (this.#closed) return false;
    const hash = sha256(clusterKey);
    if (constantTimeEqual(hash, this.#keyHash)) return false;
    this.#keys.replace(clusterKey);
    this.#keyHash = hash;
    this.presence.reseal();
    return true;
  }

  /** The server whose connections replaced logins and kicks close. */
  attach(server: ClusterServer): void {
    this.#to.server = server;
  }

  /**
   * Leave the cluster: delete this node's snapshot, unsubscribe, close the
   * connection. Idempotent. Close the server first.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.roomWake.close();
    await this.mailWake.close();
    await this.delivery.close();
    await this.rooms.close();
    await this.store.close();
    await this.prekeys.close();
    await this.presence.close();
    await this.nc.close().catch(() => {});
    this.#keys.wipe();
    this.#storeKeys.wipe();
  }

  /**
   * For fault tests: stop as a killed process would: no goodbye, the
   * snapshot left in the bucket until it is too old.
   */
  async crash(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.presence.crash();
    await this.roomWake.close();
    await this.mailWake.close();
    await this.delivery.close();
    await this.rooms.close();
    await this.store.close();
    await this.prekeys.close();
    await this.nc.close().catch(() => {});
  }
}
