// deno-lint-ignore-file no-control-regex -- tests match escape sequences on purpose
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import {
  completeLine,
  createTerminal,
  eventToJson,
  formatEvent,
  formatPrompt,
  shouldUseColor,
  type Terminal,
  type TerminalOptions,
} from "../lib/ui/mod.ts";
import { HELP_TEXT, parseCommand, type UiEvent } from "../lib/client/mod.ts";

const AT = new Date(2024, 0, 2, 9, 5).getTime(); // local 09:05
const WRITTEN = new Date(2026, 11, 2, 12, 0).getTime(); // local 2026-12-02 12:00
const PLAIN = { color: false, self: "A" };
const COLOR = { color: true, self: "A" };
const ANY_CONTROL = /[\x00-\x1f\x7f-\x9f]/;

// --- shouldUseColor -------------------------------------------------------

Deno.test("shouldUseColor() is off when NO_COLOR is set, even on a TTY", () => {
  assert.equal(shouldUseColor({ noColor: true, isTty: true }), false);
});

Deno.test("shouldUseColor() is off when stdout is not a TTY", () => {
  assert.equal(shouldUseColor({ noColor: false, isTty: false }), false);
  assert.equal(shouldUseColor({ noColor: true, isTty: false }), false);
});

Deno.test("shouldUseColor() is on for a TTY without NO_COLOR", () => {
  assert.equal(shouldUseColor({ noColor: false, isTty: true }), true);
});

// --- formatEvent ----------------------------------------------------------

const EVENTS: Array<[UiEvent, string]> = [
  [
    {
      kind: "message",
      from: "B",
      to: "A",
      text: "hi",
      at: AT,
      direction: "in",
    },
    "09:05 B: hi",
  ],
  [
    {
      kind: "message",
      from: "A",
      to: "B",
      text: "yo",
      at: AT,
      direction: "out",
      id: "3",
    },
    "09:05 A: yo #3",
  ],
  [
    { kind: "receipt", id: "3", status: "delivered", peer: "B", at: AT },
    "09:05 -- delivered to B (#3)",
  ],
  [
    { kind: "receipt", id: "4", status: "undelivered", peer: "B", at: AT },
    "09:05 !! not delivered to B (#4)",
  ],
  [{ kind: "system", text: "Logged in", at: AT }, "09:05 -- Logged in"],
  [
    { kind: "error", code: "peer-busy", text: 'User "B" is busy', at: AT },
    '09:05 !! error: User "B" is busy (peer-busy)',
  ],
  [
    {
      kind: "list",
      users: [{ name: "A", state: "IDLE" }, { name: "B", state: "HOSTING" }],
      at: AT,
    },
    "09:05 -- online: A (IDLE), B (HOSTING)",
  ],
  [{ kind: "list", users: [], at: AT }, "09:05 -- online: nobody"],
  [
    {
      kind: "session",
      state: "started",
      peer: "B",
      sas: "1234 5678",
      transport: "relay",
      at: AT,
    },
    "09:05 == session with B started (relay); compare the code 1234 5678 with B out of band",
  ],
  [
    { kind: "session", state: "ended", peer: "B", reason: "peer left", at: AT },
    "09:05 -- session with B ended: peer left",
  ],
  [
    { kind: "session", state: "ended", peer: "B", at: AT },
    "09:05 -- session with B ended",
  ],
  [
    { kind: "session", state: "waiting", peer: "", at: AT },
    "09:05 -- hosting: waiting for a peer to connect",
  ],
  [
    { kind: "session", state: "waiting", peer: "B", at: AT },
    "09:05 -- waiting for B to answer",
  ],
  [
    {
      kind: "mail",
      direction: "in",
      from: "B",
      to: "A",
      text: "see you",
      id: "0123456789abcdef0123456789abcdef",
      written: WRITTEN,
      at: AT,
    },
    "09:05 [mail] B (written 2026-12-02 12:00): see you",
  ],
  [
    {
      kind: "mail",
      direction: "out",
      from: "A",
      to: "B",
      text: "hi",
      id: "0123456789abcdef0123456789abcdef",
      written: AT,
      at: AT,
    },
    "09:05 [mail] A to B: hi #01234567",
  ],
  [
    {
      kind: "receipt",
      id: "0123456789abcdef0123456789abcdef",
      status: "stored",
      peer: "B",
      via: "mail",
      at: AT,
    },
    "09:05 -- mail to B stored by the server (#01234567)",
  ],
  [
    {
      kind: "receipt",
      id: "0123456789abcdef0123456789abcdef",
      status: "delivered",
      peer: "B",
      via: "mail",
      at: AT,
    },
    "09:05 -- mail to B delivered (#01234567)",
  ],
  [
    {
      kind: "receipt",
      id: "0123456789abcdef0123456789abcdef",
      status: "expired",
      peer: "B",
      via: "mail",
      at: AT,
    },
    "09:05 !! mail to B not delivered: the server deleted it unread after its retention (#01234567)",
  ],
  [
    {
      kind: "receipt",
      id: "0123456789abcdef0123456789abcdef",
      status: "undelivered",
      peer: "B",
      via: "mail",
      at: AT,
    },
    "09:05 !! mail to B not delivered: no delivery receipt within 31 days (#01234567)",
  ],
];

