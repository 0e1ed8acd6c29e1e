/**
 * Active attacks on the record layer through real sockets (requirements
 * 2.6, 3.1-3.5): a man in the middle truncates, extends, reorders,
 * duplicates, replays and reflects records, and swaps in a record sealed
 * with the other direction's key; a client seals records with timestamps
 * outside the freshness window. Each is rejected and reported, and the
 * channel goes on.
 */

import assert from "node:assert/strict";
import {
  concat,
  ProtocolError,
  RecordError,
  utf8,
} from "../../lib/util/mod.ts";
import { DEFAULT_MAX_FRAME_BYTES, FrameKind } from "../../lib/wire/mod.ts";
import { encodeMessage, type Message } from "../../lib/proto/mod.ts";
import {
  RECORD_HEADER_BYTES,
  RECORD_MIN_BYTES,
  RecordType,
} from "../../lib/record/mod.ts";
import { assertThrowsIm, freePort, loginInMemory } from "../_helpers.ts";
import type { MitmFrame, Out } from "../_fixtures_mitm.ts";
import {
  type BareLogin,
  isError,
  isList,
  until,
  withScope,
} from "../_fixtures.ts";
import {
  assertServes,
  isMsg,
  isServerError,
  peerPair,
  rejection,
} from "./_setup.ts";

function isDataRecord(f: MitmFrame): boolean {
  return f.payload[0] === FrameKind.RECORD && f.payload[1] === RecordType.DATA;
}

/** A hook that applies `alter` once to the next DATA record going `dir`. */
function once(
  dir: "up" | "down",
  alter: (p: Uint8Array) => Out[],
): { hook: (f: MitmFrame) => Out[]; fired: () => boolean } {
  let done = false;
  return {
    hook: (f) => {
      if (!done && f.dir === dir && isDataRecord(f)) {
        done = true;
        return alter(f.payload);
      }
      return [f.payload];
    },
    fired: () => done,
  };
}

const ALTERATIONS: Array<[string, (p: Uint8Array) => Uint8Array, string]> = [
  ["its tag cut by one byte", (p) => p.slice(0, -1), "tampered"],
  // 32 bytes of tag removed: too short to be a record when the body is short.
  ["its tag cut to nothing", (p) => p.slice(0, -32), "by length"],
  [
    "one byte added after its tag",
    (p) => concat(p, new Uint8Array([0])),
    "tampered",
  ],
  [
    "32 bytes added after its tag",
    (p) => concat(p, new Uint8Array(32)),
    "tampered",
  ],
  [
    "its ciphertext cut by one byte",
    (p) =>
      concat(
        p.subarray(0, 1 + RECORD_HEADER_BYTES),
        p.subarray(2 + RECORD_HEADER_BYTES),
      ),
    "tampered",
  ],
  [
    "its ciphertext removed",
    (p) =>
      concat(p.subarray(0, 1 + RECORD_HEADER_BYTES), p.subarray(p.length - 32)),
    "tampered",
  ],
  [
    "fewer bytes than a header and a tag",
    (p) => p.slice(0, RECORD_MIN_BYTES - 1),
    "malformed",
  ],
  ["only its kind byte", (p) => p.slice(0, 1), "malformed"],
];

/** The verdict for a cut record: too short to hold a header and a tag is malformed, anything else fails the tag. */
function verdict(expected: string, altered: Uint8Array): string {
  if (expected !== "by length") return expected;
  return altered.length < RECORD_MIN_BYTES ? "malformed" : "tampered";
}

