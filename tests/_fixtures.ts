/**
 * In-process fixtures shared by the client tests and the attack suite: an
 * {@link ImServer} on 127.0.0.1 port 0 with the cached 2048-bit identities
 * of `_helpers.ts`, {@link ChatClient}s with a UI that records what the user
 * would see ({@link CaptureUi}), bare logins with a tap on the channel
 * ({@link ChannelTap}), raw sockets that read whole frames
 * ({@link RawConn}), a frame MITM (`_fixtures_mitm.ts`), and a cleanup
 * stack that closes everything even when a test fails (the sanitizers stay
 * green).
 *
 * @example
 * ```ts ignore
 * await withScope(async (s) => {
 *   const server = await s.server();
 *   const a = await s.client(server.port, "A");
 *   await a.client.handleLine("!list");
 *   await a.ui.waitFor(isList);
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import {
  ChatClient,
  type ClientOptions,
  type ClientUi,
  loginToServer,
  type UiEvent,
} from "../lib/client/mod.ts";
import type {
  ChannelEvent,
  LoginResult,
  SecureChannel,
} from "../lib/proto/mod.ts";
import { type LogFields, sleep } from "../lib/util/mod.ts";
import { FrameDecoder } from "../lib/wire/mod.ts";
import { ImServer, type ServerOptions } from "../lib/server/mod.ts";
import {
  clientDirectory,
  type Identities,
  identities,
  userIdentity,
} from "./_helpers.ts";
import { FrameMitm, type MitmOptions } from "./_fixtures_mitm.ts";

/** Heartbeats of in-process servers and clients: long, so no heartbeat record races a tampered one. */
export const QUIET_HEARTBEAT_MS = 60_000;

/** Default time any wait of these fixtures may take before the test fails. */
export const WAIT_MS = 5000;

/**
 * Poll `cond` until it holds.
 * @param cond the condition
 * @param what for the failure message
 * @param timeoutMs how long
 */
export async function until(
  cond: () => boolean,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/**
 * Events in the order they came, with a way to wait for one: what a client's
 * user saw ({@link CaptureUi}), what a bare channel received ({@link ChannelTap}).
 */
export class EventLog<T> {
  readonly events: T[] = [];
  #wake: Array<() => void> = [];
  #describe: (e: T) => string;
  #what: string;

  /**
   * @param what the kind of event, for a timeout's message
   * @param describe one event in a timeout's message
   */
  constructor(what: string, describe: (e: T) => string) {
    this.#what = what;
    this.#describe = describe;
  }

  /** Record an event and wake the waiters. */
  push(e: T): void {
    this.events.push(e);
    for (const w of this.#wake.splice(0)) w();
  }

  /** Events so far: a mark for {@link waitFor}'s `after`. */
  get mark(): number {
    return this.events.length;
  }

  /**
   * Wait for an event at or after index `after`.
   * @param pred the test
   * @param after only events from this index on
   * @param timeoutMs how long
   * @returns the event
   */
  async waitFor(
    pred: (e: T) => boolean,
    after = 0,
    timeoutMs = WAIT_MS,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(after).find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(
          `timed out waiting for a ${this.#what}; saw since ${after}: ${
            this.events.slice(after).map(this.#describe).join(", ").slice(
              0,
              1500,
            )
          }`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, left);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.#wake.push(done);
      });
    }
  }

  /**
   * Events since `after` matching `pred`.
   * @param pred the test
   * @param after index
   * @returns them
   */
  since(pred: (e: T) => boolean, after = 0): T[] {
    return this.events.slice(after).filter(pred);
  }
}

/** What the user of a client saw, in order, with a way to wait for more. */
export class CaptureUi extends EventLog<UiEvent> implements ClientUi {
  peer: string | null = null;

  constructor() {
    super("UI event", (e) => JSON.stringify(e));
  }

  print(ev: UiEvent): void {
    this.push(ev);
  }

  setPeer(peer: string | null): void {
    this.peer = peer;
  }
}

/** An error event with `code`. */
export function isError(code?: string): (e: UiEvent) => boolean {
  return (e) => e.kind === "error" && (code === undefined || e.code === code);
}

