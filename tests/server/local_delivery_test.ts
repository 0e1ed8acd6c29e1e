/**
 * {@link LocalDelivery} against the delivery contract, twice: over bare
 * outboxes (to see backlogs and failures), and over the server's
 * {@link Registry} with users logged in on real channels over memory
 * transports (what the server does).
 * @module
 */

import assert from "node:assert/strict";
import { NetError } from "../../lib/util/mod.ts";
import {
  ClientLink,
  ServerLink,
  type ServerToClient,
} from "../../lib/proto/mod.ts";
import { memoryPair } from "../../lib/wire/mod.ts";
import {
  type ClientSession,
  LOCAL_NODE,
  LocalDelivery,
  MemoryPresence,
  type Outbox,
  type Push,
  Registry,
} from "../../lib/server/mod.ts";
import { loginInMemory } from "../_helpers.ts";
import { type Connected, deliveryContract } from "./delivery_contract.ts";

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

deliveryContract("LocalDelivery over outboxes", () => {
  const boxes = new Map<string, Outbox>();
  return {
    delivery: new LocalDelivery((user) => boxes.get(user)),
    connect(user): Connected {
      const received: Push[] = [];
      let queued = 0;
      let broken = false;
      const box: Outbox = {
        send: (m) =>
          broken
            ? Promise.reject(new NetError("closed", "Connection is closed"))
            : Promise.resolve(void received.push(m)),
        get queuedBytes() {
          return queued;
        },
      };
      boxes.set(user, box);
      return {
        received,
        waitFor: (n) => until(() => received.length >= n, `${n} messages`),
        disconnect: () => void boxes.delete(user),
        setBacklog: (n) => void (queued = n),
        breakConnection: () => void (broken = true),
      };
    },
  };
});

deliveryContract(
  "LocalDelivery over the Registry, on logged-in channels",
  () => {
    const registry = new Registry(new MemoryPresence(), LOCAL_NODE);
    const ends: Array<() => Promise<void>> = [];
    return {
      delivery: new LocalDelivery((user) => registry.outbox(user)),
      async connect(user): Promise<Connected> {
        const login = await loginInMemory(user);
        const [serverEnd, clientEnd] = memoryPair("client", "server");
        const channel = new ClientLink(
          serverEnd,
          login.server.sealer,
          login.server.opener,
          { heartbeatMs: 0 },
        );
        const session: ClientSession = {
          user,
          remote: "client",
          channel,
          fingerprint: "",
          ticketKeys: login.server.ticketKeys,
        };
        registry.add(session);
        const link = new ServerLink(
          clientEnd,
          login.client.sealer,
          login.client.opener,
          { heartbeatMs: 0 },
        );
        const received: ServerToClient[] = [];
        const reading = (async () => {
          for await (const ev of link.events()) {
            if (ev.kind === "message") received.push(ev.msg);
          }
        })();
        const end = async () => {
          registry.remove(session);
          channel.abort("test over");
          link.abort("test over");
          await reading;
        };
        ends.push(end);
        return {
          received,
          waitFor: (n) => until(() => received.length >= n, `${n} messages`),
          disconnect: end,
          breakConnection: () => channel.abort("broken"),
        };
      },
      async close() {
        for (const end of ends) await end();
      },
    };
  },
);