for (const [what, alter, code] of ALTERATIONS) {
  const title = code === "by length"
    ? "malformed or tampered by its length"
    : code;
  Deno.test(`a record with ${what} is rejected as ${title} both ways, nothing delivered, and the channel goes on`, async () => {
    await withScope(async (s) => {
      const { port } = await s.server();
      const mitm = s.mitm(port);
      const a = await s.client(mitm.port, "A");
      for (const dir of ["up", "down"] as const) {
        let expected = "";
        const o = once(dir, (p) => {
          const altered = alter(p);
          expected = verdict(code, altered);
          return [altered];
        });
        mitm.hook = o.hook;
        const mark = a.ui.mark;
        await a.client.handleLine("!list");
        const err = await a.ui.waitFor(isError(), mark);
        assert.ok(
          err.kind === "error" && err.code === expected,
          `${dir}: expected ${expected}, got ${JSON.stringify(err)}`,
        );
        assert.ok(o.fired());
        await a.client.handleLine("!list");
        await a.ui.waitFor(isList, mark);
        assert.equal(
          a.ui.since(isList, mark).length,
          1,
          `${dir}: nothing delivered`,
        );
      }
    });
  });
}

Deno.test("a genuine record with an empty body passes the record layer (the message layer then refuses it) and the channel goes on", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const b = await s.login(port, "A");
    const mark = b.tap.mark;
    await b.channel.transport.send(
      b.login.sealer.seal(RecordType.DATA, new Uint8Array(0)),
    );
    const err = await b.tap.waitFor(isMsg("error"), mark);
    assert.ok(err.kind === "message" && err.msg.t === "error");
    assert.notEqual(err.msg.code, "tampered", "the record itself was accepted");
    await b.channel.transport.send(
      b.login.sealer.seal(RecordType.HEARTBEAT, new Uint8Array(0)),
    );
    await b.channel.send({ t: "list" });
    await b.tap.waitFor(isMsg("users"), mark);
    assert.equal(b.tap.since((e) => e.kind === "discarded", mark).length, 0);
  });
});

Deno.test("a zero-length frame injected after login closes that connection (rule 1.1), and the server serves everyone else", async () => {
  await withScope(async (s) => {
    const { port, log, server } = await s.server();
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    await a.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Logged in")
    );
    await mitm.inject(0, "up", [new Uint8Array(0)]);
    await a.ui.waitFor(isError("server-gone"));
    await until(
      () => log.some((l) => l.event === "leave" && l.fields.user === "A"),
      "A's leave",
    );
    assert.ok(!server.list().some((u) => u.name === "A"));
    await assertServes(s, port);
  });
});

/** Pad a `list` message so that its record is exactly `size` bytes. */
function paddedList(size: number): Message {
  const base =
    encodeMessage({ t: "list", pad: "" } as unknown as Message).length;
  const pad = "x".repeat(size - (1 + RECORD_HEADER_BYTES + 32) - base);
  return { t: "list", pad } as unknown as Message;
}

Deno.test("a record of exactly the 64 KiB frame limit is accepted; one byte more is refused by the sender without ending the channel", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const b = await s.login(port, "A");
    const max = paddedList(DEFAULT_MAX_FRAME_BYTES);
    assert.equal(
      b.login.sealer.nextSeq >= 0n &&
        1 + RECORD_HEADER_BYTES + encodeMessage(max).length + 32,
      DEFAULT_MAX_FRAME_BYTES,
    );
    let mark = b.tap.mark;
    await b.channel.send(max);
    await b.tap.waitFor(isMsg("users"), mark);
    const seq = b.login.sealer.nextSeq;
    const e = await rejection(
      b.channel.send(paddedList(DEFAULT_MAX_FRAME_BYTES + 1)),
    );
    assert.ok(
      e instanceof ProtocolError && e.code === "message-too-large",
      e.message,
    );
    assert.equal(b.login.sealer.nextSeq, seq, "no sequence number was used up");
    assert.ok(!b.channel.closed);
    mark = b.tap.mark;
    await b.channel.send({ t: "list" });
    await b.tap.waitFor(isMsg("users"), mark);
    assert.equal(b.tap.since((ev) => ev.kind === "lost", mark).length, 0);
  });
});

