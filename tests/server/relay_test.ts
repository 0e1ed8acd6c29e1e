/**
 * The relay as a part: it forwards only between partners, refuses to its
 * sender (through the sender's reply) what it cannot forward, and reaches
 * the partner only through the {@link Delivery}.
 * @module
 */

import assert from "node:assert/strict";
import {
  MemoryPresence,
  RELAY_QUEUE_BUDGET_BYTES,
} from "../../lib/server/mod.ts";
import { Relay } from "../../lib/server/relay.ts";
import {
  failedWrite,
  fakeSession,
  RecordingDelivery,
  replies,
} from "./_parts.ts";

function setup() {
  const presence = new MemoryPresence();
  for (const u of ["A", "B", "C"]) presence.join(u, "local");
  presence.update("A", { state: "BUSY", partner: "B", isHost: true });
  presence.update("B", { state: "BUSY", partner: "A", isHost: false });
  const delivery = new RecordingDelivery();
  return { presence, delivery, relay: new Relay(presence, delivery) };
}

const errorCodes = (answers: Array<{ t: string; code?: string }>) =>
  answers.map((a) => a.t === "error" ? a.code : a.t);

Deno.test("Relay.forward() between partners delivers relayed to the partner, under the queue budget, and answers nothing", async () => {
  const { delivery, relay } = setup();
  const r = replies();
  await relay.forward(
    fakeSession("B"),
    { t: "relay", peer: "A", data: "AQID" },
    r.reply,
  );
  assert.deepEqual(delivery.given, [{
    user: "A",
    msg: { t: "relayed", peer: "B", data: "AQID" },
    opts: { maxQueuedBytes: RELAY_QUEUE_BUDGET_BYTES },
  }]);
  await new Promise((res) => setTimeout(res, 0));
  assert.deepEqual(r.answers, []);
});

Deno.test("Relay.forward() to someone who is not the sender's partner (either way) answers no-session and delivers nothing", async () => {
  const { presence, delivery, relay } = setup();
  const r = replies();
  await relay.forward(
    fakeSession("C"),
    { t: "relay", peer: "A", data: "" },
    r.reply,
  );
  await relay.forward(
    fakeSession("A"),
    { t: "relay", peer: "C", data: "" },
    r.reply,
  );
  // B still names A, but A has moved on: no relay.
  presence.update("A", { state: "IDLE" });
  await relay.forward(
    fakeSession("B"),
    { t: "relay", peer: "A", data: "" },
    r.reply,
  );
  assert.deepEqual(errorCodes(r.answers), [
    "no-session",
    "no-session",
    "no-session",
  ]);
  assert.deepEqual(delivery.given, []);
});

Deno.test("Relay.forward() to a partner that is not keeping up answers relay-busy to the sender", async () => {
  const { delivery, relay } = setup();
  delivery.answer = () => ({ delivered: false, reason: "busy" });
  const r = replies();
  await relay.forward(
    fakeSession("B"),
    { t: "relay", peer: "A", data: "" },
    r.reply,
  );
  assert.deepEqual(errorCodes(r.answers), ["relay-busy"]);
});

Deno.test("Relay.forward() to a partner that cannot be reached answers nothing (its leave will cancel the session)", async () => {
  const { delivery, relay } = setup();
  delivery.answer = () => ({ delivered: false, reason: "absent" });
  const r = replies();
  await relay.forward(
    fakeSession("B"),
    { t: "relay", peer: "A", data: "" },
    r.reply,
  );
  await new Promise((res) => setTimeout(res, 0));
  assert.deepEqual(r.answers, []);
});

Deno.test("a relayed message too large for the partner's channel is answered relay-too-large; another write failure is not the sender's to hear", async () => {
  const { delivery, relay } = setup();
  const r = replies();
  delivery.answer = () => failedWrite("message-too-large");
  await relay.forward(
    fakeSession("B"),
    { t: "relay", peer: "A", data: "xx" },
    r.reply,
  );
  delivery.answer = () => failedWrite("closed");
  await relay.forward(
    fakeSession("B"),
    { t: "relay", peer: "A", data: "yy" },
    r.reply,
  );
  await new Promise((res) => setTimeout(res, 0));
  assert.deepEqual(errorCodes(r.answers), ["relay-too-large"]);
  const [e] = r.answers;
  assert.ok(e?.t === "error" && /Cannot relay 2 bytes to A/.test(e.message));
});
