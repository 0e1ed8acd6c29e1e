// deno-lint-ignore-file no-control-regex -- tests match escape sequences on purpose
/**
 * lib/ui/sanitize.ts: what text from the network (and a typed line) may
 * still hold after sanitising.
 * @module
 */
import assert from "node:assert/strict";
import { sanitizeInput, sanitizeMessage, sanitizeText } from "../lib/ui/mod.ts";

const ANY_CONTROL = /[\x00-\x1f\x7f-\x9f]/;

// --- sanitizeText ---------------------------------------------------------

const HOSTILE: Array<[string, string, string]> = [
  ["clear screen CSI", "a\x1b[2Jb", "ab"],
  ["cursor move CSI with params", "x\x1b[10;20Hy", "xy"],
  ["colour SGR", "\x1b[1;31mred\x1b[0m", "red"],
  ["private-mode CSI", "\x1b[?1049hz", "z"],
  ["OSC title ended by BEL", "\x1b]0;title\x07ok", "ok"],
  ["OSC title ended by ST", "\x1b]2;title\x1b\\ok", "ok"],
  ["OSC 8 hyperlink", "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", "click"],
  ["OSC 52 clipboard write", "\x1b]52;c;cm0gLXJmIC8=\x07", ""],
  ["unterminated OSC swallows the rest", "hi\x1b]0;title", "hi"],
  ["DCS string", "\x1bPq#0;2;0;0;0\x1b\\done", "done"],
  ["APC string", "\x1b_secret\x1b\\x", "x"],
  ["8-bit CSI", "\x9b2Jz", "z"],
  ["8-bit OSC ended by 8-bit ST", "\x9d0;t\x9cz", "z"],
  ["ESC c full reset", "\x1bcreset", "reset"],
  ["ESC 7 save cursor", "\x1b7a\x1b8", "a"],
  ["charset designation", "\x1b(0q\x1b(B", "q"],
  ["lone ESC at end", "end\x1b", "end"],
  ["CR overwriting the line", "harmless\rEVIL", "harmless EVIL"],
  ["LF starting a fake line", "hi\n09:05 server: x", "hi 09:05 server: x"],
  ["CRLF", "a\r\nb", "a b"],
  ["NUL", "a\x00b", "ab"],
  ["BEL", "ding\x07", "ding"],
  ["backspace", "abc\x08\x08X", "abcX"],
  ["DEL", "a\x7fb", "ab"],
  ["NEL (C1 line break)", "a\x85b", "a b"],
  ["other C1 controls", "a\x80\x8d\x9ab", "ab"],
  ["8-bit APC swallows the rest", "a\x9fb", "a"],
  ["U+2028 line separator", "a\u2028b", "a b"],
  ["lone surrogate", "a\ud800b", "a\ufffdb"],
  ["tab", "a\tb", "a b"],
];

for (const [what, input, want] of HOSTILE) {
  Deno.test(`sanitizeText() removes ${what}`, () => {
    const got = sanitizeText(input);
    assert.equal(got, want);
    assert.doesNotMatch(got, ANY_CONTROL);
  });
}

Deno.test("sanitizeText() and sanitizeMessage() keep printable Unicode unchanged", () => {
  for (
    const s of [
      "héllo wörld",
      "日本語のテキスト",
      "👋🏽 thumbs 👍🏿",
      "Ελληνικά עברית العربية",
      "[brackets] ;semi ~tilde",
      "no\u00a0break, ideographic\u3000space",
      "e\u0301 combining",
    ]
  ) {
    assert.equal(sanitizeText(s), s);
    assert.equal(sanitizeMessage(s), s);
  }
});

// --- invisible characters, one by one (issue 10, "Also") -------------------