Deno.test("an injected frame over the 64 KiB limit after login closes that connection, and the server serves everyone else", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server();
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    await a.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Logged in")
    );
    const big = new Uint8Array(DEFAULT_MAX_FRAME_BYTES + 1);
    big[0] = FrameKind.RECORD;
    await mitm.inject(0, "up", [big]);
    await a.ui.waitFor(isError("server-gone"));
    await until(
      () => log.some((l) => l.event === "leave" && l.fields.user === "A"),
      "A's leave",
    );
    await assertServes(s, port);
  });
});

Deno.test("reorder: of two records swapped in flight the later is accepted (one reported lost) and the earlier is rejected as replayed", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server();
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    let held: Uint8Array | undefined;
    let state: "hold" | "release" | "done" = "hold";
    mitm.hook = (f) => {
      if (f.dir !== "up" || !isDataRecord(f) || state === "done") {
        return [f.payload];
      }
      if (state === "hold") {
        held = f.payload;
        state = "release";
        return [];
      }
      state = "done";
      return [f.payload, held!];
    };
    const mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.client.handleLine("!list");
    const err = await a.ui.waitFor(isError("replayed"), mark);
    assert.ok(err.kind === "error", JSON.stringify(err));
    // The gap the held record left was reported to the user first.
    assert.ok(a.ui.since(isError("lost"), mark).length === 1);
    await a.ui.waitFor(isList, mark);
    await a.client.handleLine("!list");
    await until(() => a.ui.since(isList, mark).length === 2, "two lists");
    assert.ok(
      log.some((l) => l.event === "records-lost" && l.fields.count === 1),
    );
  });
});

Deno.test("duplicate: a record delivered twice is accepted once and the copy rejected as replayed", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    for (const dir of ["up", "down"] as const) {
      const o = once(dir, (p) => [p, p]);
      mitm.hook = o.hook;
      const mark = a.ui.mark;
      await a.client.handleLine("!list");
      const err = await a.ui.waitFor(isError(), mark);
      assert.ok(
        err.kind === "error" && err.code === "replayed",
        `${dir}: ${JSON.stringify(err)}`,
      );
      await a.client.handleLine("!list");
      await until(
        () => a.ui.since(isList, mark).length === 2,
        "the copy added nothing",
      );
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(
        a.ui.since(isList, mark).length,
        2,
        `${dir}: exactly two answers for two requests`,
      );
    }
  });
});

Deno.test("replay within the session: a recorded record injected later, both ways, is rejected as replayed", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    let mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor(isList, mark);
    const up = mitm.seen("up", 0).filter(isDataRecord).at(-1)!;
    const down = mitm.seen("down", 0).filter(isDataRecord).at(-1)!;
    for (let i = 0; i < 3; i++) {
      mark = a.ui.mark;
      await a.client.handleLine("!list");
      await a.ui.waitFor(isList, mark);
    }
    for (const [dir, f] of [["up", up], ["down", down]] as const) {
      mark = a.ui.mark;
      await mitm.inject(0, dir, [f.payload]);
      const err = await a.ui.waitFor(isError(), mark);
      assert.ok(
        err.kind === "error" && err.code === "replayed",
        `${dir}: ${JSON.stringify(err)}`,
      );
      assert.equal(
        a.ui.since(isList, mark).length,
        0,
        `${dir}: nothing delivered`,
      );
    }
  });
});

Deno.test("replay into a later session: records recorded in one login are rejected as tampered in the next, both ways", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const mitm = s.mitm(port);
    const first = await s.client(mitm.port, "A");
    let mark = first.ui.mark;
    await first.client.handleLine("!list");
    await first.ui.waitFor(isList, mark);
    const up = mitm.seen("up", 0).filter(isDataRecord);
    const down = mitm.seen("down", 0).filter(isDataRecord);
    await first.client.quit();
    const a = await s.client(mitm.port, "A");
    await a.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Logged in")
    );
    for (const [dir, frames] of [["up", up], ["down", down]] as const) {
      for (const f of frames) {
        mark = a.ui.mark;
        await mitm.inject(1, dir, [f.payload]);
        const err = await a.ui.waitFor(isError(), mark);
        assert.ok(
          err.kind === "error" && err.code === "tampered",
          `${dir}: ${JSON.stringify(err)}`,
        );
      }
    }
    mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor(isList, mark);
  });
});

