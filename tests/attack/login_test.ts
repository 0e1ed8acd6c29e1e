/**
 * Attacks on the login (requirements section 2) through real sockets: a
 * recorded login replayed, a server with another key, a man in the middle
 * who changes the server's key, signature, nonce or version, a wrong
 * private key, an unknown user, and a session key that is tampered,
 * truncated or substituted.
 */

import assert from "node:assert/strict";
import {
  AuthError,
  concat,
  ProtocolError,
  randomBytes,
  utf8,
} from "../../lib/util/mod.ts";
import { FrameKind } from "../../lib/wire/mod.ts";
import {
  decodeClientHello,
  decodeServerHello,
  decodeServerKey,
  encodeClientHello,
  encodeServerHello,
  encodeServerKey,
  ErrorCode,
} from "../../lib/proto/mod.ts";
import {
  encryptOaep,
  generateRsaKeyPair,
  Label,
  loadPrivateIdentity,
} from "../../lib/crypto/mod.ts";
import { flipBit, identities } from "../_helpers.ts";
import type { MitmFrame, Out } from "../_fixtures_mitm.ts";
import { type Scope, until, withScope } from "../_fixtures.ts";
import { assertServes, expectErrorFrame, rejection } from "./_setup.ts";

/** Servers of this file never penalise: every test here fails logins on purpose. */
const NO_PENALTY = { authFailureLimit: 1_000_000 };

const kindOf = (f: MitmFrame) => f.payload[0];

/** Replace the first frame of `kind` going `dir` with `alter(payload)`. */
function alterFirst(
  dir: "up" | "down",
  kind: number,
  alter: (p: Uint8Array) => Out[],
): (f: MitmFrame) => Out[] {
  let done = false;
  return (f) => {
    if (!done && f.dir === dir && kindOf(f) === kind) {
      done = true;
      return alter(f.payload);
    }
    return [f.payload];
  };
}

async function loginFails(s: Scope, port: number, user: string, over = {}) {
  const o = await s.clientOptions(port, user, over);
  const { loginToServer } = await import("../../lib/client/mod.ts");
  return await rejection(loginToServer(o));
}

function sentClientAuth(frames: MitmFrame[]): boolean {
  return frames.some((f) =>
    f.dir === "up" && kindOf(f) === FrameKind.CLIENT_AUTH
  );
}

Deno.test("a recorded login replayed on a new connection gets a fresh server nonce and is refused; nothing past the refusal is sent", async () => {
  await withScope(async (s) => {
    const { port, log } = await s.server(NO_PENALTY);
    const mitm = s.mitm(port);
    const a = await s.login(mitm.port, "A");
    a.channel.abort("done");
    const up = mitm.seen("up", 0);
    const recordedHello = mitm.seen("down", 0)[0]!.payload;
    assert.deepEqual(up.slice(0, 2).map(kindOf), [
      FrameKind.CLIENT_HELLO,
      FrameKind.CLIENT_AUTH,
    ]);
    // Step by step: the server answers the old hello with a new nonce.
    const raw = await s.raw(port);
    await raw.write(
      concat(new Uint8Array([0, 0, 0, up[0]!.payload.length]), up[0]!.payload),
    );
    const hello = (await raw.frame())!;
    assert.equal(hello[0], FrameKind.SERVER_HELLO);
    assert.notDeepEqual(
      decodeServerHello(hello).nonce,
      decodeServerHello(recordedHello).nonce,
    );
    const lenAuth = up[1]!.payload.length;
    await raw.write(
      concat(
        new Uint8Array([0, 0, lenAuth >> 8, lenAuth & 0xff]),
        up[1]!.payload,
      ),
    );
    const rest = await raw.untilEof();
    assert.equal(rest.length, 1, "only the refusal, no SERVER_KEY");
    const err = expectErrorFrame(rest[0]!);
    assert.equal(err.code, ErrorCode.AUTH_FAILED);
    // All at once, FINISHED included: the same.
    const raw2 = await s.raw(port);
    const { rawFrame } = await import("../_fixtures_mitm.ts");
    await raw2.write(concat(...up.slice(0, 3).map((f) => rawFrame(f.payload))));
    const frames = await raw2.untilEof();
    assert.deepEqual(frames.map((f) => f[0]), [
      FrameKind.SERVER_HELLO,
      FrameKind.ERROR,
    ]);
    assert.equal(expectErrorFrame(frames[1]!).code, ErrorCode.AUTH_FAILED);
    assert.equal(
      log.filter((l) => l.event === "join").length,
      1,
      "only the genuine login joined",
    );
  });
});

