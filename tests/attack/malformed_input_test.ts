/**
 * Malformed input to the server through raw sockets (requirement 1.1 and
 * the "the server never dies from one client's input"): random
 * bytes, absurd and zero lengths, frames cut by EOF, one byte at a time,
 * bad usernames, and handshake frames out of order. Each such connection
 * gets an ERROR frame where possible and is closed; afterwards the server
 * serves a legitimate login at once.
 */

import assert from "node:assert/strict";
import {
  ByteWriter,
  concat,
  randomBytes,
  sleep,
  utf8,
} from "../../lib/util/mod.ts";
import { encodeFrame, FrameKind } from "../../lib/wire/mod.ts";
import {
  encodeClientAuth,
  encodeClientHello,
  encodeErrorFrame,
  ErrorCode,
} from "../../lib/proto/mod.ts";
import { RecordType } from "../../lib/record/mod.ts";
import { seededRandom } from "../_helpers.ts";
import { rawFrame } from "../_fixtures_mitm.ts";
import {
  type RawConn,
  type Scope,
  type TestServer,
  until,
  withScope,
} from "../_fixtures.ts";
import { assertServes, expectErrorFrame } from "./_setup.ts";

/** Everything the server sent before closing must be one ERROR frame with `code`. */
async function expectRefusal(
  raw: RawConn,
  code: number,
  match?: RegExp,
): Promise<string> {
  const frames = await raw.untilEof();
  assert.equal(
    frames.length,
    1,
    `one ERROR frame then EOF, got ${frames.length} frames`,
  );
  const err = expectErrorFrame(frames[0]!);
  assert.equal(err.code, code, `error code for: ${err.message}`);
  if (match) assert.match(err.message, match);
  return err.message;
}

function hello(user: Uint8Array, version = 1): Uint8Array {
  return new ByteWriter().u8(FrameKind.CLIENT_HELLO).u8(version).bytes8(user)
    .bytes(new Uint8Array(32)).bytes(new Uint8Array(32)).finish();
}

/** After the attack: no internal error was logged, and a real user logs in at once. */
async function stillServes(s: Scope, t: TestServer): Promise<void> {
  assert.ok(
    !t.log.some((l) =>
      l.fields.error === "internal" || l.event === "internal-error" ||
      l.event === "connection-error"
    ),
    `no internal error: ${
      JSON.stringify(t.log.filter((l) => l.event.includes("error")).slice(0, 3))
    }`,
  );
  await assertServes(s, t.port);
}

Deno.test("50 connections of seeded random bytes each end with at most an ERROR frame and a close; the server then serves a login", async () => {
  await withScope(async (s) => {
    const t = await s.server({ loginTimeoutMs: 2000 });
    const rnd = seededRandom(0x1b0c);
    await Promise.all(Array.from({ length: 50 }, async () => {
      const raw = await s.raw(t.port);
      await raw.write(rnd.bytes(1 + rnd.int(3000))).catch(() => {});
      const frames = await raw.untilEof();
      assert.ok(frames.length <= 1, `at most one frame, got ${frames.length}`);
      for (const f of frames) expectErrorFrame(f);
      await raw.close();
    }));
    await stillServes(s, t);
  });
});

