// A streaming scan of a JSON text that fails as soon as the text nests deeper
// than a bound, before JSON.parse and before the rest of the body is read.
// JSON.parse itself copes with deep nesting, but every recursive walk after it
// (structuredClone, fast-json-patch's diff, the injector) does not: a
// 100,000-deep field overflowed the stack and cost ~0.5 s of CPU per body. The
// scan is one pass over the bytes as they arrive, skipping strings (with their
// escapes, which may straddle chunks).

/**
 * The deepest an AdmissionReview of a pod can legitimately be is well under 30
 * (review → request → object → spec → affinity → … → values, or managedFields'
 * fieldsV1, which mirrors the same paths); 100 leaves room and stops abuse.
 */
export const MAX_JSON_DEPTH = 100;

const OPEN_OBJECT = 0x7b; // {
const OPEN_ARRAY = 0x5b; // [
const CLOSE_OBJECT = 0x7d; // }
const CLOSE_ARRAY = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

export class JsonDepthScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly max = MAX_JSON_DEPTH) {}

  /** Feeds the next bytes; true once the text has nested deeper than the bound (malformed JSON is the parser's). */
  feed(bytes: Uint8Array): boolean {
    for (let i = 0; i < bytes.length; i++) {
      const c = bytes[i];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) this.inString = false;
      } else if (c === QUOTE) {
        this.inString = true;
      } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        if (++this.depth > this.max) return true;
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        this.depth--;
      }
    }
    return false;
  }
}

/** Whether `text` nests deeper than `max` anywhere. */
export function jsonDepthExceeds(text: Uint8Array | string, max = MAX_JSON_DEPTH): boolean {
  return new JsonDepthScanner(max).feed(typeof text === 'string' ? Buffer.from(text) : text);
}