Deno.test("reflection: a record sent back to its sender fails its tag (per-direction keys, rule 2.6) on the server channel both ways", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const mitm = s.mitm(port);
    const a = await s.client(mitm.port, "A");
    let mark = a.ui.mark;
    await a.client.handleLine("!list");
    await a.ui.waitFor(isList, mark);
    const mine = mitm.seen("up", 0).filter(isDataRecord).at(-1)!;
    const theirs = mitm.seen("down", 0).filter(isDataRecord).at(-1)!;
    // The client's own record, back to the client.
    mark = a.ui.mark;
    await mitm.inject(0, "down", [mine.payload]);
    let err = await a.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "tampered",
      JSON.stringify(err),
    );
    // The server's own record, back to the server: it answers with an error.
    mark = a.ui.mark;
    await mitm.inject(0, "up", [theirs.payload]);
    err = await a.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "tampered",
      JSON.stringify(err),
    );
  });
});

Deno.test("reflection on a peer channel: a chat record sent back to its sender is rejected as tampered", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const { host, joiner, mitm } = await peerPair(s, port);
    let mark = host.ui.mark;
    await joiner.client.handleLine("hello");
    await host.ui.waitFor(
      (e) => e.kind === "message" && e.text === "hello",
      mark,
    );
    const fromJoiner = mitm.seen("up").filter(isDataRecord).at(-1)!;
    mark = joiner.ui.mark;
    await mitm.inject(fromJoiner.conn, "down", [fromJoiner.payload]);
    const err = await joiner.ui.waitFor(isError(), mark);
    assert.ok(
      err.kind === "error" && err.code === "tampered",
      JSON.stringify(err),
    );
    assert.equal(
      joiner.ui.since((e) => e.kind === "message" && e.direction === "in", mark)
        .length,
      0,
    );
  });
});

Deno.test("other-direction key: the server's FINISHED (same type, sequence number and body, other key) in place of the client's is refused; the user is not logged in", async () => {
  await withScope(async (s) => {
    const { port, log, server } = await s.server();
    const mitm = s.mitm(port);
    let serverFinished: Uint8Array | undefined;
    mitm.hook = (f) => {
      if (f.payload[0] !== FrameKind.RECORD) return [f.payload];
      if (f.dir === "down" && !serverFinished) serverFinished = f.payload;
      if (f.dir === "up" && f.index === 2) {
        assert.equal(f.payload[1], RecordType.FINISHED);
        assert.deepEqual(
          f.payload.subarray(2, 10),
          serverFinished!.subarray(2, 10),
          "same sequence number",
        );
        assert.equal(
          f.payload.length,
          serverFinished!.length,
          "same body length",
        );
        return [serverFinished!];
      }
      return [f.payload];
    };
    const b: BareLogin = await s.login(mitm.port, "A");
    const closed = await b.tap.waitFor((e) => e.kind === "closed");
    assert.ok(closed.kind === "closed");
    await until(
      () =>
        log.some((l) =>
          l.event === "login-error" &&
          l.fields.error === "key-confirmation-failed"
        ),
      "the server's key-confirmation failure",
    );
    assert.ok(!server.list().some((u) => u.name === "A"), "A is not online");
    assert.ok(!log.some((l) => l.event === "join"), "nobody joined");
  });
});