/** [what, input, sanitizeText, sanitizeMessage] */
const INVISIBLE: Array<[string, string, string, string]> = [
  [
    "U+200B zero width space",
    "ad\u200bmin",
    "ad\\u{200B}min",
    "ad\\u{200B}min",
  ],
  ["U+200F right-to-left mark", "a\u200fb", "a\\u{200F}b", "a\\u{200F}b"],
  ["U+200E left-to-right mark", "a\u200eb", "a\\u{200E}b", "a\\u{200E}b"],
  ["U+061C Arabic letter mark", "a\u061cb", "a\\u{061C}b", "a\\u{061C}b"],
  ["U+FEFF byte order mark", "\ufeffhi", "\\u{FEFF}hi", "\\u{FEFF}hi"],
  ["U+00AD soft hyphen", "pay\u00adpal", "pay\\u{00AD}pal", "pay\\u{00AD}pal"],
  [
    "U+202E right-to-left override",
    "abc\u202etxt.exe",
    "abc\\u{202E}txt.exe",
    "abc\\u{202E}txt.exe",
  ],
  [
    "U+202A-202D embeddings and overrides",
    "\u202a\u202b\u202c\u202d",
    "\\u{202A}\\u{202B}\\u{202C}\\u{202D}",
    "\\u{202A}\\u{202B}\\u{202C}\\u{202D}",
  ],
  [
    "U+2066-2069 bidi isolates",
    "\u2066x\u2069\u2067\u2068",
    "\\u{2066}x\\u{2069}\\u{2067}\\u{2068}",
    "\\u{2066}x\\u{2069}\\u{2067}\\u{2068}",
  ],
  ["U+2060 word joiner", "a\u2060b", "a\\u{2060}b", "a\\u{2060}b"],
  ["U+2062 invisible times", "a\u2062b", "a\\u{2062}b", "a\\u{2062}b"],
  [
    "U+034F combining grapheme joiner",
    "a\u034fb",
    "a\\u{034F}b",
    "a\\u{034F}b",
  ],
  ["U+3164 Hangul filler (a blank name)", "\u3164", "\\u{3164}", "\\u{3164}"],
  ["U+115F Hangul choseong filler", "a\u115f", "a\\u{115F}", "a\\u{115F}"],
  [
    "U+180E Mongolian vowel separator",
    "a\u180eb",
    "a\\u{180E}b",
    "a\\u{180E}b",
  ],
  [
    "U+E0041 tag letter (hidden ASCII)",
    "hi\u{e0041}\u{e0042}",
    "hi\\u{E0041}\\u{E0042}",
    "hi\\u{E0041}\\u{E0042}",
  ],
  ["U+E0100 variation selector 17", "a\u{e0100}", "a\\u{E0100}", "a\\u{E0100}"],
  ["U+0600 Arabic number sign", "\u06001", "\\u{0600}1", "\\u{0600}1"],
  // Kept in a message where emoji and scripts put them, escaped elsewhere.
  [
    "U+200D ZWJ in an emoji sequence",
    "👨\u200d👩\u200d👧",
    "👨\\u{200D}👩\\u{200D}👧",
    "👨\u200d👩\u200d👧",
  ],
  [
    "U+FE0F then U+200D in a flag",
    "🏳\ufe0f\u200d🌈",
    "🏳\\u{FE0F}\\u{200D}🌈",
    "🏳\ufe0f\u200d🌈",
  ],
  [
    "U+FE0F emoji presentation",
    "\u2764\ufe0f",
    "\u2764\\u{FE0F}",
    "\u2764\ufe0f",
  ],
  [
    "U+200C ZWNJ in Persian",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",
    "\u0645\u06cc\\u{200C}\u062e\u0648\u0627\u0645",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0645",
  ],
  [
    "U+200D ZWJ in Devanagari",
    "\u0915\u094d\u200d\u0937",
    "\u0915\u094d\\u{200D}\u0937",
    "\u0915\u094d\u200d\u0937",
  ],
  [
    "a subdivision flag's tags",
    "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
    "\u{1f3f4}\\u{E0067}\\u{E0062}\\u{E0065}\\u{E006E}\\u{E0067}\\u{E007F}",
    "\u{1f3f4}\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
  ],
  [
    "U+200D ZWJ between two letters (one per gap is kept)",
    "a\u200db",
    "a\\u{200D}b",
    "a\u200db",
  ],
  // Out of place: escaped in a message too.
  ["U+200D ZWJ at the start", "\u200dhi", "\\u{200D}hi", "\\u{200D}hi"],
  ["U+200D ZWJ at the end", "hi\u200d", "hi\\u{200D}", "hi\\u{200D}"],
  ["U+200D ZWJ after a space", "a \u200db", "a \\u{200D}b", "a \\u{200D}b"],
  [
    "a run of joiners (hidden bits)",
    "a\u200d\u200c\u200db",
    "a\\u{200D}\\u{200C}\\u{200D}b",
    "a\\u{200D}\\u{200C}\\u{200D}b",
  ],
  [
    "a run of variation selectors (hidden bytes)",
    "😀\ufe01\ufe02\ufe03",
    "😀\\u{FE01}\\u{FE02}\\u{FE03}",
    "😀\\u{FE01}\\u{FE02}\\u{FE03}",
  ],
  [
    "tags after something else than the black flag",
    "x\u{e0067}\u{e0062}\u{e007f}",
    "x\\u{E0067}\\u{E0062}\\u{E007F}",
    "x\\u{E0067}\\u{E0062}\\u{E007F}",
  ],
  [
    "too many tags after the black flag",
    "\u{1f3f4}" + "\u{e0061}".repeat(8) + "\u{e007f}",
    "\u{1f3f4}" + "\\u{E0061}".repeat(8) + "\\u{E007F}",
    "\u{1f3f4}" + "\\u{E0061}".repeat(8) + "\\u{E007F}",
  ],
  [
    "a bidi mark between joinable characters",
    "👨\u200f\u200d👩",
    "👨\\u{200F}\\u{200D}👩",
    "👨\\u{200F}\\u{200D}👩",
  ],
];

