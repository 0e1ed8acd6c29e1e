// deno-lint-ignore-file no-control-regex -- tests match escape sequences on purpose
/**
 * The terminal side of rooms (issue 13, PROTOCOL.md section 10): Tab
 * completion of room names, the prompt `A#team> `, the lines and `--json`
 * of room events, room messages and room receipts, and that a room's name
 * or text from the network is sanitized in both.
 */
import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import {
  completeLine,
  createTerminal,
  eventToJson,
  formatEvent,
  formatPrompt,
} from "../lib/ui/mod.ts";
import type { UiEvent } from "../lib/client/mod.ts";

const AT = new Date(2024, 0, 2, 9, 5).getTime(); // local 09:05
const AT0 = Date.UTC(2024, 0, 2, 8, 5, 6, 7);
const TIME0 = "2024-01-02T08:05:06.007Z";
const PLAIN = { color: false, self: "A" };
const COLOR = { color: true, self: "A" };
const ANY_CONTROL = /[\x00-\x1f\x7f-\x9f]/;
const SGR = /\x1b\[[0-9;]*m/g;
const NAMES = ["bob", "carol", "bill"];
const ROOMS = ["team", "lab", "tea", "add"];

// --- completeLine ---------------------------------------------------------

Deno.test("completeLine() keeps working with two arguments: no rooms", () => {
  assert.deepEqual(completeLine("#t", NAMES), [[], "#t"]);
  assert.deepEqual(completeLine("!room t", NAMES), [[], "t"]);
  assert.deepEqual(completeLine("!ro", NAMES), [["!room ", "!rooms"], "!ro"]);
  assert.deepEqual(completeLine("!rooms", NAMES), [["!rooms"], "!rooms"]);
});

Deno.test("completeLine() completes room names after a leading #", () => {
  assert.deepEqual(completeLine("#", NAMES, ROOMS), [
    ["#add", "#lab", "#tea", "#team"],
    "#",
  ]);
  assert.deepEqual(completeLine("#te", NAMES, ROOMS), [
    ["#tea", "#team"],
    "#te",
  ]);
  assert.deepEqual(completeLine("#l", NAMES, ROOMS), [["#lab"], "#l"]);
  // Not the text after the room, nor a # that is not first.
  assert.deepEqual(completeLine("#team hi #l", NAMES, ROOMS), [
    [],
    "#team hi #l",
  ]);
  assert.deepEqual(completeLine(" #l", NAMES, ROOMS), [[], " #l"]);
});

Deno.test("completeLine() offers the subcommands and the rooms after '!room '", () => {
  assert.deepEqual(completeLine("!room ", NAMES, ROOMS), [
    ["#add", "add ", "create ", "lab", "leave ", "remove ", "tea", "team"],
    "",
  ]);
  assert.deepEqual(completeLine("!room c", NAMES, ROOMS), [
    ["create "],
    "c",
  ]);
  assert.deepEqual(completeLine("!room l", NAMES, ROOMS), [
    ["lab", "leave "],
    "l",
  ]);
  assert.deepEqual(completeLine("!room te", NAMES, ROOMS), [
    ["tea", "team"],
    "te",
  ]);
  // A room named like a subcommand is offered as !room takes it: #add.
  assert.deepEqual(completeLine("!room a", NAMES, ROOMS), [["add "], "a"]);
  assert.deepEqual(completeLine("!room #a", NAMES, ROOMS), [["#add"], "#a"]);
  assert.deepEqual(completeLine("!room  #te", NAMES, ROOMS), [
    ["#tea", "#team"],
    "#te",
  ]);
});

Deno.test("completeLine() offers the rooms after '!room add|remove|leave '", () => {
  for (const sub of ["add", "remove", "leave"]) {
    assert.deepEqual(completeLine(`!room ${sub} t`, NAMES, ROOMS), [
      ["tea", "team"],
      "t",
    ]);
    assert.deepEqual(completeLine(`!room ${sub} `, NAMES, ROOMS), [
      ["add", "lab", "tea", "team"],
      "",
    ]);
    assert.deepEqual(completeLine(`!room ${sub} #l`, NAMES, ROOMS), [
      ["#lab"],
      "#l",
    ]);
  }
  // A new room's name is not completed.
  assert.deepEqual(completeLine("!room create t", NAMES, ROOMS), [
    [],
    "!room create t",
  ]);
});

Deno.test("completeLine() offers online users after the room of add, remove and create", () => {
  assert.deepEqual(completeLine("!room add team b", NAMES, ROOMS), [
    ["bill", "bob"],
    "b",
  ]);
  assert.deepEqual(completeLine("!room remove team c", NAMES, ROOMS), [
    ["carol"],
    "c",
  ]);
  assert.deepEqual(completeLine("!room create team ", NAMES, ROOMS), [
    ["bill", "bob", "carol"],
    "",
  ]);
  // Each user once: those named already are not offered again.
  assert.deepEqual(completeLine("!room create team bob b", NAMES, ROOMS), [
    ["bill"],
    "b",
  ]);
  // One user only for add, none for leave.
  assert.deepEqual(completeLine("!room add team bob b", NAMES, ROOMS), [
    [],
    "!room add team bob b",
  ]);
  assert.deepEqual(completeLine("!room leave team b", NAMES, ROOMS), [
    [],
    "!room leave team b",
  ]);
});

Deno.test("completeLine() never offers a room name that breaks the username rule, and each once", () => {
  const rooms = ["ok", "o\x1b[2Jk", "o k", "", "x".repeat(33), "ok", "é"];
  assert.deepEqual(completeLine("#", [], rooms), [["#ok"], "#"]);
  assert.deepEqual(completeLine("!room o", [], rooms), [["ok"], "o"]);
  assert.deepEqual(completeLine("!room leave ", [], rooms), [["ok"], ""]);
});

// --- formatPrompt ---------------------------------------------------------

Deno.test("formatPrompt() shows the room plain lines go to, over the peer", () => {
  assert.equal(formatPrompt("A", null, false, "team"), "A#team> ");
  assert.equal(formatPrompt("A", "B", false, "team"), "A#team> ");
  assert.equal(formatPrompt("A", "B", false, null), "A→B> ");
  assert.equal(formatPrompt("A", null, false), "A> ");
  assert.equal(
    formatPrompt("A", null, true, "team"),
    "\x1b[1mA\x1b[0m#\x1b[1mteam\x1b[0m> ",
  );
  // A name from elsewhere cannot put controls in the prompt.
  const p = formatPrompt("A", null, false, "te\x1b[2J\x07am\n");
  assert.doesNotMatch(p, ANY_CONTROL);
  assert.ok(p.startsWith("A#") && p.endsWith("> "), p);
});

// --- formatEvent and eventToJson ------------------------------------------

const room = (
  change: "created" | "added" | "removed" | "left",
  by: string,
  who: string[],
  members: string[],
): UiEvent => ({
  kind: "room",
  room: "team",
  change,
  by,
  who,
  members,
  at: AT,
});

const LINES: Array<[UiEvent, string, string?]> = [
  [
    room("created", "A", ["A", "B", "C"], ["A", "B", "C"]),
    "09:05 -- [#team] A created the room: A, B, C",
  ],
  [
    room("created", "B", ["B", "A"], ["A", "B"]),
    "09:05 -- [#team] B created the room: A, B",
  ],
  [
    room("added", "A", ["D"], ["A", "B", "C", "D"]),
    "09:05 -- [#team] A added D",
  ],
  [
    room("added", "A", ["D", "E"], ["A", "B", "C", "D", "E"]),
    "09:05 -- [#team] A added D, E",
  ],
  [
    room("added", "B", ["A"], ["A", "B", "C"]),
    "09:05 -- [#team] B added you; members: A, B, C",
  ],
  [room("removed", "A", ["C"], ["A", "B"]), "09:05 -- [#team] A removed C"],
  [
    room("removed", "B", ["A"], ["B"]),
    "09:05 -- You were removed from #team by B",
  ],
  [room("left", "C", ["C"], ["A", "B"]), "09:05 -- [#team] C left"],
  [room("left", "A", ["A"], ["B", "C"]), "09:05 -- You left #team"],
  [
    {
      kind: "message",
      from: "B",
      to: "team",
      text: "hi all",
      at: AT,
      id: "12",
      direction: "in",
      room: "team",
    },
    "09:05 [#team] B: hi all",
  ],
  [
    {
      kind: "message",
      from: "A",
      to: "team",
      text: "yo",
      at: AT,
      id: "12",
      direction: "out",
      room: "team",
    },
    "09:05 [#team] A: yo #12",
  ],
  [
    {
      kind: "receipt",
      id: "12",
      status: "delivered",
      peer: "team",
      via: "room",
      delivered: 4,
      members: 5,
      at: AT,
    },
    "09:05 -- [#team] message #12 delivered to 4 of 5",
  ],
  [
    {
      kind: "receipt",
      id: "12",
      status: "delivered",
      peer: "team",
      via: "room",
      at: AT,
    },
    "09:05 -- [#team] message #12 delivered",
  ],
  [
    {
      kind: "receipt",
      id: "12",
      status: "stored",
      peer: "team",
      via: "room",
      at: AT,
    },
    "09:05 -- [#team] message #12 stored by the server",
  ],
  [
    {
      kind: "receipt",
      id: "12",
      status: "expired",
      peer: "team",
      via: "room",
      delivered: 3,
      members: 5,
      at: AT,
    },
    "09:05 !! [#team] message #12 deleted by the server after its retention, delivered to 3 of 5",
  ],
  [
    {
      kind: "receipt",
      id: "12",
      status: "undelivered",
      peer: "team",
      via: "room",
      delivered: 0,
      members: 2,
      at: AT,
    },
    "09:05 !! [#team] message #12 not delivered to 0 of 2",
  ],
  [
    {
      kind: "rooms",
      rooms: [
        {
          name: "team",
          creator: "A",
          members: ["A", "B", "C"],
          online: ["A", "C"],
        },
        { name: "lab", creator: "B", members: ["B", "E"], online: [] },
      ],
      at: AT,
    },
    "09:05 -- #team (creator A): A*, B, C* — 2 of 3 online\n" +
    "09:05 -- #lab (creator B): B, E — 0 of 2 online",
  ],
  [{ kind: "rooms", rooms: [], at: AT }, "09:05 -- rooms: you are in none"],
];

for (const [ev, want] of LINES) {
  Deno.test(`formatEvent() of ${ev.kind} is ${JSON.stringify(want)}`, () => {
    assert.equal(formatEvent(ev, PLAIN), want);
    // Colour changes nothing but the colours.
    assert.equal(formatEvent(ev, COLOR).replace(SGR, ""), want);
  });
}

Deno.test("formatEvent() of a message without a room is as before rooms", () => {
  const ev: UiEvent = {
    kind: "message",
    from: "B",
    to: "A",
    text: "hi",
    at: AT,
    direction: "in",
  };
  assert.equal(formatEvent(ev, PLAIN), "09:05 B: hi");
});

Deno.test("eventToJson() writes exactly the documented room lines", () => {
  assert.equal(
    eventToJson({
      kind: "room",
      room: "team",
      change: "added",
      by: "A",
      who: ["D"],
      members: ["A", "B", "D"],
      at: AT0,
    }),
    `{"type":"room","room":"team","change":"added","by":"A","who":["D"],"members":["A","B","D"],"time":"${TIME0}"}`,
  );
  assert.equal(
    eventToJson({
      kind: "rooms",
      rooms: [{
        name: "team",
        creator: "A",
        members: ["A", "B"],
        online: ["B"],
      }],
      at: AT0,
    }),
    `{"type":"rooms","rooms":[{"name":"team","creator":"A","members":["A","B"],"online":["B"]}],"time":"${TIME0}"}`,
  );
  assert.equal(
    eventToJson({
      kind: "message",
      from: "B",
      to: "team",
      text: "hi",
      at: AT0,
      id: "12",
      direction: "in",
      room: "team",
    }),
    `{"type":"message","direction":"in","from":"B","to":"team","text":"hi","id":"12","room":"team","time":"${TIME0}"}`,
  );
  assert.equal(
    eventToJson({
      kind: "receipt",
      id: "12",
      status: "delivered",
      peer: "team",
      via: "room",
      delivered: 4,
      members: 5,
      at: AT0,
    }),
    `{"type":"receipt","id":"12","status":"delivered","peer":"team","via":"room","room":"team","delivered":4,"members":5,"time":"${TIME0}"}`,
  );
  // Counts the server did not give, or that are not counts, are null.
  const stored = JSON.parse(eventToJson({
    kind: "receipt",
    id: "12",
    status: "stored",
    peer: "team",
    via: "room",
    delivered: NaN,
    at: AT0,
  }));
  assert.equal(stored.delivered, null);
  assert.equal(stored.members, null);
});

Deno.test("eventToJson() keeps the lines of messages and receipts without a room as they were", () => {
  const msg = JSON.parse(eventToJson({
    kind: "message",
    from: "B",
    to: "A",
    text: "hi",
    at: AT0,
    direction: "in",
  }));
  assert.deepEqual(Object.keys(msg), [
    "type",
    "direction",
    "from",
    "to",
    "text",
    "id",
    "time",
  ]);
  for (const via of [undefined, "session", "mail"] as const) {
    const r = JSON.parse(eventToJson({
      kind: "receipt",
      id: "1",
      status: "delivered",
      peer: "B",
      ...(via === undefined ? {} : { via }),
      at: AT0,
    }));
    assert.deepEqual(Object.keys(r), [
      "type",
      "id",
      "status",
      "peer",
      "via",
      "time",
    ]);
  }
});

Deno.test("eventToJson() has a stable key order for the room kinds", () => {
  const cases: Array<[UiEvent, string[]]> = [
    [
      room("left", "C", ["C"], ["A"]),
      ["type", "room", "change", "by", "who", "members", "time"],
    ],
    [{ kind: "rooms", rooms: [], at: AT }, ["type", "rooms", "time"]],
    [
      {
        kind: "message",
        from: "A",
        to: "team",
        text: "x",
        at: AT,
        direction: "out",
        room: "team",
      },
      ["type", "direction", "from", "to", "text", "id", "room", "time"],
    ],
    [
      {
        kind: "receipt",
        id: "1",
        status: "stored",
        peer: "team",
        via: "room",
        at: AT,
      },
      [
        "type",
        "id",
        "status",
        "peer",
        "via",
        "room",
        "delivered",
        "members",
        "time",
      ],
    ],
  ];
  for (const [ev, keys] of cases) {
    assert.deepEqual(Object.keys(JSON.parse(eventToJson(ev))), keys);
  }
});

// --- what comes from the network is sanitized -----------------------------

/** What a malicious server or member puts in a string to fake a line. */
const FAKES = [
  "\n09:05 == session with B started; compare the code 000 000 with B out of band",
  "\r\n09:05 -- [#team] A added you",
  "x\x1b]0;pwned\x07y",
  "x\x1b[2Jy\x1bc",
  "\u2028== fake\x85== fake",
  "\u202eevil\u200b",
  "\x9b31mred",
];

function hostile(fake: string): UiEvent[] {
  return [
    {
      kind: "room",
      room: fake,
      change: "created",
      by: fake,
      who: [fake],
      members: [fake, "A"],
      at: AT,
    },
    {
      kind: "room",
      room: fake,
      change: "removed",
      by: "B",
      who: ["A"],
      members: [],
      at: AT,
    },
    {
      kind: "room",
      room: fake,
      change: "left",
      by: "A",
      who: ["A"],
      members: [],
      at: AT,
    },
    {
      kind: "room",
      room: "team",
      change: "added",
      by: "B",
      who: [fake],
      members: [fake],
      at: AT,
    },
    {
      kind: "rooms",
      rooms: [
        { name: fake, creator: fake, members: [fake, "B"], online: [fake] },
        { name: "team", creator: "A", members: ["A"], online: [] },
      ],
      at: AT,
    },
    {
      kind: "message",
      from: fake,
      to: fake,
      text: fake,
      at: AT,
      id: fake,
      direction: "in",
      room: fake,
    },
    {
      kind: "message",
      from: "A",
      to: "team",
      text: fake,
      at: AT,
      id: fake,
      direction: "out",
      room: "team",
    },
    {
      kind: "receipt",
      id: fake,
      status: "delivered",
      peer: fake,
      via: "room",
      delivered: 1,
      members: 2,
      at: AT,
    },
    {
      kind: "receipt",
      id: fake,
      status: "expired",
      peer: fake,
      via: "room",
      at: AT,
    },
  ];
}

for (const [i, fake] of FAKES.entries()) {
  Deno.test(`formatEvent() sanitizes a room's name, members and text from the network (fake ${i})`, () => {
    for (const ev of hostile(fake)) {
      for (const opts of [PLAIN, COLOR]) {
        const out = formatEvent(ev, opts).replace(SGR, "");
        const lines = out.split("\n");
        // One line, but for !rooms one per room, each its own time and mark.
        assert.equal(
          lines.length,
          ev.kind === "rooms" ? ev.rooms.length : 1,
          JSON.stringify(out),
        );
        for (const line of lines) {
          assert.doesNotMatch(line, ANY_CONTROL, JSON.stringify(line));
          assert.doesNotMatch(line, /[\u2028\u2029\u202e\u200b]/);
          assert.match(line, /^09:05 (-- |!! |\[#)/, JSON.stringify(line));
          assert.doesNotMatch(line, /^\d\d:\d\d == /);
        }
      }
    }
  });

  Deno.test(`eventToJson() sanitizes every string of a room event (fake ${i})`, () => {
    for (const ev of hostile(fake)) {
      const line = eventToJson(ev);
      assert.ok(!line.includes("\n"));
      const strings: string[] = [];
      JSON.parse(line, (_k, v) => {
        if (typeof v === "string") strings.push(v);
        return v;
      });
      assert.ok(strings.length > 2);
      for (const v of strings) {
        assert.doesNotMatch(v, /[\r\n\v\f\x85\u2028\u2029\u202e\u200b]/);
        assert.doesNotMatch(v, ANY_CONTROL, JSON.stringify(v));
      }
    }
  });
}

Deno.test("formatEvent() quotes a room name that breaks the username rule", () => {
  const out = formatEvent({
    kind: "message",
    from: "B",
    to: "x",
    text: "hi",
    at: AT,
    direction: "in",
    room: "t]eam B: fake",
  }, PLAIN);
  assert.equal(out, '09:05 [#"t]eam B: fake"] B: hi');
  const left = formatEvent(room("left", "A", ["A"], []), PLAIN);
  assert.equal(left, "09:05 -- You left #team");
  const named = formatEvent({
    kind: "room",
    room: "a b",
    change: "left",
    by: "A",
    who: ["A"],
    members: [],
    at: AT,
  }, PLAIN);
  assert.equal(named, '09:05 -- You left #"a b"');
});

Deno.test("eventToJson() of a room message and receipt escapes invisible characters in the room", () => {
  const obj = JSON.parse(eventToJson({
    kind: "message",
    from: "B",
    to: "team",
    text: "hi",
    at: AT,
    direction: "in",
    room: "te\u200bam\x1b[2J",
  }));
  assert.equal(obj.room, "te\\u{200B}am");
});

// --- the terminal ---------------------------------------------------------

Deno.test("createTerminal() interactive: setRoom shows the room in the prompt, keeps the peer, and Tab completes rooms", async () => {
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
    rooms: () => ["team", "lab"],
  });
  const tick = () => new Promise((resolve) => setTimeout(resolve, 5));
  // The input row last drawn: CR, the prompt and the line, then EL.
  const row = () => [...text.matchAll(/\r([^\r]*)\x1b\[K/g)].at(-1)?.[1];
  term.setPeer("B");
  await tick();
  assert.equal(row(), "A→B> ");
  term.setRoom("team");
  await tick();
  assert.equal(row(), "A#team> ");
  input.write("#l\t hi\r");
  await tick();
  input.write("!room leave te\t\r");
  await tick();
  term.setRoom(null);
  await tick();
  // The peer is still there once the room is not the target.
  assert.equal(row(), "A→B> ");
  term.setPeer(null);
  term.setRoom("lab");
  await tick();
  assert.equal(row(), "A#lab> ");
  term.setRoom(null);
  await tick();
  assert.equal(row(), "A> ");
  const it = term.lines()[Symbol.asyncIterator]();
  const first = await it.next();
  const second = await it.next();
  term.close();
  input.destroy();
  output.destroy();
  assert.deepEqual(first, { value: "#lab hi", done: false });
  assert.deepEqual(second, { value: "!room leave team", done: false });
});

Deno.test("createTerminal() scripting: setRoom writes nothing, and rooms are optional", async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  let text = "";
  output.setEncoding("utf8");
  output.on("data", (s: string) => text += s);
  const term = createTerminal({
    input,
    output,
    interactive: false,
    json: true,
    color: false,
    self: "A",
    names: () => [],
  });
  term.setRoom("team");
  term.setRoom(null);
  term.print(room("left", "C", ["C"], ["A"]));
  input.end();
  for await (const _ of term.lines()) { /* none */ }
  term.close();
  output.destroy();
  assert.equal(text.split("\n").length, 2);
  assert.equal(JSON.parse(text).type, "room");
});
