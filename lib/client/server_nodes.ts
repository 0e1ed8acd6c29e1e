/**
 * The nodes a client may log in to (PROTOCOL.md 11.7): the list from the
 * settings, how an address is written, and which failures of a login mean
 * "try another node" rather than "stop".
 * @module
 */

import { AuthError, isImError } from "../util/mod.ts";
import type { ClientOptions, ServerAddress } from "./options.ts";

/**
 * How many times the first login tries every node of a list before it
 * gives up, with the reconnect backoff between rounds. A single server is
 * tried once, as before clusters.
 */
export const FIRST_CONNECT_ROUNDS = 3;

/**
 * The nodes a client tries: `servers` when given, else the one server.
 * @param o client settings
 * @returns at least one address
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { serverAddresses } from "./server_nodes.ts";
 * import type { ClientOptions } from "./options.ts";
 * const o = { serverHost: "::1", serverPort: 7000 } as ClientOptions;
 * assert.deepEqual(serverAddresses(o), [{ host: "::1", port: 7000 }]);
 * ```
 */
export function serverAddresses(o: ClientOptions): ServerAddress[] {
  return o.servers && o.servers.length > 0
    ? o.servers.map(({ host, port }) => ({ host, port }))
    : [{ host: o.serverHost, port: o.serverPort }];
}

/**
 * `host:port`, an IPv6 host in brackets, as `--server` takes it.
 * @param a the address
 * @returns its text
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { addressText } from "./server_nodes.ts";
 * assert.equal(addressText({ host: "::1", port: 7000 }), "[::1]:7000");
 * ```
 */
export function addressText(a: ServerAddress): string {
  return a.host.includes(":") ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * May a failed login be tried at another node? A connection refused or
 * lost, a timeout, a busy or closing node: yes, that was the address. Not
 * a refused login or another server key ({@link AuthError}: every node has
 * the same key and the same users), nor a failure that is not ours.
 * @param e what the login threw
 * @returns whether the next node may be tried
 */
export function isNodeFailure(e: unknown): boolean {
  return isImError(e) && !(e instanceof AuthError);
}

/**
 * A failure's message, naming the node when it does not already.
 * @param a the node the login went to
 * @param e what it threw
 * @returns the message, with `host:port` in it
 */
export function failureAt(a: ServerAddress, e: unknown): string {
  const m = (e as Error)?.message ?? String(e);
  // loginToServer's own messages name it as `host:port`, unbracketed.
  return m.includes(`${a.host}:${a.port}`) ? m : `${addressText(a)}: ${m}`;
}
