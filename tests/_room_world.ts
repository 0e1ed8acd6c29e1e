/**
 * A world for room tests (PROTOCOL.md section 10): a real {@link ImServer}
 * over a {@link MemoryNetwork} with its room store, mail store and
 * published keys within the test's reach (to play a malicious server), and
 * real {@link ChatClient}s for users A to F, each keeping one mail vault,
 * one room vault and one pin store across its logins, as a key directory
 * would.
 * @module
 */

import assert from "node:assert/strict";
import {
  ChatClient,
  type ClientOptions,
  MemoryMailVault,
  MemoryRoomVault,
  type UiEvent,
} from "../lib/client/mod.ts";
import { MemoryPeerPins } from "../lib/client/pinning.ts";
import {
  generateRsaKeyPair,
  loadPrivateIdentity,
  type PrivateIdentity,
} from "../lib/crypto/mod.ts";
import type { RoomVault } from "../lib/proto/mod.ts";
import {
  ImServer,
  MemoryPrekeys,
  MemoryRoomStore,
  MemoryStore,
  type ServerOptions,
} from "../lib/server/mod.ts";
import { sleep } from "../lib/util/mod.ts";
import { MemoryNetwork } from "../lib/wire/mod.ts";
import { type Identities, identities } from "./_helpers.ts";
import { CaptureUi } from "./_fixtures.ts";

/** RFC 5737 TEST-NET-1: no TCP listener could be here. */
const HOST = "192.0.2.1";

/** The users of a room world. */
export const USERS = ["A", "B", "C", "D", "E", "F"] as const;
/** One of {@link USERS}. */
export type RoomUser = typeof USERS[number];

let extra: Promise<Record<"D" | "E" | "F", PrivateIdentity>> | undefined;

/** D, E and F: 2048-bit identities made once per process. */
function moreIdentities(): Promise<Record<"D" | "E" | "F", PrivateIdentity>> {
  extra ??= (async () => {
    const [d, e, f] = await Promise.all(
      ["D", "E", "F"].map(async (n) =>
        loadPrivateIdentity(
          (await generateRsaKeyPair(2048)).privatePem,
          `${n} private key`,
        )
      ),
    );
    return { D: d!, E: e!, F: f! };
  })();
  return extra;
}

/** A logged-in user. */
export interface Member {
  c: ChatClient;
  ui: CaptureUi;
  quit(): Promise<void>;
}

/**
 * @param over server options
 * @param extraUsers more users, all with the stranger's key (a room of many
 *   without a key generation each)
 * @returns a world; close it
 */
export async function roomWorld(
  over: Partial<ServerOptions> = {},
  extraUsers: readonly string[] = [],
) {
  const base = await identities();
  const more = await moreIdentities();
  const ids: Record<RoomUser, PrivateIdentity> & Identities = {
    ...base,
    ...more,
  };
  const net = new MemoryNetwork();
  const store = new MemoryStore();
  const prekeys = new MemoryPrekeys();
  const rooms = new MemoryRoomStore();
  const clients = new Map(
    USERS.map((u) => [u as string, ids[u].publicIdentity]),
  );
  for (const u of extraUsers) clients.set(u, ids.stranger.publicIdentity);
  const identityOf = (u: string): PrivateIdentity =>
    (ids as unknown as Record<string, PrivateIdentity | undefined>)[u] ??
      ids.stranger;
  const server = await ImServer.start({
    network: net,
    hostname: HOST,
    port: 0,
    identity: ids.server,
    clients,
    heartbeatMs: 0,
    store,
    prekeys,
    rooms,
    mailRate: 100_000,
    ...over,
  });
  const mailVaults = new Map<string, MemoryMailVault>();
  const roomVaults = new Map<string, RoomVault>();
  const pins = new Map<string, MemoryPeerPins>();
  const live = new Set<ChatClient>();

  /** Log `user` in; resolve once its mailbox keys are on the server. */
  const login = async (
    user: RoomUser | string,
    more: Partial<ClientOptions> = {},
  ): Promise<Member> => {
    const ui = new CaptureUi();
    if (!mailVaults.has(user)) mailVaults.set(user, new MemoryMailVault());
    if (!roomVaults.has(user)) roomVaults.set(user, new MemoryRoomVault());
    if (!pins.has(user)) pins.set(user, new MemoryPeerPins());
    const c = await ChatClient.start({
      user,
      identity: identityOf(user),
      pinnedServer: ids.serverPinned,
      serverHost: HOST,
      serverPort: server.port,
      ui,
      network: net,
      heartbeatMs: 0,
      reconnect: false,
      waitForReplies: true,
      mailVault: mailVaults.get(user)!,
      roomVault: roomVaults.get(user)!,
      peerPins: pins.get(user)!,
      ...more,
    });
    live.add(c);
    await c.settled();
    await eventually(
      async () => (await prekeys.certs(user)) !== undefined,
      `${user}'s keys published`,
    );
    await c.mailSynced();
    return {
      c,
      ui,
      quit: async () => {
        live.delete(c);
        await c.quit();
      },
    };
  };

  const close = async () => {
    for (const c of live) await c.quit();
    await server.close();
    await store.close();
    await prekeys.close();
    await rooms.close();
  };
  return {
    ids,
    server,
    store,
    prekeys,
    rooms,
    roomVaults,
    login,
    close,
  };
}

/** A world, closed after `body`, pass or fail. */
export async function withRoomWorld(
  body: (w: Awaited<ReturnType<typeof roomWorld>>) => Promise<void>,
  over: Partial<ServerOptions> = {},
  extraUsers: readonly string[] = [],
): Promise<void> {
  const w = await roomWorld(over, extraUsers);
  try {
    await body(w);
  } finally {
    await w.close();
  }
}

/** Poll an async condition until it holds. */
export async function eventually(
  cond: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A room message shown to its reader. */
export const roomIn = (room: string, text?: string) => (e: UiEvent) =>
  e.kind === "message" && e.direction === "in" && e.room === room &&
  (text === undefined || e.text === text);

/** A room's membership change. */
export const roomChange = (room: string, change?: string) => (e: UiEvent) =>
  e.kind === "room" && e.room === room &&
  (change === undefined || e.change === change);
