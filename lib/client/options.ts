/**
 * What the parts of the client share: its settings, where it shows things,
 * and the limits each part keeps. No behaviour lives here.
 * @module
 */

import type { PrivateIdentity, PublicIdentity } from "../crypto/mod.ts";
import type { MailVault, PeerPins, RoomVault } from "../proto/mod.ts";
import type { Network } from "../wire/mod.ts";
import type { UiEvent } from "./events.ts";

/** Where the client shows things; a {@link Terminal} fits. */
export interface ClientUi {
  print(ev: UiEvent): void;
  setPeer(peer: string | null): void;
  /**
   * The room plain lines go to now (`!room <name>`, PROTOCOL.md section
   * 10), or null: the prompt shows it (`A#team> `).
   */
  setRoom?(room: string | null): void;
}

/** One address of the server: a node of a cluster (PROTOCOL.md 11.7). */
export interface ServerAddress {
  host: string;
  port: number;
}

/** Settings of a client. */
export interface ClientOptions {
  user: string;
  /** Our key pair: it logs in, and signs the FINISHED of each peer session (PROTOCOL.md section 6, key continuity). */
  identity: PrivateIdentity;
  /** The server key keygen pinned for this user (rule 2.2). */
  pinnedServer: PublicIdentity;
  /**
   * The server's address. With {@link servers}, the first of them at the
   * start; the link then keeps it set to the node it is logged in to, so
   * `Logged in as` and `!whoami` name the node in use.
   */
  serverHost: string;
  serverPort: number;
  /**
   * The nodes of a cluster (PROTOCOL.md 11.7), each with the same server
   * key: the first login tries them in order (a refused connection or a
   * timeout moves to the next; a refused login or another server key ends
   * the client as with one server), then again with backoff; a dropped
   * link reconnects to the next one after the node it lost. When absent or
   * empty, the one server is {@link serverHost}:{@link serverPort}.
   */
  servers?: Array<ServerAddress>;
  ui: ClientUi;
  /** Sockets, or a {@link MemoryNetwork} in tests (default: TCP). */
  network?: Network;
  /** Address to listen on when hosting (default 127.0.0.1). */
  listenHost?: string;
  /** Port to listen on when hosting (default 0: any free port). */
  listenPort?: number;
  /** Address to advertise instead of the listener's (e.g. behind NAT). */
  advertise?: string;
  /** Always run peer sessions through the server relay. */
  relay?: boolean;
  heartbeatMs?: number;
  windowMs?: number;
  /** Reconnect when the server goes away (default true). */
  reconnect?: boolean;
  /** First reconnect delay; doubles up to {@link reconnectMaxMs} (default 1 s). */
  reconnectBaseMs?: number;
  /** Longest reconnect delay (default 30 s). */
  reconnectMaxMs?: number;
  /**
   * Wait for the server's answer to each command before the next line
   * (`!list`, `!session host`, `!session <user>`), so a script's lines act in
   * order: `im chat` sets it when stdin is not a terminal.
   */
  waitForReplies?: boolean;
  /** Refresh the names offered by Tab completion this often, quietly (ms; 0 = never). */
  namesRefreshMs?: number;
  /** Login must finish within this (default `LOGIN_TIMEOUT_MS`, PROTOCOL.md section 3). */
  loginTimeoutMs?: number;
  /** How long a joiner's connection waits for our grant to arrive (default {@link GRANT_WAIT_MS}). */
  grantWaitMs?: number;
  /**
   * Where partners' keys are pinned on first use (PROTOCOL.md section 6,
   * key continuity): `im chat` passes the key directory's
   * (`peerPinStore` of the keystore, `users/<user>/peers/`). Default: in
   * memory, for this client's life.
   */
  peerPins?: PeerPins;
  /**
   * Where our mailbox keys, seen ids and pending receipts live, and the
   * peers' verified mail certificates (PROTOCOL.md section 9.1, "At rest"):
   * `im chat` passes the key directory's (`openMailVault` of the keystore,
   * `users/<user>/mail/`). Default: in memory ({@link MemoryMailVault}),
   * for this client's life.
   */
  mailVault?: MailVault;
  /**
   * Where our rooms' state lives (PROTOCOL.md 10.6): `im chat` passes the
   * key directory's (`openRoomVault`, `users/<user>/rooms/`). Default: in
   * memory ({@link MemoryRoomVault}), for this client's life.
   */
  roomVault?: RoomVault;
}

/** A {@link UiEvent} whose time is filled in when printed. */
export type NewEvent = UiEvent extends unknown
  ? (UiEvent extends infer E
    ? E extends UiEvent ? Omit<E, "at"> & { at?: number } : never
    : never)
  : never;

/** What every part of the client is given by the facade. */
export interface ClientContext {
  readonly o: ClientOptions;
  /** Show an event (its time is filled in). */
  print(ev: NewEvent): void;
  /** Show a system line. */
  system(text: string): void;
  /** Show an error: ours by its code, anything else as internal. */
  error(e: unknown): void;
  /** Run a task the client waits for on quit; its failure is shown. */
  track<T>(p: Promise<T>): void;
}

/**
 * Peer connections a host serves at once before their handshake finished.
 * A newcomer evicts the oldest one that has not sent a PEER_COMMIT yet (a
 * real joiner sends it as soon as it connects), else the oldest.
 */
export const MAX_PENDING_PEER_CONNECTIONS = 8;

/**
 * How long a joiner's connection waits for the host's grant: the server
 * sends the grant to the host and the address to the joiner at once, so a
 * fast joiner can arrive first.
 */
export const GRANT_WAIT_MS = 5000;

/** How long to wait for a direct connection to a host before relaying. */
export const DIRECT_CONNECT_TIMEOUT_MS = 3000;

/** Scripting mode: longest wait for the server's answer to a command. */
export const REPLY_WAIT_MS = 5000;
/** Scripting mode: longest wait for `!session <user>` to start or fail. */
export const SESSION_WAIT_MS = 20_000;

/**
 * A request whose answer never came (its record was lost, say) is given up
 * after this, so the table of requests in flight cannot grow (PROTOCOL.md
 * section 5.1).
 */
export const REQUEST_TIMEOUT_MS = 30_000;
