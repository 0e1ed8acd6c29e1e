/**
 * The end of the login and the first frames after it, at a real server
 * over real sockets (PROTOCOL.md sections 2, 3 and 4; issue 17 items 4, 5
 * and 6):
 *
 * - a client FINISHED that is wrong or missing is answered, after
 *   SERVER_KEY, with a cleartext ERROR frame code 2 (the spec was changed to
 *   say so: such a client most likely cannot read a record);
 * - such a failed key confirmation, after a valid CLIENT_AUTH, counts as a
 *   failed login for the address penalty (rule 2.4);
 * - after the login, a frame that is not a record gets the error record
 *   `unexpected-frame` and the link stays open (rule 3.6).
 */

import assert from "node:assert/strict";
import { encodeFrame, FrameKind } from "../lib/wire/mod.ts";
import {
  ClientHandshake,
  encodeClientHello,
  encodeErrorFrame,
  ErrorCode,
  type LoginResult,
} from "../lib/proto/mod.ts";
import { RecordType } from "../lib/record/mod.ts";
import { utf8 } from "../lib/util/mod.ts";
import { flipBit, identities, userIdentity } from "./_helpers.ts";
import { type RawConn, type Scope, until, withScope } from "./_fixtures.ts";
import { expectErrorFrame, isMsg } from "./attack/_setup.ts";

/** Servers of the key-confirmation tests never penalise unless a test asks. */
const NO_PENALTY = { authFailureLimit: 1_000_000 };

/**
 * Log in as `user` with the real {@link ClientHandshake} over a raw socket,
 * up to (not including) sending the client's FINISHED.
 * @returns the socket, the FINISHED the client would send, and its keys
 */
async function untilClientFinished(
  s: Scope,
  port: number,
  user = "A",
): Promise<{ raw: RawConn; fin: Uint8Array; keys: LoginResult }> {
  const ids = await identities();
  const hs = new ClientHandshake({
    user,
    identity: userIdentity(ids, user),
    pinnedServer: ids.serverPinned,
  });
  const raw = await s.raw(port);
  await raw.write(encodeFrame(await hs.start()));
  await raw.write(encodeFrame(await hs.onServerHello((await raw.frame())!)));
  const serverKey = (await raw.frame())!;
  assert.equal(serverKey[0], FrameKind.SERVER_KEY, "keys exist from here on");
  await hs.onServerKey(serverKey);
  const fin = await hs.onServerFinished((await raw.frame())!);
  return { raw, fin, keys: hs.result };
}

/** What a client sends in place of its FINISHED, and what it is. */
const WRONG_FINISHED: Array<
  [string, (fin: Uint8Array, keys: LoginResult) => Uint8Array]
> = [
  [
    "its FINISHED with one tag bit flipped",
    (f) => flipBit(f, f.length * 8 - 1),
  ],
  ["its FINISHED with one ciphertext bit flipped", (f) => flipBit(f, 18 * 8)],
  [
    "a DATA record under the right keys instead of FINISHED",
    (_f, k) => k.sealer.seal(RecordType.DATA, utf8('{"t":"list"}')),
  ],
  [
    "a CLIENT_HELLO frame instead of FINISHED",
    () =>
      encodeClientHello({
        version: 1,
        user: "A",
        nonce: new Uint8Array(32),
        ephemeral: new Uint8Array(32).fill(9),
      }),
  ],
  ["a one-byte frame instead of FINISHED", () => Uint8Array.of(0x10)],
];

for (const [what, wrong] of WRONG_FINISHED) {
  Deno.test(`a client that sends ${what} after SERVER_KEY gets a cleartext ERROR frame code 2, then the close, and is not logged in (PROTOCOL.md section 2)`, async () => {
    await withScope(async (s) => {
      const { port, log, server } = await s.server(NO_PENALTY);
      const { raw, fin, keys } = await untilClientFinished(s, port);
      await raw.write(encodeFrame(wrong(fin, keys)));
      const frames = await raw.untilEof();
      assert.equal(frames.length, 1, "one ERROR frame, then EOF");
      const err = expectErrorFrame(frames[0]!);
      assert.equal(err.code, ErrorCode.AUTH_FAILED);
      assert.equal(
        err.message,
        "Client could not prove it holds the session keys",
      );
      await until(
        () => log.some((l) => l.event === "login-error"),
        "the server to log the failed login",
      );
      const line = log.find((l) => l.event === "login-error")!;
      assert.equal(line.fields.error, "key-confirmation-failed");
      assert.ok(!log.some((l) => l.event === "join"));
      assert.ok(!server.list().some((u) => u.name === "A"));
    });
  });
}

Deno.test("an ERROR frame from the client in place of its FINISHED ends the login with ERROR code 1, not 2", async () => {
  await withScope(async (s) => {
    const { port } = await s.server(NO_PENALTY);
    const { raw } = await untilClientFinished(s, port);
    await raw.write(
      encodeFrame(encodeErrorFrame({ code: 2, message: "no thanks" })),
    );
    const frames = await raw.untilEof();
    assert.equal(frames.length, 1);
    assert.equal(expectErrorFrame(frames[0]!).code, ErrorCode.PROTOCOL);
  });
});

