/**
 * The room commands a user types (issue 13, PROTOCOL.md section 10):
 * parseCommand's `!room ...`, `!rooms` and `#<room> <text>`, their hints,
 * the Tab list and the help text.
 */
import assert from "node:assert/strict";
import {
  COMMANDS,
  HELP_TEXT,
  parseCommand,
  ROOM_SUBCOMMANDS,
} from "../lib/client/mod.ts";

const GOOD: Array<[string, unknown]> = [
  // !room create, with and without members; a leading # on the room.
  ["!room create team", { kind: "room-create", room: "team", members: [] }],
  [
    "!room create team B C",
    { kind: "room-create", room: "team", members: ["B", "C"] },
  ],
  [
    "!room  create \t team  B-1_x  C ",
    { kind: "room-create", room: "team", members: ["B-1_x", "C"] },
  ],
  [
    "!room create #team B",
    { kind: "room-create", room: "team", members: ["B"] },
  ],
  ["!room add team D", { kind: "room-add", room: "team", user: "D" }],
  ["!room add #team D", { kind: "room-add", room: "team", user: "D" }],
  ["!room remove team C", { kind: "room-remove", room: "team", user: "C" }],
  ["!room leave team", { kind: "room-leave", room: "team" }],
  ["!room leave #team", { kind: "room-leave", room: "team" }],
  // The target: a room, or (alone) back to the peer.
  ["!room team", { kind: "room-target", room: "team" }],
  ["!room #team", { kind: "room-target", room: "team" }],
  ["!room  team  ", { kind: "room-target", room: "team" }],
  ["!room", { kind: "room-target", room: undefined }],
  ["!room   ", { kind: "room-target", room: undefined }],
  // A room named like a subcommand is reached with #.
  ["!room #create", { kind: "room-target", room: "create" }],
  ["!room #leave", { kind: "room-target", room: "leave" }],
  ["!room add #add B", { kind: "room-add", room: "add", user: "B" }],
  ["!room create create", {
    kind: "room-create",
    room: "create",
    members: [],
  }],
  // Room names are case-sensitive, like usernames.
  ["!room Team", { kind: "room-target", room: "Team" }],
  ["!room CREATE", { kind: "room-target", room: "CREATE" }],
  ["!rooms", { kind: "rooms" }],
  ["!rooms  ", { kind: "rooms" }],
  // #<room> <text>: the text kept as typed after the blanks.
  ["#team hello", { kind: "room-say", room: "team", text: "hello" }],
  [
    "#team \t two  words  ",
    { kind: "room-say", room: "team", text: "two  words  " },
  ],
  ["#team !list", { kind: "room-say", room: "team", text: "!list" }],
  ["#team #other", { kind: "room-say", room: "team", text: "#other" }],
  ["#create hi", { kind: "room-say", room: "create", text: "hi" }],
  // Only at the very start; a blank first, or a lone #, is a plain message.
  [" #team hi", { kind: "message", text: " #team hi" }],
  ["\t#team hi", { kind: "message", text: "\t#team hi" }],
  ["hi #team", { kind: "message", text: "hi #team" }],
  ["#", { kind: "message", text: "#" }],
  ["# heading", { kind: "message", text: "# heading" }],
  ["!!room team", { kind: "message", text: "!room team" }],
  ["!!rooms", { kind: "message", text: "!rooms" }],
  [" !room team", { kind: "message", text: " !room team" }],
  // A room command sent to a room is text, not a command.
  ["#team !room leave team", {
    kind: "room-say",
    room: "team",
    text: "!room leave team",
  }],
];

for (const [line, want] of GOOD) {
  Deno.test(`parseCommand(${JSON.stringify(line)}) is ${JSON.stringify(want)}`, () => {
    assert.deepEqual(parseCommand(line), want);
  });
}

const NAME_RULE = /expected 1-32 characters of A-Z a-z 0-9 _ -/;

