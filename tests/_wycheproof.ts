/**
 * Where the Wycheproof vectors are and how to read one file. They are
 * Apache-2.0 data read from `../shared/vectors/wycheproof` (or
 * `$IM_WYCHEPROOF_DIR`) and never copied into the repository; a test whose
 * file is absent is registered as ignored, never as passed.
 * @module
 */

/** One Wycheproof file: its groups, each with its own fields and cases. */
export interface VectorFile<G> {
  algorithm: string;
  numberOfTests: number;
  testGroups: G[];
}

/** @returns the directory of the vectors */
export function vectorDir(): string {
  let env: string | undefined;
  try {
    env = Deno.env.get("IM_WYCHEPROOF_DIR");
  } catch {
    env = undefined; // no --allow-env: use the default
  }
  if (env !== undefined && env !== "") return env;
  return new URL("../../shared/vectors/wycheproof", import.meta.url).pathname;
}

/**
 * @param name file name, e.g. `hmac_sha256_test.json`
 * @returns the parsed file, or undefined when it is not there
 */
export function loadVectors<G>(name: string): VectorFile<G> | undefined {
  try {
    return JSON.parse(
      Deno.readTextFileSync(`${vectorDir()}/${name}`),
    ) as VectorFile<G>;
  } catch (e) {
    if (
      e instanceof Deno.errors.NotFound ||
      e instanceof Deno.errors.PermissionDenied
    ) return undefined;
    throw e;
  }
}