Deno.test("a recorded SERVER_HELLO replayed to a new client fails its signature check, and the client signs nothing", async () => {
  await withScope(async (s) => {
    const { port } = await s.server(NO_PENALTY);
    const mitm = s.mitm(port);
    const a = await s.login(mitm.port, "A");
    a.channel.abort("done");
    const old = mitm.seen("down", 0)[0]!.payload;
    mitm.hook = (f) =>
      f.conn === 1 && f.dir === "down" && kindOf(f) === FrameKind.SERVER_HELLO
        ? [old]
        : [f.payload];
    const e = await loginFails(s, mitm.port, "A");
    assert.ok(
      e instanceof AuthError && e.code === "bad-server-signature",
      e.message,
    );
    assert.ok(!sentClientAuth(mitm.frames.filter((f) => f.conn === 1)));
  });
});

Deno.test("a server with a different key: the client stops with a warning naming both fingerprints, and no CLIENT_AUTH leaves it", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const { port } = await s.server({
      ...NO_PENALTY,
      identity: ids.otherServer,
    });
    const mitm = s.mitm(port);
    const e = await loginFails(s, mitm.port, "A");
    assert.ok(
      e instanceof AuthError && e.code === "server-key-mismatch",
      e.message,
    );
    assert.ok(
      e.message.includes(ids.otherServer.fingerprint),
      "names the offered key",
    );
    assert.ok(
      e.message.includes(ids.serverPinned.fingerprint),
      "names the pinned key",
    );
    await until(() => mitm.frames.length >= 2, "the exchange");
    assert.deepEqual(
      mitm.seen("up").map(kindOf),
      [FrameKind.CLIENT_HELLO],
      "only the hello went up",
    );
  });
});

const SERVER_HELLO_ALTERATIONS: Array<
  [string, (p: Uint8Array, pinned: Uint8Array) => Uint8Array, string]
> = [
  [
    "the impostor's key swapped for the pinned one (its signature kept)",
    (p, pinned) =>
      encodeServerHello({ ...decodeServerHello(p), serverPublicKey: pinned }),
    "bad-server-signature",
  ],
];

for (const [what, alter, code] of SERVER_HELLO_ALTERATIONS) {
  Deno.test(`a man in the middle with his own key and ${what}: the client refuses with ${code} before signing`, async () => {
    await withScope(async (s) => {
      const ids = await identities();
      const { port } = await s.server({
        ...NO_PENALTY,
        identity: ids.otherServer,
      });
      const mitm = s.mitm(port);
      mitm.hook = alterFirst(
        "down",
        FrameKind.SERVER_HELLO,
        (p) => [alter(p, ids.serverPinned.publicDer)],
      );
      const e = await loginFails(s, mitm.port, "A");
      assert.ok(e instanceof AuthError && e.code === code, e.message);
      assert.ok(!sentClientAuth(mitm.frames));
    });
  });
}

const GENUINE_HELLO_ALTERATIONS: Array<
  [string, (p: Uint8Array) => Uint8Array]
> = [
  ["one bit of the signature flipped", (p) => flipBit(p, (p.length - 5) * 8)],
  [
    "the server nonce changed",
    (p) =>
      encodeServerHello({ ...decodeServerHello(p), nonce: randomBytes(32) }),
  ],
  [
    "the server ephemeral key changed",
    (p) =>
      encodeServerHello({
        ...decodeServerHello(p),
        ephemeral: randomBytes(32),
      }),
  ],
];

for (const [what, alter] of GENUINE_HELLO_ALTERATIONS) {
  Deno.test(`the real server's SERVER_HELLO with ${what}: the client refuses (bad-server-signature) before signing`, async () => {
    await withScope(async (s) => {
      const { port } = await s.server(NO_PENALTY);
      const mitm = s.mitm(port);
      mitm.hook = alterFirst("down", FrameKind.SERVER_HELLO, (p) => [alter(p)]);
      const e = await loginFails(s, mitm.port, "A");
      assert.ok(
        e instanceof AuthError && e.code === "bad-server-signature",
        e.message,
      );
      assert.ok(!sentClientAuth(mitm.frames));
    });
  });
}

