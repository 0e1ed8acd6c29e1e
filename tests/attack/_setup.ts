/**
 * Fixtures of the attack suite: an in-process {@link ImServer} on
 * 127.0.0.1 port 0 with the cached 2048-bit identities, in-process
 * {@link ChatClient}s with a UI that records what the user would see, raw
 * socket helpers, and a cleanup stack that closes everything even when a
 * test fails (the sanitizers stay green).
 *
 * @example
 * ```ts ignore
 * await withScope(async (s) => {
 *   const server = await s.server();
 *   const a = await s.client(server, "A");
 *   await a.client.handleLine("!list");
 *   await a.ui.waitFor((e) => e.kind === "list");
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
} from "../../lib/client/mod.ts";
import {
  type ChannelEvent,
  decodeErrorFrame,
  type ErrorFrame,
  type LoginResult,
  type SecureChannel,
} from "../../lib/proto/mod.ts";
import type { ImError, LogFields } from "../../lib/util/mod.ts";
import { FrameDecoder, FrameKind } from "../../lib/wire/mod.ts";
import type { PrivateIdentity, PublicIdentity } from "../../lib/crypto/mod.ts";
import { ImServer, type ServerOptions } from "../../lib/server/mod.ts";
import { type Identities, identities } from "../_helpers.ts";
import { FrameMitm, type MitmOptions } from "./_mitm.ts";

/** Heartbeats in attack tests: long, so no heartbeat record races a tampered one. */
export const QUIET_HEARTBEAT_MS = 60_000;

/** Default time any wait of this suite may take before the test fails. */
export const WAIT_MS = 5000;

/**
 * Sleep.
 * @param ms milliseconds
 */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

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

/** What the user of a client saw, in order, with a way to wait for more. */
export class CaptureUi implements ClientUi {
  readonly events: UiEvent[] = [];
  peer: string | null = null;
  #wake: Array<() => void> = [];

