/**
 * Property-based fuzzing of every decoder that reads untrusted bytes or
 * text (the issue's "Decoders return a value or throw a typed error,
 * nothing else"), with fast-check. Each {@link Target} pairs a generator of
 * hostile input (random bytes, and genuine encodings flipped, truncated,
 * extended and spliced) with the decoder; {@link checkTarget} runs it.
 *
 * The property of every target: the decoder returns a value or throws an
 * {@link ImError} subclass; never a TypeError, RangeError or anything else.
 * Authenticated decoders (records, tickets) have a second one: whatever
 * they accept is byte for byte what was sealed.
 *
 * Run by `tests/fuzz/fuzz_test.ts` (a fixed-seed subset, in the normal
 * suite) and `tests/fuzz/main.ts` (`deno task fuzz`, >= 10,000 cases each).
 * @module
 */

// Pinned to an exact version in deno.json "imports" (deno.lock holds its
// hash); fuzz_test.ts and main.ts take it from here.
import fc from "fast-check";

export { fc };
import { ImError, utf8 } from "../../lib/util/mod.ts";
import { encodeFrame, FrameDecoder, FrameKind } from "../../lib/wire/mod.ts";
import {
  decodeClientAuth,
  decodeClientHello,
  decodeErrorFrame,
  decodeMessage,
  decodePeerCommit,
  decodePeerHello,
  decodePeerReply,
  decodeServerHello,
  decodeServerKey,
  encodeClientAuth,
  encodeClientHello,
  encodeErrorFrame,
  encodeMessage,
  encodePeerCommit,
  encodePeerHello,
  encodePeerReply,
  encodeServerHello,
  encodeServerKey,
  type Message,
  openTicket,
  sealTicket,
} from "../../lib/proto/mod.ts";
import { pemDecode, pemEncode, type PemLabel } from "../../lib/crypto/mod.ts";
import {
  RecordOpener,
  RecordSealer,
  RecordType,
} from "../../lib/record/mod.ts";

/** One decoder under fuzz. */
export interface Target {
  name: string;
  // deno-lint-ignore no-explicit-any
  property: fc.IProperty<any>;
}

/** Thrown by a property when a decoder breaks its contract. */
export class ContractBroken extends Error {}

/** Run `decode` and enforce "a value or an ImError". */
function typed<T>(
  what: string,
  decode: () => T,
): { value?: T; error?: ImError } {
  try {
    return { value: decode() };
  } catch (e) {
    if (e instanceof ImError) return { error: e };
    throw new ContractBroken(
      `${what} threw ${
        e instanceof Error ? `${e.name}: ${e.message}` : String(e)
      }, not an ImError`,
    );
  }
}

const bytes = (max = 600) => fc.uint8Array({ minLength: 0, maxLength: max });
const fixed = (n: number) => fc.uint8Array({ minLength: n, maxLength: n });
const name = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: "grapheme", maxLength: 10 }),
);

/** One way to damage a byte string. */
type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "truncate"; at: number }
  | { op: "extend"; extra: Uint8Array }
  | { op: "set"; at: number; value: number }
  | { op: "splice"; at: number; cut: number; extra: Uint8Array }
  | { op: "none" };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ op: fc.constant("truncate" as const), at: fc.nat() }),
  fc.record({ op: fc.constant("extend" as const), extra: bytes(40) }),
  fc.record({
    op: fc.constant("set" as const),
    at: fc.nat(),
    value: fc.nat(255),
  }),
  fc.record({
    op: fc.constant("splice" as const),
    at: fc.nat(),
    cut: fc.nat(40),
    extra: bytes(40),
  }),
  fc.constant({ op: "none" as const }),
);

/** Apply mutations to a copy of `b`. */
export function mutate(b: Uint8Array, ms: Mutation[]): Uint8Array {
  let out = new Uint8Array(b);
  for (const m of ms) {
    const at = out.length === 0 ? 0 : ("at" in m ? m.at % out.length : 0);
    switch (m.op) {
      case "flip":
        if (out.length) out[at] = out[at]! ^ (1 << m.bit);
        break;
      case "truncate":
        out = out.slice(0, at);
        break;
      case "extend": {
        const x = new Uint8Array(out.length + m.extra.length);
        x.set(out);
        x.set(m.extra, out.length);
        out = x;
        break;
      }
      case "set":
        if (out.length) out[at] = m.value;
        break;
      case "splice": {
        const head = out.slice(0, at),
          tail = out.slice(Math.min(out.length, at + m.cut));
        const x = new Uint8Array(head.length + m.extra.length + tail.length);
        x.set(head);
        x.set(m.extra, head.length);
        x.set(tail, head.length + m.extra.length);
        out = x;
        break;
      }
      case "none":
        break;
    }
  }
  return out;
}

