// Types of scripts/cpio.mjs (the newc writer the fetch-linux script builds the initramfs with).
export declare const S_IFDIR: number;
export declare const S_IFREG: number;
export declare const S_IFLNK: number;
export declare const S_IFCHR: number;
export declare const CPIO_NEWC_MAGIC: "070701";
export declare const CPIO_TRAILER: "TRAILER!!!";
export declare const CPIO_HEADER_SIZE: 110;

export type CpioEntry =
  | { readonly path: string; readonly type: "dir"; readonly mode?: number; readonly mtime?: number }
  | { readonly path: string; readonly type: "file"; readonly data: Uint8Array; readonly mode?: number; readonly mtime?: number }
  | { readonly path: string; readonly type: "symlink"; readonly target: string; readonly mtime?: number }
  | { readonly path: string; readonly type: "char"; readonly major: number; readonly minor: number; readonly mode?: number; readonly mtime?: number };

/** The newc archive of `entries`, in their order, ending with TRAILER!!!. Throws naming the bad entry. */
export declare function writeCpioNewc(entries: readonly CpioEntry[]): Uint8Array;
