/**
 * Layer 4, keystore: the key directory on disk (layout, provisioning, loading,
 * watching for enrollments). May import: util, crypto, proto.
 * @module
 */

export * from "./keystore.ts";
