/**
 * Record tampering, tlsfuzzer style (requirements 3.4, 3.5): a man in the
 * middle flips a bit at every byte position of a record, on the server
 * channel both ways and on a peer channel both ways. Each altered record
 * must be rejected and reported to the user as an integrity failure,
 * nothing of it may be delivered, and the next genuine record must still be
 * accepted.
 */

import assert from "node:assert/strict";
import { FrameKind } from "../../lib/wire/mod.ts";
import { RecordType } from "../../lib/record/mod.ts";
import type { UiEvent } from "../../lib/client/mod.ts";
import { flipBit } from "../_helpers.ts";
import type { Dir, MitmFrame } from "../_fixtures_mitm.ts";
import {
  isError,
  isList,
  type TestClient,
  until,
  withScope,
} from "../_fixtures.ts";
import { peerPair } from "./_setup.ts";

/** Bit flipped at byte position `pos` in round `round`: every bit of a byte over 8 rounds. */
function bitAt(pos: number, round: number): number {
  return pos * 8 + ((pos + round) % 8);
}

/** Rounds: in round r, byte p gets bit (p + r) mod 8 flipped, so 8 rounds flip every bit of the record. */
const ROUNDS = 8;

/** Arms a hook that alters the next DATA record going `dir`. */
function armer(dir: Dir) {
  let next: ((p: Uint8Array) => Uint8Array) | undefined;
  let lastLength = 0;
  const hook = (f: MitmFrame) => {
    const isData = f.payload[0] === FrameKind.RECORD &&
      f.payload[1] === RecordType.DATA;
    if (f.dir === dir && isData) {
      lastLength = f.payload.length;
      if (next) {
        const alter = next;
        next = undefined;
        return [alter(f.payload)];
      }
    }
    return [f.payload];
  };
  return {
    hook,
    arm(alter: (p: Uint8Array) => Uint8Array) {
      next = alter;
    },
    get armed() {
      return next !== undefined;
    },
    get lastLength() {
      return lastLength;
    },
  };
}

/** The code a flip at `pos` must be reported with: byte 0 is the frame kind, the rest fail the tag. */
function expectedCode(pos: number): string {
  return pos === 0 ? "unexpected-frame" : "tampered";
}

/**
 * Each flip is followed by a `!list` that must be answered: the per-user
 * request limits (PROTOCOL.md section 5.2) are lifted for these tests.
 */
const NO_REQUEST_LIMITS = {
  requestLimits: { list: { burst: 1_000_000, refillMs: 1 } },
};

Deno.test("server channel, client to server: a bit flip at every byte of a record is rejected, reported to the client, nothing delivered, and the next genuine record accepted", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server(NO_REQUEST_LIMITS);
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    const arm = armer("up");
    mitm.hook = arm.hook;
    let mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor(isList, mark);
    const length = arm.lastLength;
    assert.ok(length > 50, `a !list record is ${length} bytes`);
    let rounds = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (let pos = 0; pos < length; pos++) {
        const bit = bitAt(pos, round);
        arm.arm((p) => flipBit(p, bit));
        mark = a.ui.mark;
        await a.client.handleLine("!list"); // altered on the way
        const err = await a.ui.waitFor(isError(), mark);
        assert.ok(err.kind === "error");
        assert.equal(err.code, expectedCode(pos), `byte ${pos} bit ${bit}`);
        assert.ok(!arm.armed, "the flip was applied");
        await a.client.handleLine("!list"); // genuine
        await a.ui.waitFor(isList, mark);
        assert.equal(
          a.ui.since(isList, mark).length,
          1,
          `byte ${pos} bit ${bit}: only the genuine request was answered`,
        );
        rounds++;
      }
    }
    assert.equal(
      rounds,
      length * 8,
      "every bit of the record was flipped once",
    );
    const discarded = log.filter((l) => l.event === "record-discarded");
    assert.equal(discarded.length, rounds, "the server logged every discard");
  });
});

