/**
 * What the end-to-end tests look for in the `--json` events of `im chat`,
 * and the step most of them take first: one user hosts, another joins.
 *
 * @example
 * ```ts ignore
 * const { hostEv, joinEv } = await session(a, b);
 * const b0 = b.events.length;
 * await a.send("hi");
 * await b.waitFor(incoming("A", "hi"), undefined, b0);
 * ```
 * @module
 */

import type { ChatEvent, ChatProc } from "./harness.ts";

/**
 * A session with `peer` started.
 * @param peer the other user
 * @returns the predicate
 */
export const started = (peer: string) => (e: ChatEvent): boolean =>
  e.type === "session" && e.state === "started" && e.peer === peer;

/**
 * The session with `peer` ended.
 * @param peer the other user
 * @returns the predicate
 */
export const ended = (peer: string) => (e: ChatEvent): boolean =>
  e.type === "session" && e.state === "ended" && e.peer === peer;

/**
 * A message from `from` arrived, saying `text` (any text when undefined).
 * @param from the sender
 * @param text the exact text, or undefined for any
 * @returns the predicate
 */
export const incoming =
  (from: string, text?: string) => (e: ChatEvent): boolean =>
    e.type === "message" && e.direction === "in" && e.from === from &&
    (text === undefined || e.text === text);

/**
 * This client sent `text`.
 * @param text the exact text
 * @returns the predicate
 */
export const outgoing = (text: string) => (e: ChatEvent): boolean =>
  e.type === "message" && e.direction === "out" && e.text === text;

/**
 * An error with the stable code `code`.
 * @param code e.g. `busy`, `server-gone`
 * @returns the predicate
 */
export const errorCode = (code: string) => (e: ChatEvent): boolean =>
  e.type === "error" && e.code === code;

/** The client logged in again after losing the server. */
export const reconnected = (e: ChatEvent): boolean =>
  e.type === "system" && e.text === "Reconnected to the server";

/**
 * The client answered `!session host`: it is hosting (at its address, or
 * through the server relay).
 */
export const hosting = (e: ChatEvent): boolean =>
  e.type === "system" && /^Hosting (at|through) /.test(e.text ?? "");

/**
 * `host` types `!session host` (unless it already hosts), `joiner` types
 * `!session HOST`; resolves when both see the session start.
 * @param host the hosting client
 * @param joiner the joining client
 * @param alreadyHosting true when `host` already typed `!session host`
 * @returns the session-started event each side printed
 */
export async function session(
  host: ChatProc,
  joiner: ChatProc,
  alreadyHosting = false,
): Promise<{ hostEv: ChatEvent; joinEv: ChatEvent }> {
  const h0 = host.events.length, j0 = joiner.events.length;
  if (!alreadyHosting) {
    await host.send("!session host");
    await host.waitFor(hosting, undefined, h0);
  }
  await joiner.send(`!session ${host.user}`);
  const [hostEv, joinEv] = await Promise.all([
    host.waitFor(started(joiner.user), undefined, h0),
    joiner.waitFor(started(host.user), undefined, j0),
  ]);
  return { hostEv, joinEv };
}