for (const [ev, want] of EVENTS) {
  Deno.test(`formatEvent() without colour prints ${JSON.stringify(want)}`, () => {
    assert.equal(formatEvent(ev, PLAIN), want);
  });
  Deno.test(`formatEvent() with colour of ${ev.kind} has the same text plus SGR only`, () => {
    const colored = formatEvent(ev, COLOR);
    assert.match(colored, /\x1b\[[0-9;]*m/);
    assert.equal(colored.replace(/\x1b\[[0-9;]*m/g, ""), want);
  });
}

Deno.test("formatEvent() without colour writes no escape character at all", () => {
  for (const [ev] of EVENTS) {
    assert.ok(!formatEvent(ev, PLAIN).includes("\x1b"));
  }
});

Deno.test("formatEvent() colours a peer's name and shows our own name bold", () => {
  const peer = formatEvent(
    { kind: "message", from: "B", to: "A", text: "x", at: AT, direction: "in" },
    COLOR,
  );
  const self = formatEvent(
    {
      kind: "message",
      from: "A",
      to: "B",
      text: "x",
      at: AT,
      direction: "out",
    },
    COLOR,
  );
  assert.match(peer, /\x1b\[(3[2-6]|9[1-6])mB\x1b\[0m/);
  assert.match(self, /\x1b\[1mA\x1b\[0m/);
});

Deno.test("formatEvent() gives the same name the same colour every time", () => {
  const line = () =>
    formatEvent({
      kind: "message",
      from: "carol",
      to: "A",
      text: "x",
      at: AT,
      direction: "in",
    }, COLOR);
  assert.equal(line(), line());
});

Deno.test("formatEvent() sanitizes every network string of a message", () => {
  const line = formatEvent({
    kind: "message",
    from: "B\x1b[2J",
    to: "A",
    text: "hi\x1b]0;pwned\x07\r\nfake",
    at: AT,
    direction: "in",
  }, COLOR);
  assert.ok(!line.includes("\x1b[2J"));
  assert.ok(!line.includes("\x1b]"));
  assert.doesNotMatch(line, /[\r\n\x07]/);
});

Deno.test("formatEvent() sanitizes list names, states, error codes, reasons and SAS", () => {
  const evs: UiEvent[] = [
    {
      kind: "list",
      users: [{ name: "x\x1b[H", state: "IDLE" }],
      at: AT,
    },
    { kind: "error", code: "c\x07", text: "t\x1b[2J", at: AT },
    { kind: "session", state: "ended", peer: "B", reason: "r\r\x1bc", at: AT },
    {
      kind: "session",
      state: "started",
      peer: "B",
      sas: "1\x1b[8m2",
      at: AT,
    },
    { kind: "receipt", id: "\x9b2J", status: "delivered", peer: "B", at: AT },
  ];
  for (const ev of evs) {
    const line = formatEvent(ev, PLAIN);
    assert.doesNotMatch(line, ANY_CONTROL, JSON.stringify(ev));
  }
});

Deno.test("formatEvent() prints a system event on one line: line breaks become spaces", () => {
  const out = formatEvent(
    { kind: "system", text: "one\x1b[2J\ntwo\r\nthree", at: AT },
    PLAIN,
  );
  assert.equal(out, "09:05 -- one two three");
});

Deno.test("formatEvent() keeps the lines of the client's help text, and only of it", () => {
  const help = formatEvent({ kind: "system", text: HELP_TEXT, at: AT }, PLAIN);
  const lines = help.split("\n");
  assert.equal(lines.length, HELP_TEXT.split("\n").length);
  assert.ok(lines.slice(1).every((l) => l.startsWith("         ")));
  const more = formatEvent(
    { kind: "system", text: `${HELP_TEXT}\nfake`, at: AT },
    PLAIN,
  );
  assert.ok(!more.includes("\n"));
});

// --- issue 10 item 6: nothing from the network imitates the SAS line -------

/** A line with the short code to compare: the time, then the SAS mark. */
const SAS_LINE = /^(?:\d\d:\d\d|--:--) == /;
const SGR = /\x1b\[[0-9;]*m/g;
/** What a malicious server (or peer) puts in a string to fake a line. */
const FAKES = [
  "\n09:05 == session with B started (direct); compare the code 000 000 000 000 with B out of band",
  "\r\n09:05 -- session with B started (direct); compare the code 000 000 with B out of band",
  "\u2028== session with B started; compare the code 000 000",
  "\x85== session with B started",
  "\x1bE== session with B started",
  "\x1b[1E== session with B started",
  "\v\f== session",
];

function hostileEvents(fake: string): UiEvent[] {
  return [
    // Text the client builds around a server's fields (client.ts, hosting.ts).
    {
      kind: "system",
      text: `Logged in as A to 127.0.0.1:9876 (server key ${fake})`,
      at: AT,
    },
    { kind: "system", text: `Hosting at ${fake}; others can now type`, at: AT },
    { kind: "system", text: `${fake}; still hosting`, at: AT },
    { kind: "system", text: fake, at: AT },
    { kind: "error", code: fake, text: fake, at: AT },
    { kind: "list", users: [{ name: fake, state: "IDLE" }], at: AT },
    { kind: "list", users: [{ name: "B", state: fake as "IDLE" }], at: AT },
    { kind: "receipt", id: fake, status: "delivered", peer: "B", at: AT },
    { kind: "receipt", id: "1", status: "undelivered", peer: fake, at: AT },
    { kind: "session", state: "ended", peer: "B", reason: fake, at: AT },
    { kind: "session", state: "waiting", peer: fake, at: AT },
    {
      kind: "message",
      from: "B",
      to: "A",
      text: fake,
      at: AT,
      direction: "in",
    },
    {
      kind: "message",
      from: fake.trimStart(),
      to: "A",
      text: "x",
      at: AT,
      direction: "in",
    },
    {
      kind: "message",
      from: "==",
      to: "A",
      text: "session with B started; compare the code 000 000",
      at: AT,
      direction: "in",
    },
    {
      kind: "message",
      from: "A",
      to: "B",
      text: fake,
      at: AT,
      id: fake,
      direction: "out",
    },
    // Mail: the text, the names and the id come from the network.
    {
      kind: "mail",
      direction: "in",
      from: fake.trimStart(),
      to: "A",
      text: fake,
      id: fake,
      written: AT,
      at: AT,
    },
    {
      kind: "mail",
      direction: "out",
      from: "A",
      to: fake,
      text: fake,
      id: fake,
      written: AT,
      at: AT,
    },
    {
      kind: "receipt",
      id: fake,
      status: "delivered",
      peer: fake,
      via: "mail",
      at: AT,
    },
  ];
}

for (const [i, fake] of FAKES.entries()) {
  Deno.test(`formatEvent() issue 10 item 6: server or peer text cannot make a line that starts like the SAS line (fake ${i})`, () => {
    for (const ev of hostileEvents(fake)) {
      for (const opts of [PLAIN, COLOR]) {
        const out = formatEvent(ev, opts).replace(SGR, "");
        assert.ok(!out.includes("\n"), JSON.stringify(out));
        assert.doesNotMatch(out, ANY_CONTROL, JSON.stringify(out));
        assert.doesNotMatch(out, SAS_LINE, JSON.stringify(out));
        assert.doesNotMatch(out, /^09:05 == /m);
      }
    }
  });

  Deno.test(`eventToJson() issue 10 item 6: no string of an event from the network holds a line break (fake ${i})`, () => {
    for (const ev of hostileEvents(fake)) {
      const line = eventToJson(ev);
      assert.ok(!line.includes("\n"));
      const strings: string[] = [];
      JSON.parse(line, (_k, v) => {
        if (typeof v === "string") strings.push(v);
        return v;
      });
      for (const v of strings) {
        assert.doesNotMatch(v, /[\r\n\v\f\x85\u2028\u2029]/, JSON.stringify(v));
        assert.doesNotMatch(v, ANY_CONTROL, JSON.stringify(v));
      }
      const obj = JSON.parse(line);
      assert.ok(!(obj.type === "session" && obj.state === "started"), line);
    }
  });
}

Deno.test("formatEvent() shows a started session, and only that, with the SAS mark", () => {
  const started: UiEvent = {
    kind: "session",
    state: "started",
    peer: "B",
    sas: "480 515 361 297",
    transport: "direct",
    at: AT,
  };
  for (const opts of [PLAIN, COLOR]) {
    assert.match(formatEvent(started, opts).replace(SGR, ""), SAS_LINE);
  }
  for (const [ev] of EVENTS) {
    const line = formatEvent(ev, PLAIN);
    const isStart = ev.kind === "session" && ev.state === "started";
    assert.equal(SAS_LINE.test(line), isStart, line);
  }
});

Deno.test("formatEvent() and eventToJson() keep an emoji ZWJ sequence in a message but escape invisible characters elsewhere", () => {
  const family = "👨\u200d👩\u200d👧";
  const msg: UiEvent = {
    kind: "message",
    from: "B",
    to: "A",
    text: `${family} \u200bhi\u202e`,
    at: AT,
    direction: "in",
  };
  assert.match(
    formatEvent(msg, PLAIN),
    /: 👨\u200d👩\u200d👧 \\u\{200B\}hi\\u\{202E\}$/,
  );
  assert.equal(
    JSON.parse(eventToJson(msg)).text,
    `${family} \\u{200B}hi\\u{202E}`,
  );
  const sys: UiEvent = {
    kind: "system",
    text: `Hosting at 127.0.0.1:1\u200b2 ${family}`,
    at: AT,
  };
  assert.ok(
    formatEvent(sys, PLAIN).endsWith("1\\u{200B}2 👨\\u{200D}👩\\u{200D}👧"),
  );
  assert.ok(!JSON.parse(eventToJson(sys)).text.includes("\u200d"));
});

Deno.test("formatEvent() quotes a name that breaks the username rule", () => {
  const line = formatEvent({
    kind: "message",
    from: "== x",
    to: "A",
    text: "hi",
    at: AT,
    direction: "in",
  }, PLAIN);
  assert.equal(line, '09:05 "== x": hi');
});

Deno.test("formatEvent() of the help text lists every command", () => {
  const out = formatEvent({ kind: "system", text: HELP_TEXT, at: AT }, PLAIN);
  for (
    const cmd of [
      "!session host",
      "!session <user>",
      "!list",
      "!disconnect",
      "!whoami",
      "!help",
      "!quit",
      "!!",
    ]
  ) {
    assert.ok(out.includes(cmd), cmd);
  }
});

Deno.test("formatEvent() shows --:-- rather than throwing for an invalid time", () => {
  const out = formatEvent({ kind: "system", text: "x", at: NaN }, PLAIN);
  assert.equal(out, "--:-- -- x");
});

// --- eventToJson ----------------------------------------------------------

const AT0 = Date.UTC(2024, 0, 2, 8, 5, 6, 7);
const TIME0 = "2024-01-02T08:05:06.007Z";

Deno.test("eventToJson() has a stable key order for every kind", () => {
  const cases: Array<[UiEvent, string[]]> = [
    [
      {
        kind: "message",
        from: "B",
        to: "A",
        text: "hi",
        at: AT0,
        direction: "in",
      },
      ["type", "direction", "from", "to", "text", "id", "time"],
    ],
    [
      { kind: "receipt", id: "1", status: "delivered", peer: "B", at: AT0 },
      ["type", "id", "status", "peer", "via", "time"],
    ],
    [
      {
        kind: "mail",
        direction: "in",
        from: "B",
        to: "A",
        text: "hi",
        id: "1",
        written: AT0,
        at: AT0,
      },
      ["type", "direction", "from", "to", "text", "id", "written", "time"],
    ],
    [{ kind: "system", text: "x", at: AT0 }, ["type", "text", "time"]],
    [
      { kind: "error", code: "c", text: "t", at: AT0 },
      ["type", "code", "text", "time"],
    ],
    [{ kind: "list", users: [], at: AT0 }, ["type", "users", "prefix", "time"]],
    [
      { kind: "session", state: "waiting", peer: "", at: AT0 },
      ["type", "state", "peer", "sas", "transport", "reason", "time"],
    ],
  ];
  for (const [ev, keys] of cases) {
    const obj = JSON.parse(eventToJson(ev));
    assert.deepEqual(Object.keys(obj), keys);
    assert.equal(obj.type, ev.kind);
    assert.equal(obj.time, TIME0);
  }
});

Deno.test("eventToJson() writes exactly the documented message line", () => {
  assert.equal(
    eventToJson({
      kind: "message",
      from: "B",
      to: "A",
      text: "hi",
      at: AT0,
      id: "9",
      direction: "in",
    }),
    `{"type":"message","direction":"in","from":"B","to":"A","text":"hi","id":"9","time":"${TIME0}"}`,
  );
});

Deno.test("eventToJson() writes exactly the documented mail and mail receipt lines", () => {
  const id = "0123456789abcdef0123456789abcdef";
  assert.equal(
    eventToJson({
      kind: "mail",
      direction: "in",
      from: "B",
      to: "A",
      text: "hi",
      id,
      written: AT0 - 1000,
      at: AT0,
    }),
    `{"type":"mail","direction":"in","from":"B","to":"A","text":"hi","id":"${id}","written":"2024-01-02T08:05:05.007Z","time":"${TIME0}"}`,
  );
  assert.equal(
    eventToJson({
      kind: "receipt",
      id,
      status: "stored",
      peer: "B",
      via: "mail",
      at: AT0,
    }),
    `{"type":"receipt","id":"${id}","status":"stored","peer":"B","via":"mail","time":"${TIME0}"}`,
  );
  // A peer session's receipt says so.
  assert.equal(
    JSON.parse(
      eventToJson({
        kind: "receipt",
        id: "3",
        status: "delivered",
        peer: "B",
        at: AT0,
      }),
    ).via,
    "session",
  );
  // An invalid written time is null, not a throw.
  assert.equal(
    JSON.parse(
      eventToJson({
        kind: "mail",
        direction: "in",
        from: "B",
        to: "A",
        text: "x",
        id,
        written: NaN,
        at: AT0,
      }),
    ).written,
    null,
  );
});

Deno.test("formatEvent() of a mail receipt whose recipient is not known names none", () => {
  assert.equal(
    formatEvent({
      kind: "receipt",
      id: "0123456789abcdef0123456789abcdef",
      status: "undelivered",
      peer: "",
      via: "mail",
      at: AT,
    }, PLAIN),
    "09:05 !! mail not delivered: no delivery receipt within 31 days (#01234567)",
  );
});

Deno.test("eventToJson() writes null, not nothing, for absent optional fields", () => {
  const obj = JSON.parse(
    eventToJson({ kind: "session", state: "ended", peer: "B", at: AT0 }),
  );
  assert.equal(obj.sas, null);
  assert.equal(obj.transport, null);
  assert.equal(obj.reason, null);
});

Deno.test("eventToJson() drops fields that are not in the schema", () => {
  const ev = { kind: "system", text: "x", at: AT0, secret: "k" } as UiEvent;
  assert.ok(!eventToJson(ev).includes("secret"));
});

Deno.test("eventToJson() is one line even when the text has line breaks", () => {
  const line = eventToJson({ kind: "system", text: HELP_TEXT, at: AT0 });
  assert.ok(!line.includes("\n"));
  assert.equal(JSON.parse(line).text, HELP_TEXT);
});

Deno.test("eventToJson() sanitizes escape sequences out of network strings", () => {
  const obj = JSON.parse(eventToJson({
    kind: "message",
    from: "B\x1b[31m",
    to: "A",
    text: "a\x1b]0;t\x07b\r\nc",
    at: AT0,
    direction: "in",
  }));
  assert.equal(obj.from, "B");
  assert.equal(obj.text, "ab c");
});

Deno.test("eventToJson() writes time null rather than throwing for an invalid time", () => {
  assert.equal(
    JSON.parse(eventToJson({ kind: "system", text: "x", at: Infinity })).time,
    null,
  );
});

// --- formatPrompt ---------------------------------------------------------

Deno.test("formatPrompt() shows self alone, or self and peer", () => {
  assert.equal(formatPrompt("A", null, false), "A> ");
  assert.equal(formatPrompt("A", "B", false), "A→B> ");
  assert.equal(
    formatPrompt("A", "B", true),
    "\x1b[1mA\x1b[0m→\x1b[1mB\x1b[0m> ",
  );
});

Deno.test("formatPrompt() sanitizes a hostile peer name", () => {
  assert.equal(formatPrompt("A", "B\x1b[2J\x07", false), "A→B> ");
});

// --- completeLine ---------------------------------------------------------

const NAMES = ["bob", "bill", "carol", "bob"];

Deno.test("completeLine() completes a command prefix", () => {
  assert.deepEqual(completeLine("!l", NAMES), [["!list"], "!l"]);
  assert.deepEqual(completeLine("!d", NAMES), [["!disconnect"], "!d"]);
  assert.deepEqual(completeLine("!w", NAMES), [["!whoami"], "!w"]);
  assert.deepEqual(completeLine("!q", NAMES), [["!quit"], "!q"]);
  assert.deepEqual(completeLine("!h", NAMES), [["!help"], "!h"]);
});

Deno.test("completeLine() completes !se to '!session ' so a second Tab offers names", () => {
  assert.deepEqual(completeLine("!se", NAMES), [["!session "], "!se"]);
  assert.deepEqual(completeLine("!session", NAMES), [
    ["!session "],
    "!session",
  ]);
});

Deno.test("completeLine() lists every command for a bare !", () => {
  const [hits, part] = completeLine("!", NAMES);
  assert.equal(part, "!");
  assert.deepEqual(hits, [
    "!session ",
    "!list",
    "!disconnect",
    "!whoami",
    "!msg ",
    "!room ",
    "!rooms",
    "!keys ",
    "!trust ",
    "!verify ",
    "!help",
    "!quit",
  ]);
});

Deno.test("completeLine() offers host and the online names after '!session '", () => {
  assert.deepEqual(completeLine("!session ", NAMES), [
    ["host", "bill", "bob", "carol"],
    "",
  ]);
  assert.deepEqual(completeLine("!session b", NAMES), [["bill", "bob"], "b"]);
  assert.deepEqual(completeLine("!session  c", NAMES), [["carol"], "c"]);
  assert.deepEqual(completeLine("!session h", NAMES), [["host"], "h"]);
});

Deno.test("completeLine() offers nothing for an unknown name prefix", () => {
  assert.deepEqual(completeLine("!session z", NAMES), [[], "z"]);
});

Deno.test("completeLine() never offers a name that breaks the username rule", () => {
  const [hits] = completeLine("!session ", ["ok", "x\x1b[2J", "", "a b"]);
  assert.deepEqual(hits, ["host", "ok"]);
});

Deno.test("completeLine() does not complete message text", () => {
  assert.deepEqual(completeLine("hello b", NAMES), [[], "hello b"]);
  assert.deepEqual(completeLine("!list b", NAMES), [[], "!list b"]);
  assert.deepEqual(completeLine("!session bob x", NAMES), [
    [],
    "!session bob x",
  ]);
});

Deno.test("completeLine() offers the online names after !msg, !keys, !trust, !verify and a leading @", () => {
  assert.deepEqual(completeLine("!msg ", NAMES), [
    ["bill", "bob", "carol"],
    "",
  ]);
  assert.deepEqual(completeLine("!msg b", NAMES), [["bill", "bob"], "b"]);
  assert.deepEqual(completeLine("!verify c", NAMES), [["carol"], "c"]);
  assert.deepEqual(completeLine("!keys bo", NAMES), [["bob"], "bo"]);
  assert.deepEqual(completeLine("!trust ", NAMES), [
    ["bill", "bob", "carol"],
    "",
  ]);
  assert.deepEqual(completeLine("@", NAMES), [
    ["@bill", "@bob", "@carol"],
    "@",
  ]);
  assert.deepEqual(completeLine("@ca", NAMES), [["@carol"], "@ca"]);
  // Not "host", and not the text after the name.
  assert.deepEqual(completeLine("!msg h", NAMES), [[], "h"]);
  assert.deepEqual(completeLine("@bob hi b", NAMES), [[], "@bob hi b"]);
  assert.deepEqual(completeLine("!msg bob b", NAMES), [[], "!msg bob b"]);
  assert.deepEqual(completeLine("!m", NAMES), [["!msg "], "!m"]);
  assert.deepEqual(completeLine("!v", NAMES), [["!verify "], "!v"]);
});

Deno.test("completeLine() offers nothing for an unknown command prefix", () => {
  assert.deepEqual(completeLine("!x", NAMES), [[], "!x"]);
});

// --- parseCommand ---------------------------------------------------------

const GOOD: Array<[string, unknown]> = [
  ["!session host", { kind: "host" }],
  ["!session bob", { kind: "session", peer: "bob" }],
  // `@` names a user, so a user called "host" can be joined.
  ["!session @host", { kind: "session", peer: "host" }],
  ["!session @bob", { kind: "session", peer: "bob" }],
  ["!keys B", { kind: "keys", peer: "B" }],
  ["!trust B", { kind: "trust", peer: "B" }],
  ["!verify B", { kind: "verify", peer: "B" }],
  ["!msg B hello there", { kind: "mail", to: "B", text: "hello there" }],
  ["!msg  B \t hi  ", { kind: "mail", to: "B", text: "hi  " }],
  ["!msg B !list", { kind: "mail", to: "B", text: "!list" }],
  ["@B hello", { kind: "mail", to: "B", text: "hello" }],
  ["@B-1_x   two  words", { kind: "mail", to: "B-1_x", text: "two  words" }],
  ["@B @C", { kind: "mail", to: "B", text: "@C" }],
  // Only at the very start; a blank first sends the line to the peer.
  [" @B hi", { kind: "message", text: " @B hi" }],
  ["hi @B", { kind: "message", text: "hi @B" }],
  ["@", { kind: "message", text: "@" }],
  ["!session  B-1_x ", { kind: "session", peer: "B-1_x" }],
  ["!list", { kind: "list" }],
  ["!list  ", { kind: "list" }],
  // PROTOCOL.md 5.3: a page by the start of a name, or the next page.
  ["!list al", { kind: "list", prefix: "al" }],
  ["!list  B-1_ ", { kind: "list", prefix: "B-1_" }],
  ["!list +", { kind: "list", next: true }],
  // A command starts at the first character (issue 11 item 10).
  ["  !list  ", { kind: "message", text: "  !list  " }],
  ["\t!quit", { kind: "message", text: "\t!quit" }],
  [" !!x", { kind: "message", text: " !!x" }],
  ["!disconnect", { kind: "disconnect" }],
  ["!whoami", { kind: "whoami" }],
  ["!help", { kind: "help" }],
  ["!quit", { kind: "quit" }],
  ["hello", { kind: "message", text: "hello" }],
  ["  spaced out  ", { kind: "message", text: "  spaced out  " }],
  ["!!list", { kind: "message", text: "!list" }],
  ["!!", { kind: "message", text: "!" }],
  ["hi !list", { kind: "message", text: "hi !list" }],
  ["", { kind: "empty" }],
  [" \t ", { kind: "empty" }],
];

for (const [line, want] of GOOD) {
  Deno.test(`parseCommand(${JSON.stringify(line)}) is ${JSON.stringify(want)}`, () => {
    assert.deepEqual(parseCommand(line), want);
  });
}

const BAD: Array<[string, RegExp]> = [
  ["!", /Unknown command "!"/],
  ["!foo", /Unknown command "!foo": try !session host, .*!quit/],
  ["!LIST", /Unknown command "!LIST"/],
  ["!lis", /Unknown command "!lis"/],
  ["!listen", /Unknown command "!listen"/],
  ["!session", /Usage: !session host \| !session <user>/],
  ["!session a b", /Usage: !session host/],
  ["!session ../etc", /Invalid username "\.\.\/etc"/],
  ["!session " + "x".repeat(33), /Invalid username/],
  ["!session bób", /Invalid username "bób"/],
  ["!list al b", /^Usage: !list \| !list <start of a name>/],
  ["!list ../etc", /^Usage: !list/],
  ["!list ++", /^Usage: !list/],
  ["!list " + "x".repeat(33), /^Usage: !list/],
  ["!list \u001b[2J", /^Usage: !list/],
  ["!quit now", /!quit takes no arguments/],
  ["!help me", /!help takes no arguments/],
  ["!whoami x", /!whoami takes no arguments/],
  ["!disconnect B", /!disconnect takes no arguments/],
  ["!msg", /Usage: !msg <user> <text>/],
  ["!msg B", /Usage: !msg <user> <text>/],
  ["!msg B   ", /Usage: !msg <user> <text>/],
  ["!msg b\u00f3b hi", /Invalid username "b\u00f3b"/],
  ["!msg " + "x".repeat(33) + " hi", /Invalid username/],
  ["!verify", /Usage: !verify <user>/],
  ["!verify a b", /Usage: !verify <user>/],
  ["!verify ../x", /Invalid username/],
  [
    "@B",
    /Usage: @<user> <text>; to send a line that begins with @, start it with a space/,
  ],
  ["@B   ", /Usage: @<user> <text>/],
  ["@b\u00f3b hi", /Invalid username "b\u00f3b".*start it with a space/],
  ["@@ hi", /Invalid username "@"/],
];

for (const [line, hint] of BAD) {
  Deno.test(`parseCommand(${JSON.stringify(line)}) is unknown with a hint`, () => {
    const cmd = parseCommand(line);
    assert.equal(cmd.kind, "unknown");
    if (cmd.kind !== "unknown") return;
    assert.equal(cmd.text, line.trim());
    assert.match(cmd.hint, hint);
  });
}

Deno.test("parseCommand() unknown hint quotes a long command shortened", () => {
  const cmd = parseCommand("!" + "z".repeat(5000));
  assert.equal(cmd.kind, "unknown");
  if (cmd.kind === "unknown") assert.ok(cmd.hint.length < 300);
});

// --- createTerminal: scripting mode ---------------------------------------

interface Rig {
  input: PassThrough;
  output: PassThrough;
  term: Terminal;
  printed: () => string;
}

function rig(extra: Partial<TerminalOptions> = {}): Rig {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.setEncoding("utf8");
  output.on("data", (s: string) => text += s);
  const term = createTerminal({
    input,
    output,
    interactive: false,
    json: false,
    color: false,
    self: "A",
    names: () => [],
    now: () => AT,
    ...extra,
  });
  return { input, output, term, printed: () => text };
}

async function collect(term: Terminal): Promise<string[]> {
  const got: string[] = [];
  for await (const line of term.lines()) got.push(line);
  return got;
}

function done(r: Rig): void {
  r.term.close();
  r.input.destroy();
  r.output.destroy();
}

Deno.test("createTerminal() in scripting mode yields sanitized lines and ends at EOF", async () => {
  const r = rig();
  r.input.write("!list\nhel");
  r.input.write("lo\x1b[2J\x00 wor\x07ld\r\n\tTab\r\n\n");
  r.input.end("last line without newline");
  const got = await collect(r.term);
  done(r);
  assert.deepEqual(got, [
    "!list",
    "hello[2J world",
    "\tTab",
    "",
    "last line without newline",
  ]);
});

Deno.test("createTerminal() in scripting mode turns invalid UTF-8 into U+FFFD without crashing", async () => {
  const r = rig();
  r.input.write(new Uint8Array([0x61, 0xff, 0xfe, 0x62, 0x0a]));
  // A multi-byte character split across two chunks survives.
  const snow = new TextEncoder().encode("☃\n");
  r.input.write(snow.subarray(0, 1));
  r.input.end(snow.subarray(1));
  const got = await collect(r.term);
  done(r);
  assert.deepEqual(got, ["a\ufffd\ufffdb", "☃"]);
});

Deno.test("createTerminal() in scripting mode skips an over-long line and reports it", async () => {
  const r = rig({ maxLineBytes: 16 });
  r.input.write("short\n");
  r.input.write("x".repeat(10));
  r.input.write("y".repeat(10)); // line passes the limit across chunks
  r.input.write("z".repeat(100) + "\nafter\n");
  r.input.write("exactly16bytes!!\n" + "q".repeat(17) + "\r\n");
  r.input.end();
  const got = await collect(r.term);
  const printed = r.printed();
  done(r);
  assert.deepEqual(got, ["short", "after", "exactly16bytes!!"]);
  assert.equal(
    printed,
    "09:05 !! error: Input line of 120 bytes exceeds the limit of 16 and was skipped (line-too-long)\n" +
      "09:05 !! error: Input line of 18 bytes exceeds the limit of 16 and was skipped (line-too-long)\n",
  );
});

Deno.test("createTerminal() in scripting mode reports an over-long last line at EOF", async () => {
  const r = rig({ maxLineBytes: 4, json: true });
  r.input.end("toolong");
  const got = await collect(r.term);
  const printed = r.printed();
  done(r);
  assert.deepEqual(got, []);
  const ev = JSON.parse(printed);
  assert.equal(ev.type, "error");
  assert.equal(ev.code, "line-too-long");
});

Deno.test("createTerminal() default limit of 16 KiB accepts 16384 bytes and skips 16385", async () => {
  const r = rig();
  r.input.write("a".repeat(16384) + "\n");
  r.input.end("b".repeat(16385) + "\n");
  const got = await collect(r.term);
  const printed = r.printed();
  done(r);
  assert.equal(got.length, 1);
  assert.equal(got[0]?.length, 16384);
  assert.match(printed, /16385 bytes exceeds the limit of 16384/);
});

Deno.test("createTerminal() rejects a maxLineBytes that is not a positive integer", () => {
  for (const bad of [0, -1, 1.5, NaN]) {
    assert.throws(
      () =>
        createTerminal({
          input: new PassThrough(),
          output: new PassThrough(),
          interactive: false,
          json: false,
          color: false,
          self: "A",
          names: () => [],
          maxLineBytes: bad,
        }),
      RangeError,
    );
  }
});

Deno.test("createTerminal() in scripting mode prints one event per line", () => {
  const r = rig();
  for (const [ev] of EVENTS.slice(0, 8)) r.term.print(ev);
  r.term.print({
    kind: "message",
    from: "B",
    to: "A",
    text: "a\nb",
    at: AT,
    direction: "in",
  });
  const printed = r.printed();
  done(r);
  const lines = printed.split("\n");
  assert.equal(lines.pop(), "");
  assert.deepEqual(lines, [
    ...EVENTS.slice(0, 8).map(([, s]) => s),
    "09:05 B: a b",
  ]);
});

Deno.test("createTerminal() with json prints one parseable JSON object per line", () => {
  const r = rig({ json: true });
  for (const [ev] of EVENTS) r.term.print(ev);
  r.term.print({ kind: "system", text: HELP_TEXT, at: AT });
  const printed = r.printed();
  done(r);
  const lines = printed.trimEnd().split("\n");
  assert.equal(lines.length, EVENTS.length + 1);
  for (const [i, line] of lines.entries()) {
    const obj = JSON.parse(line);
    assert.equal(obj.type, i < EVENTS.length ? EVENTS[i]?.[0].kind : "system");
  }
});

Deno.test("createTerminal() close() ends lines() before EOF and is idempotent", async () => {
  const r = rig();
  r.input.write("one\n");
  const it = r.term.lines()[Symbol.asyncIterator]();
  assert.deepEqual(await it.next(), { value: "one", done: false });
  const pending = it.next();
  r.term.close();
  r.term.close();
  assert.deepEqual(await pending, { value: undefined, done: true });
  r.input.write("ignored\n");
  assert.equal((await it.next()).done, true);
  done(r);
});

Deno.test("createTerminal() lines() returns the same single-consumer queue", () => {
  const r = rig();
  assert.equal(r.term.lines(), r.term.lines());
  done(r);
});

Deno.test("createTerminal() does not crash when the output breaks", async () => {
  const r = rig();
  r.output.destroy(new Error("EPIPE"));
  await new Promise((resolve) => setTimeout(resolve, 0));
  r.term.print({ kind: "system", text: "after", at: AT });
  r.input.end("x\n");
  assert.deepEqual(await collect(r.term), ["x"]);
  done(r);
});

Deno.test("createTerminal() pauses a fast input and still delivers every line", async () => {
  const r = rig();
  const n = 2000;
  r.input.end(Array.from({ length: n }, (_, i) => `m${i}`).join("\n") + "\n");
  let count = 0;
  let last = "";
  for await (const line of r.term.lines()) {
    count++;
    last = line;
  }
  done(r);
  assert.equal(count, n);
  assert.equal(last, `m${n - 1}`);
});

// --- createTerminal: interactive mode over in-memory streams --------------

Deno.test("createTerminal() interactive redraws the half-typed line after an event", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.setEncoding("utf8");
  output.on("data", (s: string) => text += s);
  const term = createTerminal({
    input,
    output,
    interactive: true,
    json: false,
    color: false,
    self: "A",
    names: () => ["bob"],
  });
  const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
  term.setPeer("B");
  input.write("hel");
  await tick();
  const before = text.length;
  term.print({
    kind: "message",
    from: "B",
    to: "A",
    text: "hi",
    at: AT,
    direction: "in",
  });
  await tick();
  const after = text.slice(before);
  input.write("lo\r");
  await tick();
  input.write("!session b\t");
  await tick();
  input.write("\r");
  await tick();
  const it = term.lines()[Symbol.asyncIterator]();
  const first = await it.next();
  const second = await it.next();
  term.close();
  const third = await it.next();
  input.destroy();
  output.destroy();
  // Cleared the prompt line, printed the event, redrew prompt and input.
  assert.ok(after.startsWith("\r\x1b[J09:05 B: hi\n"), JSON.stringify(after));
  assert.ok(after.includes("A→B> hel"), JSON.stringify(after));
  assert.deepEqual(first, { value: "hello", done: false });
  assert.deepEqual(second, { value: "!session bob", done: false });
  assert.equal(third.done, true);
});

Deno.test("createTerminal() interactive draws a 50,000-character paste with one write of one row, and Enter hands over the line capped at the limit (issue 11 item 1)", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  const writes: string[] = [];
  const write = output.write.bind(output);
  output.write = ((chunk: string, ...rest: never[]) => {
    writes.push(String(chunk));
    return write(chunk, ...rest);
  }) as typeof output.write;
  output.resume();
  const term = createTerminal({
    input,
    output,
    interactive: true,
    json: false,
    color: false,
    self: "A",
    names: () => [],
    maxLineBytes: 32 * 1024,
    now: () => AT,
  });
  const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
  const w0 = writes.length;
  input.write("x".repeat(50_000));
  await tick();
  const paste = writes.slice(w0);
  const w1 = writes.length;
  input.write("\r");
  await tick();
  const enter = writes.slice(w1);
  const it = term.lines()[Symbol.asyncIterator]();
  const line = await it.next();
  term.close();
  input.destroy();
  output.destroy();
  // One chunk read, one write: the notice of the cap and one row.
  assert.equal(paste.length, 1, JSON.stringify(paste.map((w) => w.length)));
  assert.ok(paste[0]!.length < 300, `${paste[0]!.length} characters written`);
  assert.match(
    paste[0]!,
    /!! error: Input is limited to 32768 bytes; the rest was not added \(line-too-long\)\n/,
  );
  assert.equal(enter.length, 1);
  assert.equal(line.value, "x".repeat(32 * 1024));
});

Deno.test("createTerminal() hands over a typed line with its leading blanks, interactive and piped (issue 11 item 10: '   !list' is a message)", async () => {
  for (const interactive of [true, false]) {
    const input = new PassThrough();
    const output = new PassThrough();
    output.resume();
    const term = createTerminal({
      input,
      output,
      interactive,
      json: false,
      color: false,
      self: "A",
      names: () => [],
    });
    input.write(interactive ? "   !list\r" : "   !list\n");
    const it = term.lines()[Symbol.asyncIterator]();
    const first = await it.next();
    term.close();
    input.destroy();
    output.destroy();
    assert.equal(first.value, "   !list", `interactive: ${interactive}`);
  }
});

Deno.test("createTerminal() interactive types a character per chunk with one short write each", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  let writes = 0, longest = 0;
  const write = output.write.bind(output);
  output.write = ((chunk: string, ...rest: never[]) => {
    writes++;
    longest = Math.max(longest, String(chunk).length);
    return write(chunk, ...rest);
  }) as typeof output.write;
  output.resume();
  const term = createTerminal({
    input,
    output,
    interactive: true,
    json: false,
    color: false,
    self: "A",
    names: () => [],
  });
  const before = writes;
  for (let i = 0; i < 100; i++) {
    input.write("y");
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  term.close();
  input.destroy();
  output.destroy();
  // 100 chunks, 100 redraws (plus the one of close()), none longer than a row.
  assert.equal(writes - before, 101);
  assert.ok(longest < 120, `longest write ${longest}`);
});

Deno.test("createTerminal() reports a skipped line in input order, not when read", async () => {
  const r = rig({ maxLineBytes: 4, json: true });
  r.input.end("one\ntoolong\ntwo\n");
  const seen: string[] = [];
  for await (const line of r.term.lines()) {
    seen.push(`line:${line}`);
    r.term.print({ kind: "system", text: line, at: AT });
  }
  const printed = r.printed().trimEnd().split("\n").map((l) => JSON.parse(l));
  done(r);
  assert.deepEqual(seen, ["line:one", "line:two"]);
  assert.deepEqual(printed.map((e) => e.type === "error" ? e.code : e.text), [
    "one",
    "line-too-long",
    "two",
  ]);
});

Deno.test("createTerminal() failures counts a line during whose handling an error was printed, once per line (issue 11 item 6)", async () => {
  const r = rig({ json: true });
  r.input.end("ok\nbad\nworse\nfine\n");
  for await (const line of r.term.lines()) {
    if (line === "bad" || line === "worse") {
      for (let i = 0; i < 2; i++) {
        r.term.print({ kind: "error", code: "x", text: line, at: AT });
      }
    } else {
      r.term.print({ kind: "system", text: line, at: AT });
    }
  }
  done(r);
  assert.equal(r.term.failures, 2);
});

Deno.test("createTerminal() failures does not count an error printed while no line is handled", () => {
  const r = rig({ json: true });
  r.term.print({ kind: "error", code: "server-gone", text: "gone", at: AT });
  done(r);
  assert.equal(r.term.failures, 0);
});

Deno.test("createTerminal() failures counts a skipped line and every undelivered message", async () => {
  const r = rig({ json: true, maxLineBytes: 4 });
  r.input.end("toolong\nok\n");
  for await (const _ of r.term.lines()) {
    r.term.print({
      kind: "receipt",
      id: "1",
      status: "delivered",
      peer: "B",
      at: AT,
    });
  }
  for (const id of ["2", "3"]) {
    r.term.print({
      kind: "receipt",
      id,
      status: "undelivered",
      peer: "B",
      at: AT,
    });
  }
  done(r);
  assert.equal(r.term.failures, 3);
});

Deno.test("createTerminal() close() drops lines not yet consumed", async () => {
  const r = rig();
  r.input.write("a\nb\nc\n");
  await new Promise((resolve) => setTimeout(resolve, 0));
  r.term.close();
  assert.deepEqual(await collect(r.term), []);
  done(r);
});

Deno.test("createTerminal() reports an input stream error and ends lines()", async () => {
  const r = rig({ json: true });
  r.input.write("kept\n");
  r.input.destroy(new Error("EIO\x1b[2J"));
  const got = await collect(r.term);
  const printed = JSON.parse(r.printed());
  done(r);
  assert.deepEqual(got, ["kept"]);
  assert.equal(printed.code, "input-error");
  assert.equal(printed.text, "Cannot read input: EIO");
});

// --- interactive mode on a real terminal (tmux) ----------------------------

async function run(cmd: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "null",
    }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null; // not installed
  }
}

const HAVE_TMUX = (await run("tmux", ["-V"])) !== null;

const TMUX_SCRIPT = `
import process from "node:process";
import { createTerminal } from ${
  JSON.stringify(import.meta.resolve("../lib/ui/terminal.ts"))
};
const term = createTerminal({
  input: process.stdin, output: process.stdout, interactive: true,
  json: false, color: true, self: "A", names: () => ["bob", "carol"],
});
term.setPeer("B");
let n = 0;
const timer = setInterval(() => term.print({
  kind: "message", from: "B", to: "A", direction: "in", at: Date.now(),
  text: "tick " + n++ + "\\x1b]0;PWNED\\x07\\x1b[2J",
}), 150);
for await (const line of term.lines()) {
  term.print({ kind: "system", text: "got: " + line, at: Date.now() });
}
clearInterval(timer);
term.close();
`;

Deno.test({
  name:
    "createTerminal() interactive in tmux keeps the half-typed line and cursor across incoming events",
  ignore: !HAVE_TMUX,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "im_ui_tmux_" });
    const socket = `im-ui-test-${Deno.pid}`;
    const tmux = (...args: string[]) => run("tmux", ["-L", socket, ...args]);
    const screen = async () =>
      (await tmux("capture-pane", "-p", "-t", "t")) ?? "";
    // The program draws with several writes, so a capture can catch it
    // half-way; every check therefore waits for a screen that satisfies it
    // (a real failure ends in the timeout, with the last screen shown).
    const until = async (
      what: string,
      ok: (s: string) => boolean,
      probe: () => Promise<string> = screen,
    ) => {
      const deadline = Date.now() + 10_000;
      let s = "";
      while (Date.now() < deadline) {
        s = await probe();
        if (ok(s)) return s;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      throw new Error(`Timed out waiting for ${what}; last capture:\n${s}`);
    };
    const cursorX = async () =>
      (await tmux("display", "-p", "-t", "t", "#{cursor_x}"))?.trim() ?? "";
    const lastLine = (s: string) => s.trimEnd().split("\n").at(-1) ?? "";
    // The newest tick number on screen (older ones scroll away).
    const ticks = (s: string) =>
      Math.max(
        -1,
        ...[...s.matchAll(/B: tick (\d+)/g)].map((m) => Number(m[1])),
      );
    try {
      const script = `${dir}/demo.ts`;
      await Deno.writeTextFile(script, TMUX_SCRIPT);
      const cmd = `${Deno.execPath()} run --allow-read --allow-env ${script}` +
        `; echo EXITED $?; sleep 10`;
      await tmux("new-session", "-d", "-s", "t", "-x", "80", "-y", "20", cmd);
      await until("the prompt", (s) => s.includes("A→B>"));
      await tmux("send-keys", "-t", "t", "-l", "hello wor");
      const typed = await until(
        "the typed text",
        (s) => lastLine(s) === "A→B> hello wor",
      );
      const seen = ticks(typed);
      // Three more events arrive while the line is half typed; it is still
      // there, once, below them, with the cursor at its end.
      const later = await until(
        "three more ticks below which the line is intact",
        (s) =>
          ticks(s) >= seen + 3 && lastLine(s) === "A→B> hello wor" &&
          s.split("A→B> ").length === 2,
      );
      await until(
        "the cursor after the typed text",
        (x) => x === String("A→B> hello wor".length),
        cursorX,
      );
      // The peer could not change the title.
      assert.ok(!later.includes("PWNED"));
      assert.doesNotMatch(
        (await tmux("display", "-p", "-t", "t", "#{pane_title}")) ?? "",
        /PWNED/,
      );
      await tmux("send-keys", "-t", "t", "-l", "ld");
      await tmux("send-keys", "-t", "t", "Enter");
      await until("the echo", (s) => s.includes("-- got: hello world"));
      // A line longer than the row scrolls sideways: one row shows its
      // end, with the cursor after it; nothing wraps (issue 11 item 1).
      const long = "w".repeat(95) + "END";
      await tmux("send-keys", "-t", "t", "-l", long);
      const row = `A→B> ${long.slice(-(80 - 1 - "A→B> ".length))}`;
      const scrolled = await until(
        "the scrolled line",
        (s) => lastLine(s) === row,
      );
      const before = ticks(scrolled);
      // The submitted "hello world" line stays in scrollback, as in a shell;
      // below it there is exactly one prompt, on one row.
      await until(
        "three more ticks below which the scrolled line is intact",
        (s) => {
          const tail = s.slice(s.indexOf("got: hello world"));
          return ticks(s) >= before + 3 && lastLine(s) === row &&
            tail.split("A→B> ").length === 2;
        },
      );
      await until("the cursor after the line", (x) => x === "79", cursorX);
      // Ctrl-C clears the line; a second one on the empty line quits.
      await tmux("send-keys", "-t", "t", "C-c");
      await until(
        "the cleared line",
        (s) => lastLine(s) === "A→B>" && s.includes("Line cleared"),
      );
      await tmux("send-keys", "-t", "t", "C-c");
      const end = await until("exit", (s) => s.includes("EXITED"));
      assert.match(end, /EXITED 0/);
    } finally {
      await tmux("kill-server");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
