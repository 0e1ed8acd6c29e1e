/**
 * The joiner opens the ticket of the server's `join` at once, before it
 * connects (PROTOCOL.md section 6; issue 16 items 1 and 4): a ticket it
 * cannot open, that names another host, that has expired by the server's
 * clock, or whose id is not the `join`'s, ends the attempt with nothing
 * dialled and nothing spent.
 * @module
 */

import assert from "node:assert/strict";
import type {
  ClientContext,
  ClientOptions,
  NewEvent,
} from "../lib/client/mod.ts";
import { Joining } from "../lib/client/joining.ts";
import type { ServerConnection } from "../lib/client/server_link.ts";
import {
  sealTicket,
  type ServerToClient,
  type TicketKeys,
  TicketReplayCache,
} from "../lib/proto/mod.ts";
import { randomBytes } from "../lib/util/mod.ts";
import type { Network } from "../lib/wire/mod.ts";

type Join = Extract<ServerToClient, { t: "join" }>;

const KEYS: TicketKeys = { enc: randomBytes(32), mac: randomBytes(32) };

/** A genuine `join` for B from host A, as the server makes it. */
function genuineJoin(
  o: { keys?: TicketKeys; host?: string; expiresAt?: number } = {},
): Join {
  const id = randomBytes(16);
  const expiresAt = o.expiresAt ?? Date.now() + 30_000;
  const ticket = sealTicket(o.keys ?? KEYS, {
    id,
    host: o.host ?? "A",
    joiner: "B",
    expiresAt,
    peerKey: randomBytes(32),
  });
  return {
    t: "join",
    peer: "A",
    addr: "127.0.0.1:1",
    ticket: ticket.toBase64(),
    ticketId: id.toHex(),
    expiresAt,
    // Never read: each join of this file fails at its ticket, which comes
    // first (the host's key is checked in tests/peer_pinning_test.ts).
    identity: "",
  };
}

/** B's attempt to join A, on fakes that record what it shows and dials. */
function attempt(serverNow = () => Date.now()) {
  const events: NewEvent[] = [];
  const dialled: string[] = [];
  let failed = 0;
  const network = {
    connect(host: string, port: number) {
      dialled.push(`${host}:${port}`);
      return Promise.reject(new Error("no network in this test"));
    },
  } as unknown as Network;
  const ctx: ClientContext = {
    o: { user: "B", network } as unknown as ClientOptions,
    print: (ev) => events.push(ev),
    system: (text) => events.push({ kind: "system", text }),
    error: (e) => assert.fail(`unexpected error ${e}`),
    track: () => {},
  };
  const link = {
    login: { ticketKeys: KEYS },
    serverNow,
  } as unknown as ServerConnection;
  const joining = new Joining(
    ctx,
    link,
    {
      started: () => assert.fail("no session may start"),
      failed: () => {
        failed++;
        return Promise.resolve();
      },
    },
    new TicketReplayCache(),
    "A",
  );
  return { joining, events, dialled, failed: () => failed };
}

/** Run `join` and return the one error it showed. */
async function refusal(join: Join, serverNow?: () => number) {
  const a = attempt(serverNow);
  await a.joining.run(join);
  const errors = a.events.filter((e) => e.kind === "error");
  assert.equal(errors.length, 1, JSON.stringify(a.events));
  assert.deepEqual(a.dialled, [], "nothing was dialled");
  assert.equal(a.failed(), 1, "the attempt ended (the host is released)");
  const e = errors[0]!;
  assert.ok(e.kind === "error");
  return e;
}

Deno.test("a join whose ticket id is not its ticketId is refused as misbound before the joiner connects (issue 16 item 4)", async () => {
  const join = genuineJoin();
  const e = await refusal({ ...join, ticketId: randomBytes(16).toHex() });
  assert.equal(e.code, "misbound");
  assert.match(e.text, /^Session with A failed: Ticket rejected: its id /);
});

Deno.test("a join whose ticket was sealed with other ticket keys is refused as bad-ticket before the joiner connects", async () => {
  const e = await refusal(
    genuineJoin({ keys: { enc: randomBytes(32), mac: randomBytes(32) } }),
  );
  assert.equal(e.code, "bad-ticket");
});

Deno.test("a join whose ticket names another host is refused as misbound before the joiner connects", async () => {
  const e = await refusal(genuineJoin({ host: "C" }));
  assert.equal(e.code, "misbound");
  assert.match(e.text, /C -> B, expected A -> B/);
});

Deno.test("a join whose ticket or ticketId is not readable is refused as bad-ticket before the joiner connects", async () => {
  for (
    const join of [
      { ...genuineJoin(), ticket: "not base64!" },
      { ...genuineJoin(), ticketId: "zz" },
    ]
  ) {
    const e = await refusal(join);
    assert.equal(e.code, "bad-ticket");
  }
});

Deno.test("the joiner reads the join's ticket expiry by the server's clock: expired by it though not by ours, it is refused before connecting", async () => {
  const expiresAt = Date.now() + 20_000;
  const e = await refusal(
    genuineJoin({ expiresAt }),
    () => expiresAt + 1, // the server is 20 s ahead of us
  );
  assert.equal(e.code, "expired");
});
