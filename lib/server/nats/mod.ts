/**
 * The server's cluster parts on NATS (PROTOCOL.md section 11): the seams of
 * seams.ts implemented across nodes: {@link NatsPresence} (11.3: one
 * sealed KV snapshot per node), {@link NatsDelivery} (11.4: sealed requests
 * to a node's subject), the mailbox store and prekeys on JetStream (11.6),
 * and {@link ClusterNode}, which joins a node to its cluster and gives an
 * `ImServer` its options (what `im serve --cluster` loads, by a dynamic
 * `import()`). Only this folder imports the NATS
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
export * from "./room_store.ts";
export * from "./mail_wake.ts";
export * from "./refusals.ts";
export * from "./room_wake.ts";