Deno.test("the right FINISHED is answered with records only: no cleartext frame after key confirmation (rule 3.6)", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server(NO_PENALTY);
    const { raw, fin } = await untilClientFinished(s, port);
    await raw.write(encodeFrame(fin));
    await until(() => log.some((l) => l.event === "join"), "the login");
    // The server's channel starts with a HEARTBEAT and the welcome.
    for (let i = 0; i < 2; i++) {
      const f = await raw.frame();
      assert.equal(f?.[0], FrameKind.RECORD, `frame ${i} is a record`);
    }
  });
});

Deno.test("failed key confirmations after a valid CLIENT_AUTH count as failed logins: the limit-th one starts the penalty and the right key is refused with ERROR code 6 (rule 2.4)", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server({
      authFailureLimit: 2,
      authPenaltyMs: 60_000,
    });
    for (let i = 0; i < 2; i++) {
      const { raw, fin } = await untilClientFinished(s, port);
      await raw.write(encodeFrame(flipBit(fin, fin.length * 8 - 1)));
      const frames = await raw.untilEof();
      assert.equal(expectErrorFrame(frames[0]!).code, ErrorCode.AUTH_FAILED);
    }
    await until(
      () => log.some((l) => l.event === "penalty"),
      "the penalty to start",
    );
    // Every signature was valid: the failures are the key confirmations.
    assert.ok(!log.some((l) => l.event === "login-failed"));
    assert.equal(
      log.filter((l) =>
        l.event === "login-error" &&
        l.fields.error === "key-confirmation-failed"
      ).length,
      2,
    );
    const late = await s.raw(port);
    const refused = expectErrorFrame(await late.frame());
    assert.equal(refused.code, ErrorCode.RATE_LIMITED);
  });
});

Deno.test("one failed key confirmation below the limit starts no penalty: the next login succeeds", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server({ authFailureLimit: 2 });
    const { raw, fin } = await untilClientFinished(s, port);
    await raw.write(encodeFrame(flipBit(fin, fin.length * 8 - 1)));
    await raw.untilEof();
    const ok = await untilClientFinished(s, port);
    await ok.raw.write(encodeFrame(ok.fin));
    await until(() => log.some((l) => l.event === "join"), "the login");
    assert.ok(!log.some((l) => l.event === "penalty"));
  });
});

/** Frames that are not records, sent after the login. */
const NOT_RECORDS: Array<[string, Uint8Array]> = [
  [
    "an ERROR frame",
    encodeErrorFrame({ code: ErrorCode.SHUTDOWN, message: "bye" }),
  ],
  [
    "a CLIENT_HELLO",
    encodeClientHello({
      version: 1,
      user: "B",
      nonce: new Uint8Array(32),
      ephemeral: new Uint8Array(32).fill(9),
    }),
  ],
  [
    "a PEER_COMMIT",
    Uint8Array.of(FrameKind.PEER_COMMIT, ...new Uint8Array(32)),
  ],
  ["a frame of unknown kind 0xff", Uint8Array.of(0xff, 1, 2, 3)],
  ["cleartext JSON", utf8('\x02{"t":"list"}')],
];

Deno.test("after the login, each frame that is not a record gets the error record unexpected-frame (no req) and the link stays open (PROTOCOL.md section 4, rule 3.6)", async () => {
  await withScope(async (s) => {
    const { port, log, server } = await s.server();
    const a = await s.login(port, "A");
    await a.tap.waitFor(isMsg("welcome"));
    for (const [what, frame] of NOT_RECORDS) {
      const mark = a.tap.mark;
      await a.channel.transport.send(frame);
      const ev = await a.tap.waitFor(
        (e) =>
          e.kind === "message" && e.msg.t === "error" &&
          e.msg.code === "unexpected-frame",
        mark,
      );
      assert.ok(ev.kind === "message" && ev.msg.t === "error", what);
      assert.equal(ev.msg.req, undefined, `${what}: answers no request`);
      assert.match(ev.msg.message, /only records are allowed after login/);
      // The link is up: a request after it is answered.
      await a.channel.send({ t: "list", req: 7 });
      const answer = await a.tap.waitFor(isMsg("users"), mark);
      assert.ok(
        answer.kind === "message" && answer.msg.t === "users" &&
          answer.msg.req === 7,
        what,
      );
      assert.ok(!a.channel.closed, what);
    }
    assert.equal(
      log.filter((l) =>
        l.event === "record-discarded" && l.fields.reason === "unexpected-frame"
      ).length,
      NOT_RECORDS.length,
    );
    assert.ok(server.list().some((u) => u.name === "A"));
    // None of them counted as a refused record: no loss was reported.
    assert.ok(
      !a.tap.events.some((e) =>
        e.kind === "message" && e.msg.t === "error" && e.msg.code === "lost"
      ),
    );
  });
});