/**
 * Genuine encodings, damaged, mixed with random bytes that start with the right kind byte and pure noise.
 * @param genuine valid encodings
 * @param kind the frame kind byte, if any
 * @returns the hostile inputs
 */
export function hostile(
  genuine: fc.Arbitrary<Uint8Array>,
  kind?: number,
): fc.Arbitrary<Uint8Array> {
  const withKind = kind === undefined ? bytes() : bytes().map((
    b,
  ) => (b.length ? (b[0] = kind, b) : new Uint8Array([kind])));
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc.tuple(
        genuine,
        fc.array(mutation, { minLength: 1, maxLength: 3 }),
      ).map(([g, ms]) => mutate(g, ms)),
    },
    { weight: 2, arbitrary: withKind },
    { weight: 1, arbitrary: bytes() },
    { weight: 1, arbitrary: genuine },
  );
}

/**
 * A target for a plain `bytes -> value` decoder.
 * @param targetName shown in reports
 * @param arb the inputs
 * @param decode the decoder
 * @returns the target
 */
export function decoderTarget(
  targetName: string,
  arb: fc.Arbitrary<Uint8Array>,
  decode: (p: Uint8Array) => unknown,
): Target {
  return {
    name: targetName,
    property: fc.property(arb, (p) => {
      typed(targetName, () => decode(p));
    }),
  };
}

const clientHello = fc.record({
  version: fc.nat(255),
  user: name,
  nonce: fixed(32),
  ephemeral: fixed(32),
})
  .filter((m) => utf8(m.user).length <= 255)
  .map(encodeClientHello);
const serverHello = fc.record({
  version: fc.nat(255),
  nonce: fixed(32),
  ephemeral: fixed(32),
  serverPublicKey: bytes(400),
  signature: bytes(400),
}).map(encodeServerHello);
const clientAuth = fc.record({ signature: bytes(520) }).map(encodeClientAuth);
const serverKey = fc.record({
  sealedSessionKey: bytes(520),
  tag: fc.uint8Array({ minLength: 32, maxLength: 32 }),
}).map(
  encodeServerKey,
);
const errorFrame = fc.record({
  code: fc.nat(255),
  message: fc.string({ maxLength: 200 }),
}).map(encodeErrorFrame);
const peerCommit = fc.record({
  ticketId: fixed(16),
  commit: fixed(32),
  mac: fixed(32),
}).map(encodePeerCommit);
const peerHello = fc.record({
  version: fc.nat(255),
  ticket: bytes(300),
  nonce: fixed(32),
  ephemeral: fixed(32),
})
  .map(encodePeerHello);
const peerReply = fc.record({
  nonce: fixed(32),
  ephemeral: fixed(32),
  mac: fixed(32),
}).map(encodePeerReply);

/** Keys of the record and ticket targets: fixed, the attacker does not know them. */
const KEYS = {
  enc: new Uint8Array(32).fill(1),
  iv: new Uint8Array(32).fill(2),
  mac: new Uint8Array(32).fill(3),
};
const TICKET_KEYS = {
  enc: new Uint8Array(32).fill(4),
  mac: new Uint8Array(32).fill(5),
};
const NOW = 1_700_000_000_000;

const RECORD_TYPES = [
  RecordType.FINISHED,
  RecordType.DATA,
  RecordType.HEARTBEAT,
  RecordType.CLOSE,
];

const recordCase = fc.record({
  firstSeq: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  type: fc.constantFrom(...RECORD_TYPES),
  body: bytes(300),
  skew: fc.integer({ min: -200_000, max: 200_000 }),
  mutations: fc.array(mutation, { maxLength: 3 }),
  noise: fc.option(bytes(), { nil: undefined }),
});