Deno.test("a 4 GiB length prefix is refused with an ERROR frame as soon as the prefix arrives, without waiting for a body", async () => {
  await withScope(async (s) => {
    const t = await s.server(); // 10 s login deadline: the refusal must not wait for it
    const raw = await s.raw(t.port);
    await raw.write(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    // Code 1 (protocol), not 5 (the login deadline): refused on the prefix.
    await expectRefusal(
      raw,
      ErrorCode.PROTOCOL,
      /4294967295 exceeds the limit of 65536/,
    );
    await until(
      () =>
        t.log.some((l) =>
          l.event === "login-error" && l.fields.error === "frame-too-large"
        ),
      "the refusal in the server log",
    );
    await stillServes(s, t);
  });
});

Deno.test("a zero-length frame is refused with an ERROR frame and a close", async () => {
  await withScope(async (s) => {
    const t = await s.server();
    const raw = await s.raw(t.port);
    await raw.write(new Uint8Array(4));
    await expectRefusal(raw, ErrorCode.PROTOCOL, /length 0/);
    await stillServes(s, t);
  });
});

Deno.test("a CLIENT_HELLO cut short by EOF is refused with an ERROR frame naming the truncated frame", async () => {
  await withScope(async (s) => {
    const t = await s.server();
    const raw = await s.raw(t.port);
    const wire = encodeFrame(hello(utf8("A")));
    await raw.write(wire.subarray(0, 30));
    await raw.conn.closeWrite();
    await expectRefusal(
      raw,
      ErrorCode.PROTOCOL,
      /connection closed 30 bytes into a frame/,
    );
    await stillServes(s, t);
  });
});

Deno.test("a login written one byte at a time succeeds", async () => {
  await withScope(async (s) => {
    const t = await s.server();
    const mitm = s.mitm(t.port, { dribbleUp: true });
    const b = await s.login(mitm.port, "A");
    await b.channel.send({ t: "list" });
    await b.tap.waitFor((e) => e.kind === "message" && e.msg.t === "users");
    const hello = mitm.seen("up")[0]!;
    assert.ok(
      hello.payload.length > 60,
      "the hello went up byte by byte, and arrived whole",
    );
  });
});

Deno.test("a client that dribbles a frame one byte every 50 ms is closed at the login deadline", async () => {
  await withScope(async (s) => {
    const t = await s.server({ loginTimeoutMs: 1000 });
    const raw = await s.raw(t.port);
    const wire = encodeFrame(hello(utf8("A")));
    let stop = false;
    const dribble = (async () => {
      for (let i = 0; i < wire.length && !stop; i++) {
        await raw.write(wire.subarray(i, i + 1)).catch(() => (stop = true));
        await sleep(50);
      }
    })();
    // Closed by the login deadline (ERROR code 5), though a byte came every
    // 50 ms: the deadline counts from accept, not from the last byte.
    await expectRefusal(raw, ErrorCode.TIMEOUT);
    stop = true;
    await dribble;
    await stillServes(s, t);
  });
});

const BAD_HELLOS: Array<[string, () => Uint8Array, number, RegExp]> = [
  [
    "a username of invalid UTF-8",
    () => hello(new Uint8Array([0x41, 0xc3, 0x28])),
    ErrorCode.PROTOCOL,
    /invalid UTF-8/,
  ],
  [
    "a username of a lone surrogate",
    () => hello(new Uint8Array([0xed, 0xa0, 0x80])),
    ErrorCode.PROTOCOL,
    /invalid UTF-8/,
  ],
  [
    "a 255-character username",
    () => hello(utf8("a".repeat(255))),
    ErrorCode.BAD_USERNAME,
    /Invalid username/,
  ],
  [
    "a username with a path in it",
    () => hello(utf8("../../etc/passwd")),
    ErrorCode.BAD_USERNAME,
    /Invalid username/,
  ],
  [
    "an empty username",
    () => hello(new Uint8Array(0)),
    ErrorCode.BAD_USERNAME,
    /Invalid username/,
  ],
  [
    "a username with a NUL byte",
    () => hello(utf8("A\0")),
    ErrorCode.BAD_USERNAME,
    /Invalid username/,
  ],
  [
    "a 60 KB username (length byte 255, the rest trailing)",
    () =>
      concat(
        hello(utf8("a".repeat(255))),
        new Uint8Array(60_000 - 322).fill(0x61),
      ),
    ErrorCode.PROTOCOL,
    /trailing bytes/,
  ],
  [
    "version 2",
    () =>
      encodeClientHello({
        version: 2,
        user: "A",
        nonce: new Uint8Array(32),
        ephemeral: new Uint8Array(32),
      }),
    ErrorCode.VERSION,
    /version 2/,
  ],
];

for (const [what, make, code, match] of BAD_HELLOS) {
  Deno.test(`a CLIENT_HELLO with ${what} is refused with ERROR code ${code}`, async () => {
    await withScope(async (s) => {
      const t = await s.server();
      const raw = await s.raw(t.port);
      await raw.write(rawFrame(make()));
      await expectRefusal(raw, code, match);
      await stillServes(s, t);
    });
  });
}

Deno.test("a 100 KB username (a 100 KB CLIENT_HELLO) is refused as over the frame limit, before the server reads it", async () => {
  await withScope(async (s) => {
    const t = await s.server();
    const raw = await s.raw(t.port);
    const big = concat(
      new Uint8Array([FrameKind.CLIENT_HELLO, 1, 255]),
      new Uint8Array(100_000).fill(0x61),
    );
    await raw.write(rawFrame(big)).catch(() => {}); // the server may close before it has read it all
    await expectRefusal(raw, ErrorCode.PROTOCOL, /exceeds the limit of 65536/);
    await stillServes(s, t);
  });
});

const fakeRecord = () =>
  concat(
    new Uint8Array([FrameKind.RECORD, RecordType.FINISHED]),
    new Uint8Array(16),
    randomBytes(64),
  );

const OUT_OF_ORDER: Array<[string, () => Uint8Array[], boolean]> = [
  [
    "a CLIENT_AUTH first",
    () => [encodeClientAuth({ signature: randomBytes(256) })],
    false,
  ],
  ["a record first", () => [fakeRecord()], false],
  [
    "a SERVER_HELLO from the client",
    () => [new Uint8Array([FrameKind.SERVER_HELLO, 1, 2, 3])],
    false,
  ],
  [
    "an ERROR frame first",
    () => [encodeErrorFrame({ code: 1, message: "x" })],
    false,
  ],
  ["a frame of unknown kind 0x7f", () => [new Uint8Array([0x7f, 0, 0])], false],
  ["two CLIENT_HELLOs", () => [hello(utf8("A")), hello(utf8("A"))], true],
  [
    "a record in place of CLIENT_AUTH",
    () => [hello(utf8("A")), fakeRecord()],
    true,
  ],
];

for (const [what, frames, helloFirst] of OUT_OF_ORDER) {
  Deno.test(`handshake frames out of order (${what}) are refused with an ERROR frame and a close`, async () => {
    await withScope(async (s) => {
      const t = await s.server();
      const raw = await s.raw(t.port);
      await raw.write(concat(...frames().map(rawFrame)));
      const got = await raw.untilEof();
      if (helloFirst) assert.equal(got.shift()?.[0], FrameKind.SERVER_HELLO);
      assert.equal(got.length, 1, "then one ERROR frame and EOF");
      assert.equal(expectErrorFrame(got[0]!).code, ErrorCode.PROTOCOL);
      await stillServes(s, t);
    });
  });
}

Deno.test("after a barrage of all of the above at once the server serves a legitimate login at once", async () => {
  await withScope(async (s) => {
    const t = await s.server({ loginTimeoutMs: 2000 });
    const payloads = [
      new Uint8Array([0xff, 0xff, 0xff, 0xff]),
      new Uint8Array(4),
      rawFrame(hello(new Uint8Array([0xc3, 0x28]))),
      rawFrame(encodeClientAuth({ signature: randomBytes(256) })),
      encodeFrame(hello(utf8("A"))).subarray(0, 10),
      seededRandom(7).bytes(5000),
    ];
    const conns = await Promise.all(
      Array.from({ length: 60 }, () => s.raw(t.port)),
    );
    await Promise.all(
      conns.map((c, i) =>
        c.write(payloads[i % payloads.length]!).catch(() => {})
      ),
    );
    await assertServes(s, t.port);
    await Promise.all(conns.map((c) => c.untilEof()));
    await stillServes(s, t);
  });
});
