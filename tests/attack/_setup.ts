/**
 * Checks of the attack suite on top of the shared in-process fixtures of
 * `../_fixtures.ts`: ERROR frames, a server that still serves after an
 * attack, rejections, server messages on a bare channel, and a peer
 * session with a MITM on the joiner's connection.
 *
 * @example
 * ```ts ignore
 * await withScope(async (s) => {
 *   const { port } = await s.server();
 *   const raw = await s.raw(port);
 *   await raw.write(new Uint8Array([0, 0]));
 *   expectErrorFrame(await raw.frame());
 *   await assertServes(s, port);
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import type { ClientOptions } from "../../lib/client/mod.ts";
import {
  type ChannelEvent,
  decodeErrorFrame,
  type ErrorFrame,
} from "../../lib/proto/mod.ts";
import type { ImError } from "../../lib/util/mod.ts";
import { FrameKind } from "../../lib/wire/mod.ts";
import { freePort } from "../_helpers.ts";
import type { Scope, TestClient } from "../_fixtures.ts";
import type { FrameMitm } from "../_fixtures_mitm.ts";

/** A message event of type `t`. */
export function isMsg(t: string): (e: ChannelEvent) => boolean {
  return (e) => e.kind === "message" && e.msg.t === t;
}

/** A server `error` message with `code` (rule 3.5: the user is told why). */
export function isServerError(code: string): (e: ChannelEvent) => boolean {
  return (e) =>
    e.kind === "message" && e.msg.t === "error" && e.msg.code === code;
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