const recordTarget: Target = {
  name: "RecordOpener.open",
  property: fc.property(recordCase, (c) => {
    const sealed = new RecordSealer(KEYS, c.firstSeq).seal(
      c.type,
      c.body,
      NOW + c.skew,
    );
    const input = c.noise ?? mutate(sealed, c.mutations);
    const opener = new RecordOpener(KEYS);
    const r = typed("RecordOpener.open", () => opener.open(input, NOW));
    if (r.value && !equal(input, sealed)) {
      throw new ContractBroken(
        "RecordOpener.open accepted a record that was not sealed as such",
      );
    }
    if (r.value && !equal(r.value.plaintext, c.body)) {
      throw new ContractBroken("RecordOpener.open returned another plaintext");
    }
  }),
};

const ticketCase = fc.record({
  id: fixed(16),
  host: name,
  joiner: name,
  life: fc.integer({ min: -10_000, max: 120_000 }),
  peerKey: fixed(32),
  mutations: fc.array(mutation, { maxLength: 3 }),
  noise: fc.option(bytes(), { nil: undefined }),
}).filter((t) => utf8(t.host).length <= 255 && utf8(t.joiner).length <= 255);

const ticketTarget: Target = {
  name: "openTicket",
  property: fc.property(ticketCase, (c) => {
    const t = {
      id: c.id,
      host: c.host,
      joiner: c.joiner,
      expiresAt: NOW + c.life,
      peerKey: c.peerKey,
    };
    const sealed = sealTicket(TICKET_KEYS, t);
    const input = c.noise ?? mutate(sealed, c.mutations);
    const r = typed(
      "openTicket",
      () =>
        openTicket(TICKET_KEYS, input, {
          self: c.joiner,
          expectedHost: c.host,
          now: NOW,
        }),
    );
    if (r.value && !equal(input, sealed)) {
      throw new ContractBroken(
        "openTicket accepted a ticket that was not sealed as such",
      );
    }
  }),
};

const frameCase = fc.record({
  max: fc.integer({ min: 1, max: 2000 }),
  payloads: fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), {
    maxLength: 6,
  }),
  cuts: fc.array(fc.nat(), { maxLength: 8 }),
  mutations: fc.array(mutation, { maxLength: 2 }),
  noise: fc.option(fc.array(bytes(200), { maxLength: 5 }), { nil: undefined }),
});

const frameTarget: Target = {
  name: "FrameDecoder",
  property: fc.property(frameCase, (c) => {
    const wire = mutate(
      concatAll(c.payloads.map((p) => encodeFrame(p, 0xffffffff))),
      c.mutations,
    );
    const chunks = c.noise ?? split(wire, c.cuts);
    const dec = new FrameDecoder(c.max);
    const got: Uint8Array[] = [];
    const r = typed("FrameDecoder", () => {
      for (const ch of chunks) {
        got.push(...dec.push(ch));
        if (dec.buffered > c.max + 4) {
          throw new ContractBroken(`FrameDecoder holds ${dec.buffered} bytes`);
        }
      }
      dec.end();
    });
    for (const p of got) {
      if (p.length === 0 || p.length > c.max) {
        throw new ContractBroken(
          `FrameDecoder returned a ${p.length}-byte frame`,
        );
      }
    }
    if (
      !r.error && c.noise === undefined && c.mutations.length === 0 &&
      c.payloads.every((p) => p.length <= c.max)
    ) {
      if (got.length !== c.payloads.length) {
        throw new ContractBroken("FrameDecoder lost a frame");
      }
    }
  }),
};

const MESSAGE_TYPES = [
  "list",
  "host",
  "unhost",
  "session",
  "ended",
  "cancel",
  "relay",
  "bye",
  "welcome",
  "users",
  "hosting",
  "grant",
  "join",
  "refused",
  "cancelled",
  "error",
  "closing",
  "relayed",
  "msg",
  "ack",
  "__proto__",
  "constructor",
  "toString",
];

const message = fc.oneof(
  bytes(300),
  fc.json().map((j) => utf8(j)),
  fc.record({
    t: fc.constantFrom(...MESSAGE_TYPES),
    fields: fc.dictionary(
      fc.constantFrom(
        "addr",
        "peer",
        "ticketId",
        "data",
        "user",
        "users",
        "key",
        "ticket",
        "expiresAt",
        "reason",
        "message",
        "code",
        "id",
        "count",
        "text",
        "serverFingerprint",
        "identity",
      ),
      fc.jsonValue(),
    ),
  }).map(({ t, fields }) => utf8(JSON.stringify({ ...fields, t }))),
  fc.tuple(
    fc.constantFrom<Message>({ t: "list" }, {
      t: "users",
      users: [{ name: "A", state: "IDLE" }],
      more: 0,
    }, {
      t: "grant",
      peer: "B",
      key: "k",
      ticket: "t",
      ticketId: "i",
      expiresAt: 1,
      identity: "AA==",
    }),
    fc.array(mutation, { minLength: 1, maxLength: 3 }),
  ).map(([m, ms]) => mutate(encodeMessage(m), ms)),
);

