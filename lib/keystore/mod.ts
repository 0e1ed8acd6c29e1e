/**
 * Layer 4, keystore: the key directory on disk (layout, provisioning, loading,
 * watching for enrollments, partners' keys pinned on first use, the
 * client's mailbox keys and state). May import:
 * util, crypto, proto.
 * @module
 */

export * from "./cluster_key.ts";
export * from "./keystore_error.ts";
export * from "./layout.ts";
export * from "./load.ts";
export * from "./mail_vault.ts";
export * from "./nkey_seed.ts";
export * from "./room_vault.ts";
export * from "./pins.ts";
export * from "./provision.ts";
export * from "./watch.ts";