for (const [what, input, text, message] of INVISIBLE) {
  Deno.test(`sanitizeText() escapes ${what}`, () => {
    assert.equal(sanitizeText(input), text);
  });
  Deno.test(`sanitizeMessage() ${text === message ? "escapes" : "keeps"} ${what}`, () => {
    assert.equal(sanitizeMessage(input), message);
  });
}

Deno.test("sanitizeText() leaves no default-ignorable or format character, whichever code point it is", () => {
  const invisible = /[\p{Default_Ignorable_Code_Point}\p{Cf}]/u;
  for (let cp = 0; cp < 0x110000; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const c = String.fromCodePoint(cp);
    if (!invisible.test(c)) continue;
    const got = sanitizeText(`a${c}b`);
    assert.doesNotMatch(got, invisible, cp.toString(16));
    assert.doesNotMatch(sanitizeMessage(`${c}`), invisible, cp.toString(16));
  }
});

Deno.test("sanitizeMessage() applies the same control and escape rules as sanitizeText()", () => {
  for (const [, input, want] of HOSTILE) {
    assert.equal(sanitizeMessage(input), want);
  }
});

Deno.test("sanitizeText() output never contains a control character for random input", () => {
  let seed = 12345;
  const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  for (let n = 0; n < 2000; n++) {
    const len = rnd() % 40;
    let s = "";
    for (let i = 0; i < len; i++) {
      const r = rnd() % 4;
      s += r === 0
        ? "\x1b"
        : String.fromCharCode(r === 1 ? rnd() % 0xa0 : rnd() % 0x10000);
    }
    for (const got of [sanitizeText(s), sanitizeMessage(s)]) {
      assert.doesNotMatch(got, ANY_CONTROL, JSON.stringify(s));
      assert.ok(got.isWellFormed());
      assert.doesNotMatch(
        got,
        /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/,
      );
    }
  }
});

// --- sanitizeInput --------------------------------------------------------

Deno.test("sanitizeInput() strips C0, DEL and C1 controls but keeps tab", () => {
  assert.equal(sanitizeInput("a\x00b\x1b[2Jc\td\x7f\x9be"), "ab[2Jc\tde");
});

Deno.test("sanitizeInput() replaces lone surrogates and keeps Unicode", () => {
  assert.equal(sanitizeInput("é\udc00👋"), "é\ufffd👋");
});

Deno.test("printable ASCII is kept as it is by every sanitizer (their fast path), and one control beside it still goes", () => {
  let ascii = "";
  for (let c = 0x20; c <= 0x7e; c++) ascii += String.fromCharCode(c);
  for (const f of [sanitizeText, sanitizeMessage, sanitizeInput]) {
    assert.equal(f(ascii), ascii);
    assert.equal(f(""), "");
  }
  // The same text with one byte outside the fast path takes the full one.
  assert.equal(sanitizeText(`${ascii}\x1b[2J`), ascii);
  assert.equal(sanitizeMessage(`a\x7fb\x1b]0;t\x07c`), "abc");
  assert.equal(sanitizeInput("a\x00b\x9bc"), "abc");
  assert.equal(sanitizeText("a\tb\nc"), "a b c");
  assert.equal(sanitizeText("a\u200bb"), "a\\u{200B}b");
});
