// deno-lint-ignore-file no-control-regex -- tests match escape sequences on purpose
/**
 * lib/ui/sanitize.ts: what text from the network (and a typed line) may
 * still hold after sanitising.
 * @module
 */
import assert from "node:assert/strict";
import { sanitizeInput, sanitizeText } from "../lib/ui/mod.ts";

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
  ["bidi override", "abc\u202etxt.exe", "abctxt.exe"],
  ["bidi isolate", "\u2066x\u2069", "x"],
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

Deno.test("sanitizeText() keeps printable Unicode unchanged", () => {
  for (
    const s of [
      "héllo wörld",
      "日本語のテキスト",
      "👋🏽 family: 👨‍👩‍👧",
      "Ελληνικά עברית العربية",
      "[brackets] ;semi ~tilde",
    ]
  ) {
    assert.equal(sanitizeText(s), s);
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
    const got = sanitizeText(s);
    assert.doesNotMatch(got, ANY_CONTROL, JSON.stringify(s));
    assert.ok(got.isWellFormed());
    assert.doesNotMatch(got, /[\u202a-\u202e\u2066-\u2069]/);
  }
});

// --- sanitizeInput --------------------------------------------------------

Deno.test("sanitizeInput() strips C0, DEL and C1 controls but keeps tab", () => {
  assert.equal(sanitizeInput("a\x00b\x1b[2Jc\td\x7f\x9be"), "ab[2Jc\tde");
});

Deno.test("sanitizeInput() replaces lone surrogates and keeps Unicode", () => {
  assert.equal(sanitizeInput("é\udc00👋"), "é\ufffd👋");
});