  print(ev: UiEvent): void {
    this.events.push(ev);
    for (const w of this.#wake.splice(0)) w();
  }

  setPeer(peer: string | null): void {
    this.peer = peer;
  }

  /** Events printed so far: a mark for {@link waitFor}'s `after`. */
  get mark(): number {
    return this.events.length;
  }

  /**
   * Wait for an event printed at or after index `after`.
   * @param pred the test
   * @param after only events from this index on
   * @param timeoutMs how long
   * @returns the event
   */
  async waitFor(
    pred: (e: UiEvent) => boolean,
    after = 0,
    timeoutMs = WAIT_MS,
  ): Promise<UiEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(after).find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(
          `timed out waiting for a UI event; saw since ${after}: ${
            JSON.stringify(this.events.slice(after)).slice(0, 1500)
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
  since(pred: (e: UiEvent) => boolean, after = 0): UiEvent[] {
    return this.events.slice(after).filter(pred);
  }
}

/** An error event with `code`. */
export function isError(code?: string): (e: UiEvent) => boolean {
  return (e) => e.kind === "error" && (code === undefined || e.code === code);
}

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

/** The directory A, B, C of the cached identities (and extra users sharing keys). */
export function clientDirectory(
  ids: Identities,
  extra: Record<string, PrivateIdentity> = {},
): Map<string, PublicIdentity> {
  const m = new Map<string, PublicIdentity>([
    ["A", ids.A.publicIdentity],
    ["B", ids.B.publicIdentity],
    ["C", ids.C.publicIdentity],
  ]);
  for (const [name, id] of Object.entries(extra)) {
    m.set(name, id.publicIdentity);
  }
  return m;
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
    const own =
      (ids as unknown as Record<string, PrivateIdentity | undefined>)[user];
    return {
      user,
      identity: own ?? ids.stranger,
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
export class ChannelTap {
  readonly events: ChannelEvent[] = [];
  readonly done: Promise<void>;
  #wake: Array<() => void> = [];

  /** @param ch the channel; its events are read from now on */
  constructor(ch: SecureChannel) {
    this.done = (async () => {
      for await (const ev of ch.events()) {
        this.events.push(ev);
        for (const w of this.#wake.splice(0)) w();
      }
    })();
  }

  /** Events so far: a mark for `after`. */
  get mark(): number {
    return this.events.length;
  }

  /**
   * Wait for an event at or after index `after`.
   * @param pred the test
   * @param after index
   * @param timeoutMs how long
   * @returns the event
   */
  async waitFor(
    pred: (e: ChannelEvent) => boolean,
    after = 0,
    timeoutMs = WAIT_MS,
  ): Promise<ChannelEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.events.slice(after).find(pred);
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        assert.fail(
          `timed out waiting for a channel event; saw: ${
            this.events.slice(after).map(describe).join(", ")
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
  since(pred: (e: ChannelEvent) => boolean, after = 0): ChannelEvent[] {
    return this.events.slice(after).filter(pred);
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

/** A message event of type `t`. */
export function isMsg(t: string): (e: ChannelEvent) => boolean {
  return (e) => e.kind === "message" && e.msg.t === t;
}

/** A server `error` message with `code` (rule 3.5: the user is told why). */
export function isServerError(code: string): (e: ChannelEvent) => boolean {
  return (e) =>
    e.kind === "message" && e.msg.t === "error" && e.msg.code === code;
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

/**
 * Decode an ERROR frame, failing the test on anything else.
 * @param p a payload
 * @returns code and message
 */
export function expectErrorFrame(p: Uint8Array | null): ErrorFrame {
  assert.ok(p !== null, "expected an ERROR frame, got EOF");
  assert.equal(
    p[0],
    FrameKind.ERROR,
    `expected an ERROR frame, got kind ${p[0]}`,
  );
  return decodeErrorFrame(p);
}

/**
 * Log in as `user` and check `!list` answers: the server still serves.
 * @param s the scope
 * @param port the server
 * @param user who
 */
export async function assertServes(
  s: Scope,
  port: number,
  user = "C",
): Promise<void> {
  const { client, ui } = await s.client(port, user);
  const mark = ui.mark;
  await client.handleLine("!list");
  const ev = await ui.waitFor((e) => e.kind === "list", mark);
  assert.ok(ev.kind === "list" && ev.users.some((u) => u.name === user));
  await client.quit();
}

/** The error of a rejected promise, as an {@link ImError}. */
export async function rejection(p: Promise<unknown>): Promise<ImError> {
  try {
    await p;
  } catch (e) {
    return e as ImError;
  }
  assert.fail("expected a rejection");
}

/**
 * A free TCP port on 127.0.0.1 (listen on 0, close, return it).
 * @returns the port
 */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Two clients in a direct peer session, the joiner's connection through a MITM. */
export interface PeerPair {
  host: TestClient;
  joiner: TestClient;
  mitm: FrameMitm;
  /** The host's listening port (behind the MITM). */
  hostPort: number;
}

/**
 * Log in `hostUser` and `joinerUser`; the host hosts on a free port and
 * advertises the MITM in front of it, the joiner joins. Resolves when both
 * see the session start.
 * @param s the scope
 * @param port the server
 * @param hostUser e.g. A
 * @param joinerUser e.g. B
 * @param over client option overrides for both
 * @returns the pair
 */
export async function peerPair(
  s: Scope,
  port: number,
  hostUser = "A",
  joinerUser = "B",
  over: Partial<ClientOptions> = {},
): Promise<PeerPair> {
  const hostPort = freePort();
  const mitm = s.mitm(hostPort);
  const host = await s.client(port, hostUser, {
    listenPort: hostPort,
    advertise: `127.0.0.1:${mitm.port}`,
    ...over,
  });
  const joiner = await s.client(port, joinerUser, over);
  await host.ui.waitFor((e) =>
    e.kind === "system" && e.text.startsWith("Logged in")
  );
  await joiner.ui.waitFor((e) =>
    e.kind === "system" && e.text.startsWith("Logged in")
  );
  await host.client.handleLine("!session host");
  await host.ui.waitFor((e) =>
    e.kind === "system" && e.text.startsWith("Hosting at")
  );
  await joiner.client.handleLine(`!session ${hostUser}`);
  await Promise.all([
    host.ui.waitFor((e) => e.kind === "session" && e.state === "started"),
    joiner.ui.waitFor((e) => e.kind === "session" && e.state === "started"),
  ]);
  return { host, joiner, mitm, hostPort };
}