Deno.test("a wrong private key is refused with login-failed, and the server logs no join", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const { port, log } = await s.server(NO_PENALTY);
    const e = await loginFails(s, port, "A", { identity: ids.B });
    assert.ok(e instanceof AuthError && e.code === "login-failed", e.message);
    assert.ok(!log.some((l) => l.event === "join"));
    await assertServes(s, port);
  });
});

Deno.test("an unknown user gets exactly the answer of a bad signature: same class, code, message and hint", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const { port } = await s.server(NO_PENALTY);
    const bad = await loginFails(s, port, "A", { identity: ids.stranger });
    const unknown = await loginFails(s, port, "Zed", {
      identity: ids.stranger,
    });
    assert.ok(bad instanceof AuthError && unknown instanceof AuthError);
    assert.equal(unknown.code, bad.code);
    assert.equal(unknown.message, bad.message);
    assert.equal(unknown.hint, bad.hint);
  });
});

/** Run `fn` counting `crypto.subtle.verify` calls per key. */
async function countVerifies(
  fn: () => Promise<unknown>,
): Promise<Map<CryptoKey, number>> {
  const subtle = crypto.subtle as { verify: SubtleCrypto["verify"] };
  const original = subtle.verify;
  const calls = new Map<CryptoKey, number>();
  subtle.verify = function (this: SubtleCrypto, alg, key, sig, data) {
    calls.set(key, (calls.get(key) ?? 0) + 1);
    return original.call(this, alg, key, sig, data);
  } as SubtleCrypto["verify"];
  try {
    await fn();
  } finally {
    subtle.verify = original;
  }
  return calls;
}

Deno.test("an unknown user costs the server one RSA-PSS verify, against a decoy key, like a bad signature against the user's key (rule 2.4 timing)", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const { port } = await s.server(NO_PENALTY);
    const unknown = await countVerifies(() =>
      loginFails(s, port, "Zed", { identity: ids.stranger })
    );
    const bad = await countVerifies(() =>
      loginFails(s, port, "A", { identity: ids.stranger })
    );
    assert.equal(
      bad.get(ids.A.publicIdentity.verify),
      1,
      "the user's key check ran",
    );
    // Neither path checks the client against the server's own key any more.
    assert.equal(unknown.get(ids.server.publicIdentity.verify) ?? 0, 0);
    assert.equal(bad.get(ids.server.publicIdentity.verify) ?? 0, 0);
    // Same number of RSA operations on both paths (the client's own check of the server included).
    const total = (m: Map<CryptoKey, number>) =>
      [...m.values()].reduce((a, b) => a + b, 0);
    assert.equal(total(unknown), total(bad));
  });
});

/** Run `fn` listing the modulus size of every `crypto.subtle.verify`, in order. */
async function verifySizes(fn: () => Promise<unknown>): Promise<number[]> {
  const sizes: number[] = [];
  const calls = await countVerifies(fn);
  for (const [key, n] of calls) {
    const bits = (key.algorithm as RsaHashedKeyAlgorithm).modulusLength;
    for (let i = 0; i < n; i++) sizes.push(bits);
  }
  return sizes.sort((a, b) => a - b);
}

Deno.test("a 3072-bit server with 2048-bit users checks an unknown user against a 2048-bit decoy, as it checks a bad signature against the user's key (rule 2.4, issue 10 item 3)", async () => {
  await withScope(async (s) => {
    const ids = await identities();
    const big = await loadPrivateIdentity(
      (await generateRsaKeyPair(3072)).privatePem,
    );
    const { port } = await s.server({ ...NO_PENALTY, identity: big });
    const over = { identity: ids.stranger, pinnedServer: big.publicIdentity };
    const unknown = await verifySizes(() => loginFails(s, port, "Zed", over));
    const bad = await verifySizes(() => loginFails(s, port, "A", over));
    // The client checks the server's signature (3072), the server the client's (2048).
    assert.deepEqual(unknown, [2048, 3072]);
    assert.deepEqual(bad, unknown);
  });
});