const messageTarget: Target = {
  name: "decodeMessage",
  property: fc.property(message, (b) => {
    const r = typed("decodeMessage", () => decodeMessage(b));
    if (
      r.value && (typeof r.value !== "object" || typeof r.value.t !== "string")
    ) {
      throw new ContractBroken("decodeMessage returned a non-message");
    }
  }),
};

const LABELS: PemLabel[] = ["PUBLIC KEY", "PRIVATE KEY"];

/** A small DER SEQUENCE so genuine PEM passes the structure check. */
const der = bytes(200).map((b) => {
  const body = b.slice(0, 120);
  return new Uint8Array([0x30, body.length, ...body]);
});

const pemText = fc.oneof(
  fc.string({ maxLength: 500 }),
  fc.string({ unit: "binary", maxLength: 500 }),
  fc.tuple(
    fc.constantFrom(...LABELS),
    der,
    fc.array(mutation, { maxLength: 3 }),
  ).map(([label, d, ms]) =>
    new TextDecoder().decode(mutate(utf8(pemEncode(label, d)), ms))
  ),
  fc.tuple(fc.constantFrom(...LABELS), fc.string({ maxLength: 200 })).map((
    [label, body],
  ) => `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`),
);

const pemTarget: Target = {
  name: "pemDecode",
  property: fc.property(pemText, fc.constantFrom(...LABELS), (text, label) => {
    typed("pemDecode", () => pemDecode(text, label));
  }),
};

/** Every target, in a stable order. */
export const TARGETS: Target[] = [
  frameTarget,
  recordTarget,
  decoderTarget(
    "decodeClientHello",
    hostile(clientHello, FrameKind.CLIENT_HELLO),
    decodeClientHello,
  ),
  decoderTarget(
    "decodeServerHello",
    hostile(serverHello, FrameKind.SERVER_HELLO),
    decodeServerHello,
  ),
  decoderTarget(
    "decodeClientAuth",
    hostile(clientAuth, FrameKind.CLIENT_AUTH),
    decodeClientAuth,
  ),
  decoderTarget(
    "decodeServerKey",
    hostile(serverKey, FrameKind.SERVER_KEY),
    decodeServerKey,
  ),
  decoderTarget(
    "decodeErrorFrame",
    hostile(errorFrame, FrameKind.ERROR),
    decodeErrorFrame,
  ),
  decoderTarget(
    "decodePeerCommit",
    hostile(peerCommit, FrameKind.PEER_COMMIT),
    decodePeerCommit,
  ),
  decoderTarget(
    "decodePeerHello",
    hostile(peerHello, FrameKind.PEER_HELLO),
    decodePeerHello,
  ),
  decoderTarget(
    "decodePeerReply",
    hostile(peerReply, FrameKind.PEER_REPLY),
    decodePeerReply,
  ),
  ticketTarget,
  messageTarget,
  pemTarget,
];

/** Result of one target's run. */
export interface TargetResult {
  name: string;
  numRuns: number;
  seed: number;
  failed: boolean;
  report: string;
}

/**
 * Run one target.
 * @param t the target
 * @param numRuns cases to run
 * @param seed fast-check seed
 * @returns what happened, with fast-check's report on failure
 */
export function checkTarget(
  t: Target,
  numRuns: number,
  seed: number,
): TargetResult {
  const details = fc.check(t.property, { numRuns, seed });
  return {
    name: t.name,
    numRuns: details.numRuns,
    seed,
    failed: details.failed,
    report: details.failed
      ? `${fc.defaultReportMessage(details) ?? "failed"}\n${
        details.errorInstance instanceof Error
          ? details.errorInstance.message
          : String(details.errorInstance)
      }`
      : "",
  };
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function concatAll(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function split(b: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => (b.length ? c % (b.length + 1) : 0)))]
    .sort((x, y) => x - y);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of at) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  out.push(b.subarray(prev));
  return out;
}
