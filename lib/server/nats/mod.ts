/**
 * The server's cluster parts on NATS (PROTOCOL.md section 11): the seams of
 * seams.ts implemented across nodes, today {@link NatsPresence} (11.3:
 * one sealed KV snapshot per node). Only this folder imports the NATS
 * project's own client (`@nats-io/transport-node`, `@nats-io/kv`,
 * `@nats-io/jetstream`), and `lib/server/mod.ts` does not import this
 * folder: `im serve` without `--cluster` never loads an npm package; the
 * cluster's wiring imports `lib/server/nats/mod.ts` itself. May import:
 * util, crypto, proto, the server's seams, and those NATS packages.
 * @module
 */

export * from "./presence.ts";
export * from "./delivery.ts";
export * from "./node.ts";
export * from "./store.ts";
export * from "./prekeys.ts";