// The time of the two refusals is measured in the bench (login section), not
// asserted here; tests/login_timing_test.ts proves both do the same work.

const SESSION_KEY_ATTACKS: Array<
  [string, (p: Uint8Array) => Uint8Array | Promise<Uint8Array>, string, string]
> = [
  [
    "one bit of the RSA-OAEP session key flipped",
    (p) => flipBit(p, 8 * 40),
    "AuthError",
    "bad-session-key",
  ],
  [
    "the RSA-OAEP session key cut by one byte",
    (p) =>
      encodeServerKey({
        sealedSessionKey: decodeServerKey(p).sealedSessionKey.slice(0, -1),
        tag: decodeServerKey(p).tag,
      }),
    "AuthError",
    "bad-session-key",
  ],
  [
    "the RSA-OAEP session key emptied",
    (p) =>
      encodeServerKey({
        sealedSessionKey: new Uint8Array(0),
        tag: decodeServerKey(p).tag,
      }),
    "AuthError",
    "bad-session-key",
  ],
  [
    "the SERVER_KEY frame cut short",
    (p) => p.slice(0, -1),
    "ProtocolError",
    "truncated",
  ],
  [
    // PROTOCOL.md section 3: without the X25519 secret no tag is valid, so
    // the client refuses it before decrypting anything.
    "a session key of the attacker's choosing, sealed to the user's public key",
    async (p) => {
      const ids = await identities();
      const mine = await encryptOaep(
        ids.A.publicIdentity.encrypt,
        new Uint8Array(32).fill(7),
        utf8(Label.SESSION_KEY),
      );
      return encodeServerKey({
        sealedSessionKey: mine,
        tag: decodeServerKey(p).tag,
      });
    },
    "AuthError",
    "bad-session-key",
  ],
];

for (const [what, alter, cls, code] of SESSION_KEY_ATTACKS) {
  Deno.test(`${what}: the client aborts the login with ${cls} ${code}, and the user never joins`, async () => {
    await withScope(async (s) => {
      const { port, log, server } = await s.server(NO_PENALTY);
      const mitm = s.mitm(port);
      let done = false;
      mitm.hook = async (f) => {
        if (!done && f.dir === "down" && kindOf(f) === FrameKind.SERVER_KEY) {
          done = true;
          return [await alter(f.payload)];
        }
        return [f.payload];
      };
      const e = await loginFails(s, mitm.port, "A");
      assert.equal(e.constructor.name, cls, e.message);
      assert.equal(e.code, code);
      assert.ok(done);
      await until(
        () => log.some((l) => l.event === "login-error"),
        "the server to give up on the login",
      );
      assert.ok(!server.list().some((u) => u.name === "A"));
      assert.ok(
        !mitm.seen("up").some((f) => kindOf(f) === FrameKind.RECORD),
        "the client sent no FINISHED",
      );
    });
  });
}

for (const version of [0, 2, 255]) {
  Deno.test(`a CLIENT_HELLO whose version is altered to ${version} is refused by the server with a version error the client reports`, async () => {
    await withScope(async (s) => {
      const { port } = await s.server(NO_PENALTY);
      const mitm = s.mitm(port);
      mitm.hook = alterFirst(
        "up",
        FrameKind.CLIENT_HELLO,
        (p) => [encodeClientHello({ ...decodeClientHello(p), version })],
      );
      const e = await loginFails(s, mitm.port, "A");
      assert.ok(e instanceof ProtocolError && e.code === "version", e.message);
      assert.ok(!sentClientAuth(mitm.frames));
    });
  });

  Deno.test(`a SERVER_HELLO whose version is altered to ${version} is refused by the client before it signs`, async () => {
    await withScope(async (s) => {
      const { port } = await s.server(NO_PENALTY);
      const mitm = s.mitm(port);
      mitm.hook = alterFirst(
        "down",
        FrameKind.SERVER_HELLO,
        (p) => [encodeServerHello({ ...decodeServerHello(p), version })],
      );
      const e = await loginFails(s, mitm.port, "A");
      assert.ok(e instanceof ProtocolError && e.code === "version", e.message);
      assert.ok(!sentClientAuth(mitm.frames));
    });
  });
}