const BAD: Array<[string, RegExp]> = [
  // Arity.
  ["!room create", /^Usage: !room create <room> \[user \.\.\.\]$/],
  ["!room add", /^Usage: !room add <room> <user>$/],
  ["!room add team", /^Usage: !room add <room> <user>$/],
  ["!room add team B C", /^Usage: !room add <room> <user>$/],
  ["!room remove team", /^Usage: !room remove <room> <user>$/],
  ["!room remove team B C", /^Usage: !room remove <room> <user>$/],
  ["!room leave", /^Usage: !room leave <room>$/],
  ["!room leave team B", /^Usage: !room leave <room>$/],
  ["!room team B", /^Usage: !room <room> \| !room \| !room create/],
  ["!room #team hi", /^Usage: !room <room> \| !room \| !room create/],
  ["!rooms team", /^!rooms takes no arguments$/],
  // Room names.
  ["!room b\u00f3b", /^Invalid room name "b\u00f3b": /],
  ["!room ../x", /^Invalid room name "\.\.\/x"/],
  ["!room " + "x".repeat(33), /^Invalid room name/],
  ["!room #", /^Invalid room name "":/],
  ["!room ##team", /^Invalid room name "#team"/],
  ["!room create t.eam B", /^Invalid room name "t\.eam"/],
  ["!room add t\u00e9am B", /^Invalid room name "t\u00e9am"/],
  ["!room remove ../x B", /^Invalid room name/],
  ["!room leave a/b", /^Invalid room name "a\/b"/],
  // Member names.
  ["!room create team B ../C", /^Invalid username "\.\.\/C"/],
  ["!room add team b\u00f3b", /^Invalid username "b\u00f3b"/],
  ["!room remove team @B", /^Invalid username "@B"/],
  // A user named twice.
  [
    "!room create team B C B",
    /^Duplicate member "B" in !room create: name each user once$/,
  ],
  ["!room create team C C", /^Duplicate member "C"/],
  // #<room> without text, or with a bad name.
  [
    "#team",
    /^Usage: #<room> <text>; to send a line that begins with #, start it with a space$/,
  ],
  ["#team   ", /^Usage: #<room> <text>/],
  [
    "#t\u00e9am hi",
    /^Invalid room name "t\u00e9am": .*; to send a line that begins with #, start it with a space$/,
  ],
  ["## hi", /^Invalid room name "#"/],
  ["#a.b hi", /^Invalid room name "a\.b"/],
];

for (const [line, hint] of BAD) {
  Deno.test(`parseCommand(${JSON.stringify(line)}) is unknown with a hint`, () => {
    const cmd = parseCommand(line);
    assert.equal(cmd.kind, "unknown");
    if (cmd.kind !== "unknown") return;
    assert.equal(cmd.text, line.trim());
    assert.match(cmd.hint, hint);
    if (/Invalid room name/.test(cmd.hint)) assert.match(cmd.hint, NAME_RULE);
  });
}

Deno.test("parseCommand() shortens a long bad room name in its hint", () => {
  for (
    const line of ["!room " + "é".repeat(5000), "#" + "é".repeat(5000) + " x"]
  ) {
    const cmd = parseCommand(line);
    assert.equal(cmd.kind, "unknown");
    if (cmd.kind === "unknown") assert.ok(cmd.hint.length < 200, cmd.hint);
  }
});

Deno.test("parseCommand() takes the words of ROOM_SUBCOMMANDS after !room as subcommands", () => {
  assert.deepEqual([...ROOM_SUBCOMMANDS], ["create", "add", "remove", "leave"]);
  for (const word of ROOM_SUBCOMMANDS) {
    assert.equal(parseCommand(`!room ${word}`).kind, "unknown", word);
    assert.deepEqual(parseCommand(`!room #${word}`), {
      kind: "room-target",
      room: word,
    });
  }
});

Deno.test("parseCommand() of an unknown command names the room commands, shortly", () => {
  const cmd = parseCommand("!roo");
  assert.equal(cmd.kind, "unknown");
  if (cmd.kind !== "unknown") return;
  assert.match(cmd.hint, /!room \.\.\., !rooms/);
  const long = parseCommand("!" + "z".repeat(5000));
  if (long.kind === "unknown") assert.ok(long.hint.length < 300);
});

Deno.test("COMMANDS offers !room and !rooms to Tab", () => {
  assert.ok(COMMANDS.includes("!room "));
  assert.ok(COMMANDS.includes("!rooms"));
});

Deno.test("HELP_TEXT lists every room command and how to reach a room named like a subcommand", () => {
  for (
    const s of [
      "#<room> <text>",
      "!room <room>",
      "!room alone",
      "!room create <room> [user ...]",
      "!room add <room> <user>",
      "!room remove <room> <user>",
      "!room leave <room>",
      "!rooms",
      "!room #create",
      "beginning with @ or #",
    ]
  ) {
    assert.ok(HELP_TEXT.includes(s), s);
  }
});