/** A session-started event. */
export const started = (e: UiEvent): boolean =>
  e.kind === "session" && e.state === "started";

/** A session-ended event. */
export const ended = (e: UiEvent): boolean =>
  e.kind === "session" && e.state === "ended";

/** A `!list` answer. */
export const isList = (e: UiEvent): boolean => e.kind === "list";

/** One log line of the server. */
export interface LogLine {
  event: string;
  fields: LogFields;
}

/** A server of the suite, with its log. */
export interface TestServer {
  server: ImServer;
  port: number;
  log: LogLine[];
  ids: Identities;
}

/** A client of the suite and what its user saw. */
export interface TestClient {
  client: ChatClient;
  ui: CaptureUi;
  user: string;
}

/** Resources of one test, closed in reverse order by {@link withScope}. */
export class Scope {
  #cleanups: Array<() => Promise<void> | void> = [];

  /**
   * Close `f` when the scope ends.
   * @param f the cleanup
   */
  defer(f: () => Promise<void> | void): void {
    this.#cleanups.push(f);
  }

  /**
   * Start a server on 127.0.0.1 port 0 with A, B, C and quiet heartbeats.
   * @param opts overrides
   * @returns the server and its log
   */
  async server(opts: Partial<ServerOptions> = {}): Promise<TestServer> {
    const ids = await identities();
    const log: LogLine[] = [];
    const server = await ImServer.start({
      port: 0,
      identity: ids.server,
      clients: clientDirectory(ids),
      heartbeatMs: QUIET_HEARTBEAT_MS,
      log: (event, fields = {}) => log.push({ event, fields }),
      ...opts,
    });
    this.defer(() => server.close());
    return { server, port: server.port, log, ids };
  }

  /**
   * A frame-level MITM in front of a port.
   * @param port the target port on 127.0.0.1
   * @param opts more options
   * @returns the proxy
   */
  mitm(port: number, opts: Partial<MitmOptions> = {}): FrameMitm {
    const m = FrameMitm.start({
      target: { hostname: "127.0.0.1", port },
      ...opts,
    });
    this.defer(() => m.close());
    return m;
  }

  /**
   * Options of a client of user `user` (A, B, C) pinned to the real server.
   * @param port where it connects
   * @param user the user
   * @param over overrides
   * @returns the options, with a fresh {@link CaptureUi}
   */
  async clientOptions(
    port: number,
    user: string,
    over: Partial<ClientOptions> = {},
  ): Promise<ClientOptions & { ui: CaptureUi }> {
    const ids = await identities();
    return {
      user,
      identity: userIdentity(ids, user),
      pinnedServer: ids.serverPinned,
      serverHost: "127.0.0.1",
      serverPort: port,
      heartbeatMs: QUIET_HEARTBEAT_MS,
      reconnect: false,
      loginTimeoutMs: WAIT_MS,
      ...over,
      ui: new CaptureUi(),
    };
  }

  /**
   * Log a {@link ChatClient} in.
   * @param port where it connects (the server or a proxy)
   * @param user A, B or C
   * @param over overrides
   * @returns the client and its UI
   */
  async client(
    port: number,
    user: string,
    over: Partial<ClientOptions> = {},
  ): Promise<TestClient> {
    const o = await this.clientOptions(port, user, over);
    const client = await ChatClient.start(o);
    this.defer(() => client.quit());
    // Its mailbox keys are published: no record the test did not cause
    // crosses the link from now on.
    await client.settled();
    return { client, ui: o.ui, user };
  }

  /**
   * Log in with {@link loginToServer}: the bare channel, for record-level attacks.
   * @param port where it connects
   * @param user A, B or C
   * @param over overrides
   * @returns the channel and the login keys
   */
  async login(
    port: number,
    user: string,
    over: Partial<ClientOptions> = {},
  ): Promise<BareLogin> {
    const o = await this.clientOptions(port, user, over);
    const r = await loginToServer(o);
    const tap = new ChannelTap(r.channel);
    this.defer(async () => {
      r.channel.abort("test-end");
      await tap.done;
    });
    return { ...r, tap };
  }