Deno.test("server channel, server to client: a bit flip at every byte of a record is rejected and shown to the user, nothing delivered, and the next genuine record accepted", async () => {
  await withScope(async (s) => {
    const { port } = await s.server(NO_REQUEST_LIMITS);
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    const arm = armer("down");
    mitm.hook = arm.hook;
    await a.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Logged in")
    );
    let mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor(isList, mark);
    const length = arm.lastLength;
    assert.ok(length > 50, `a users record is ${length} bytes`);
    for (let round = 0; round < ROUNDS; round++) {
      for (let pos = 0; pos < length; pos++) {
        const bit = bitAt(pos, round);
        arm.arm((p) => flipBit(p, bit));
        mark = a.ui.mark;
        await a.client.handleLine("!list"); // the answer is altered
        const err = await a.ui.waitFor(isError(), mark);
        assert.ok(err.kind === "error");
        assert.equal(err.code, expectedCode(pos), `byte ${pos} bit ${bit}`);
        assert.match(err.text, /^From the server: /);
        if (pos > 0) assert.match(err.text, /integrity check failed/);
        assert.equal(a.ui.since(isList, mark).length, 0, "nothing delivered");
        await a.client.handleLine("!list"); // genuine
        await a.ui.waitFor(isList, mark);
        assert.equal(a.ui.since(isList, mark).length, 1);
      }
    }
  });
});

/** Run the flip loop on a peer channel: `from` sends, the MITM alters `dir`, `to` must refuse. */
async function peerTamper(
  from: TestClient,
  to: TestClient,
  arm: ReturnType<typeof armer>,
): Promise<{ rounds: number }> {
  const isText = (text: string) => (e: UiEvent) =>
    e.kind === "message" && e.direction === "in" && e.text === text;
  let mark = to.ui.mark;
  await from.client.handleLine("m0000-baseline");
  await to.ui.waitFor(isText("m0000-baseline"), mark);
  const length = arm.lastLength;
  assert.ok(length > 50, `a chat record is ${length} bytes`);
  let rounds = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (let pos = 0; pos < length; pos++) {
      const bit = bitAt(pos, round);
      const n = String(rounds).padStart(4, "0");
      arm.arm((p) => flipBit(p, bit % (p.length * 8)));
      mark = to.ui.mark;
      await from.client.handleLine(`x${n}-tampered`);
      const err = await to.ui.waitFor(isError(), mark);
      assert.ok(err.kind === "error");
      assert.equal(err.code, expectedCode(pos), `byte ${pos} bit ${bit}`);
      await from.client.handleLine(`m${n}-genuine`);
      await to.ui.waitFor(isText(`m${n}-genuine`), mark);
      assert.equal(
        to.ui.since(
          (e) => e.kind === "message" && e.text.includes("tampered"),
          mark,
        )
          .length,
        0,
        `byte ${pos} bit ${bit}: the altered message was not delivered`,
      );
      rounds++;
    }
  }
  assert.equal(
    rounds,
    length * ROUNDS,
    "every bit of the record was flipped once",
  );
  return { rounds };
}

Deno.test("peer channel, joiner to host: a bit flip at every byte of a chat record is rejected and shown, nothing delivered, the next genuine message arrives, and the sender sees the altered ones as undelivered", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, joiner, mitm } = await peerPair(s, port);
    const arm = armer("up");
    mitm.hook = arm.hook;
    const { rounds } = await peerTamper(joiner, host, arm);
    const delivered = (e: UiEvent) =>
      e.kind === "receipt" && e.status === "delivered";
    await until(
      () => joiner.ui.since(delivered).length === rounds + 1,
      "receipts of every genuine message",
    );
    const mark = joiner.ui.mark;
    await joiner.client.handleLine("!disconnect");
    await joiner.ui.waitFor(
      (e) => e.kind === "session" && e.state === "ended",
      mark,
    );
    const undelivered = joiner.ui.since(
      (e) => e.kind === "receipt" && e.status === "undelivered",
      mark,
    );
    assert.equal(
      undelivered.length,
      rounds,
      "every altered message is reported undelivered",
    );
  });
});

Deno.test("peer channel, host to joiner: a bit flip at every byte of a chat record is rejected and shown, nothing delivered, and the next genuine message arrives", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, joiner, mitm } = await peerPair(s, port);
    const arm = armer("down");
    mitm.hook = arm.hook;
    await peerTamper(host, joiner, arm);
  });
});