Deno.test("other-direction key on a peer channel: the host's FINISHED in place of the joiner's is refused by the host", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const hostPort = freePort();
    const mitm = s.mitm(hostPort);
    let hostFinished: Uint8Array | undefined;
    mitm.hook = (f) => {
      if (f.payload[0] !== FrameKind.RECORD) return [f.payload];
      if (f.dir === "down" && !hostFinished) hostFinished = f.payload;
      if (f.dir === "up" && f.payload[1] === RecordType.FINISHED) {
        return [hostFinished!];
      }
      return [f.payload];
    };
    const host = await s.client(port, "A", {
      listenPort: hostPort,
      advertise: `127.0.0.1:${mitm.port}`,
    });
    const joiner = await s.client(port, "B");
    await host.client.handleLine("!session host");
    await host.ui.waitFor((e) =>
      e.kind === "system" && e.text.startsWith("Hosting at")
    );
    await joiner.client.handleLine("!session A");
    // The joiner had proved the peer key before this: the grant is spent and
    // cancelled, not offered again (one guess per session, rule 4.4).
    const refused = await host.ui.waitFor(isError("peer-handshake-spent"));
    assert.ok(refused.kind === "error");
    assert.match(refused.text, /could not prove it holds/);
    assert.equal(
      host.ui.since((e) => e.kind === "session" && e.state === "started")
        .length,
      0,
    );
  });
});

Deno.test("timestamps: 121 s old or ahead are rejected as stale, 119 s either way accepted (default window 120 s)", async () => {
  await withScope(async (s) => {
    const { port } = await s.server();
    const b = await s.login(port, "A");
    const list = encodeMessage({ t: "list" });
    for (
      const [skew, ok] of [[-121_000, false], [121_000, false], [
        -119_000,
        true,
      ], [119_000, true]] as const
    ) {
      const mark = b.tap.mark;
      await b.channel.transport.send(
        b.login.sealer.seal(RecordType.DATA, list, Date.now() + skew),
      );
      const ev = await b.tap.waitFor(
        (e) => isMsg("users")(e) || isMsg("error")(e),
        mark,
      );
      if (ok) assert.ok(isMsg("users")(ev), `skew ${skew}: accepted`);
      else {assert.ok(
          isServerError("stale")(ev),
          `skew ${skew}: ${JSON.stringify(ev)}`,
        );}
    }
  });
});

Deno.test("timestamps: the window is configurable: with 5 s, 6 s old is stale and 4 s old accepted", async () => {
  await withScope(async (s) => {
    const { port } = await s.server({ windowMs: 5000 });
    const b = await s.login(port, "A");
    const list = encodeMessage({ t: "list" });
    for (
      const [skew, ok] of [[-6000, false], [6000, false], [
        -4000,
        true,
      ]] as const
    ) {
      const mark = b.tap.mark;
      await b.channel.transport.send(
        b.login.sealer.seal(RecordType.DATA, list, Date.now() + skew),
      );
      const ev = await b.tap.waitFor(
        (e) => isMsg("users")(e) || isMsg("error")(e),
        mark,
      );
      if (ok) assert.ok(isMsg("users")(ev), `skew ${skew}: accepted`);
      else {assert.ok(
          isServerError("stale")(ev),
          `skew ${skew}: ${JSON.stringify(ev)}`,
        );}
    }
  });
});

Deno.test("timestamps on the client side: a server record 121 s old is stale, 119 s accepted; a 5 s window is honoured", async () => {
  const now = Date.now();
  const def = await loginInMemory("A");
  const body = utf8("{}");
  assertThrowsIm(
    () =>
      def.client.opener.open(
        def.server.sealer.seal(RecordType.DATA, body, now - 121_000),
        now,
      ),
    RecordError,
    "stale",
  );
  assertThrowsIm(
    () =>
      def.client.opener.open(
        def.server.sealer.seal(RecordType.DATA, body, now + 121_000),
        now,
      ),
    RecordError,
    "stale",
  );
  assert.equal(
    def.client.opener.open(
      def.server.sealer.seal(RecordType.DATA, body, now - 119_000),
      now,
    ).timestamp,
    now - 119_000,
  );
  const short = await loginInMemory("A", { windowMs: 5000 });
  assertThrowsIm(
    () =>
      short.client.opener.open(
        short.server.sealer.seal(RecordType.DATA, body, now - 6000),
        now,
      ),
    RecordError,
    "stale",
  );
  assert.ok(
    short.client.opener.open(
      short.server.sealer.seal(RecordType.DATA, body, now - 4000),
      now,
    ),
  );
});