  /**
   * A raw TCP connection to 127.0.0.1:port, closed at the end.
   * @param port the port
   * @returns the socket
   */
  async raw(port: number): Promise<RawConn> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    conn.setNoDelay(true);
    const r = new RawConn(conn);
    this.defer(() => r.close());
    return r;
  }

  async run(): Promise<void> {
    const errors: unknown[] = [];
    for (const f of this.#cleanups.reverse()) {
      try {
        await f();
      } catch (e) {
        errors.push(e);
      }
    }
    this.#cleanups = [];
    if (errors.length > 0) throw errors[0];
  }
}

/**
 * Run a test body with a {@link Scope}; everything it opened is closed
 * afterwards, in reverse order, even when the body fails.
 * @param body the test
 */
export async function withScope(
  body: (s: Scope) => Promise<void>,
): Promise<void> {
  const s = new Scope();
  try {
    await body(s);
  } finally {
    await s.run();
  }
}

/** A bare login: the client's channel, its keys, and a tap on its events. */
export interface BareLogin {
  channel: SecureChannel;
  login: LoginResult;
  tap: ChannelTap;
}

/** Collects the events of a {@link SecureChannel} as they come. */
export class ChannelTap extends EventLog<ChannelEvent> {
  readonly done: Promise<void>;

  /** @param ch the channel; its events are read from now on */
  constructor(ch: SecureChannel) {
    super("channel event", describe);
    this.done = (async () => {
      for await (const ev of ch.events()) this.push(ev);
    })();
  }
}

function describe(e: ChannelEvent): string {
  if (e.kind === "message") {
    return `message ${JSON.stringify(e.msg).slice(0, 80)}`;
  }
  if (e.kind === "discarded") return `discarded ${e.error.code}`;
  if (e.kind === "lost") return `lost ${e.count}`;
  return `closed ${e.reason}${e.error ? ` (${e.error.code})` : ""}`;
}

/** A raw client socket that reads whole frames. */
export class RawConn {
  readonly conn: Deno.TcpConn;
  #decoder = new FrameDecoder(16 * 1024 * 1024);
  #ready: Uint8Array[] = [];
  #eof = false;
  #closed = false;
  #buf = new Uint8Array(16 * 1024);

  /** @param conn the socket */
  constructor(conn: Deno.TcpConn) {
    this.conn = conn;
  }

  /**
   * Write bytes as they are.
   * @param b the bytes
   */
  async write(b: Uint8Array): Promise<void> {
    let off = 0;
    while (off < b.length) off += await this.conn.write(b.subarray(off));
  }

  /**
   * The next frame from the server, or null at EOF (or a reset).
   * @param timeoutMs how long to wait
   * @returns the payload or null
   */
  async frame(timeoutMs = WAIT_MS): Promise<Uint8Array | null> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), timeoutMs);
    });
    try {
      while (this.#ready.length === 0) {
        if (this.#eof) return null;
        const got = await Promise.race([this.#read(), timeout]);
        if (got === "timeout") assert.fail("RawConn.frame(): timed out");
      }
      return this.#ready.shift()!;
    } finally {
      clearTimeout(timer);
    }
  }

  #pending: Promise<void> | undefined;

  #read(): Promise<void> {
    this.#pending ??= (async () => {
      let n: number | null;
      try {
        n = await this.conn.read(this.#buf);
      } catch {
        n = null;
      }
      if (n === null) this.#eof = true;
      else this.#ready.push(...this.#decoder.push(this.#buf.subarray(0, n)));
    })().finally(() => (this.#pending = undefined));
    return this.#pending;
  }

  /**
   * Read frames until EOF.
   * @param timeoutMs how long in all
   * @returns every frame before EOF
   */
  async untilEof(timeoutMs = WAIT_MS): Promise<Uint8Array[]> {
    const out: Uint8Array[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = await this.frame(Math.max(1, deadline - Date.now()));
      if (f === null) return out;
      out.push(f);
    }
  }

  /** Close; idempotent. Waits for a read in flight. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      try {
        this.conn.close();
      } catch {
        // Already closed.
      }
    }
    await this.#pending?.catch(() => {});
  }
}
