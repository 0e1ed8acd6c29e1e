/**
 * `encodePadded` (lib/proto/message_channel.ts, PROTOCOL.md section 6,
 * "Padding"): encoding straight into the bucket (issue 15) gives the same
 * bytes as encoding and then padding, for every length around the buckets,
 * for texts whose UTF-8 is longer than their JSON string (2, 3 and 4 bytes a
 * character, escapes, lone surrogates), and under every cap.
 */

import assert from "node:assert/strict";
import {
  decodePeerToPeer,
  encodeMessage,
  encodePadded,
  type Message,
  padToBucket,
} from "../lib/proto/mod.ts";

const PIECES = ["a", "é", "€", "😀", "\n", "\u0001", '"', "\ud800"];

Deno.test("encodePadded() gives the bytes of padToBucket(encodeMessage(m)) for texts of every kind around the buckets, under every cap", () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let len = 0; len < 300; len++) {
    for (let variant = 0; variant < 4; variant++) {
      let text = "";
      for (let i = 0; i < len; i++) {
        text += variant === 0 ? "x" : PIECES[rand(PIECES.length)];
      }
      const m: Message = { t: "msg", id: String(len), text };
      const plain = encodeMessage(m);
      for (const room of [Infinity, 4096, 256, 100, 64, 40]) {
        const want = padToBucket(plain, room);
        const got = encodePadded(m, room);
        assert.deepEqual(
          got,
          want,
          `length ${len}, variant ${variant}, room ${room}`,
        );
        if (room >= plain.length) {
          const back = decodePeerToPeer(got);
          assert.deepEqual(back, decodePeerToPeer(plain));
        }
      }
    }
  }
  // A receipt is 64 bytes, its count included.
  assert.equal(
    encodePadded({ t: "ack", id: "123", count: 64 }, 1000).length,
    64,
  );
});
