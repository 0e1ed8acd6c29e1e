/**
 * lib/server/nats/js_retry.ts on a real nats-server (tests/_nats.ts): a
 * delete of a message another node (or our own retried call) deleted
 * already is not an error (PROTOCOL.md 11.6). Two nodes sweeping one room
 * at once once failed a member's `room-ack` with `store-failed`: nats-server
 * answers such a delete "no message found" (10057).
 * @module
 */

import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, StorageType } from "@nats-io/jetstream";
import {
  deleteIfStored,
  transientJsError,
} from "../../lib/server/nats/js_retry.ts";
import { withNats } from "../_nats.ts";

Deno.test("deleteIfStored: true once, then false for the message gone (the first, one in the middle, the last; file and memory streams); another error (no such stream) is thrown and is not transient", async () => {
  await withNats(async (nats) => {
    const nc = await connect({ servers: nats.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "GONE", subjects: ["gone.>"] });
      const a = await jetstream(nc).publish("gone.a", "x");
      const b = await jetstream(nc).publish("gone.a", "y");
      assert.equal(await deleteIfStored(jsm, "GONE", a.seq), true);
      assert.equal(await deleteIfStored(jsm, "GONE", a.seq), false);
      // The other message is untouched by either call.
      assert.equal(
        (await jsm.streams.getMessage("GONE", { seq: b.seq }))?.seq,
        b.seq,
      );
      // A message in the middle, on file and on memory storage: nats-server
      // answers the second delete 10043 "sequence N not found".
      for (const storage of [StorageType.File, StorageType.Memory]) {
        const name = `MID_${storage}`;
        await jsm.streams.add({ name, subjects: [`mid${storage}.>`], storage });
        const seqs: number[] = [];
        for (const x of ["1", "2", "3"]) {
          seqs.push((await jetstream(nc).publish(`mid${storage}.a`, x)).seq);
        }
        for (const seq of [seqs[1]!, seqs[0]!, seqs[2]!]) {
          assert.equal(
            await deleteIfStored(jsm, name, seq),
            true,
            `${name} ${seq}`,
          );
          assert.equal(
            await deleteIfStored(jsm, name, seq),
            false,
            `${name} ${seq} again`,
          );
        }
      }
      const missing = await deleteIfStored(jsm, "NO_SUCH_STREAM", 1).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(missing instanceof Error, "a missing stream is an error");
      assert.match(String(missing), /stream not found/i);
      assert.equal(transientJsError(missing), false);
    } finally {
      await nc.close();
    }
  });
});
