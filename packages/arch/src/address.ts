/**
 * Address spaces as distinct types. At run time each is a plain JS number (48-bit virtual and up
 * to 52-bit physical addresses are exact in a double); the brand only stops the type checker
 * from mixing spaces, the way Xen separates `mfn_t`, `gfn_t` and `dfn_t`.
 */
declare const space: unique symbol;

/** Guest-virtual (linear) address. */
export type Gva = number & { readonly [space]: "gva" };
/** Guest-physical ("pseudo-physical") address. */
export type Gpa = number & { readonly [space]: "gpa" };
/** Host-physical (machine) address. */
export type Hpa = number & { readonly [space]: "hpa" };
/** I/O virtual address: what a device puts on the bus before the IOMMU translates it. */
export type Iova = number & { readonly [space]: "iova" };
/** Guest frame number (guest-physical address >> 12). */
export type Gfn = number & { readonly [space]: "gfn" };
/** Machine frame number (host-physical address >> 12). */
export type Mfn = number & { readonly [space]: "mfn" };

/** 4 KiB: the base page and frame size. */
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const PAGE_MASK = 0xfff;

/** Largest physical address width the architecture allows (SDM: MAXPHYADDR is at most 52). */
export const MAX_PHYS_ADDR_BITS = 52;

export const gva = (n: number): Gva => n as Gva;
export const gpa = (n: number): Gpa => n as Gpa;
export const hpa = (n: number): Hpa => n as Hpa;
export const iova = (n: number): Iova => n as Iova;
export const gfn = (n: number): Gfn => n as Gfn;
export const mfn = (n: number): Mfn => n as Mfn;

/** Frame number of an address (exact for any integer address below 2^53). */
export function frameOf(address: number): number {
  return (address - (address & PAGE_MASK)) / PAGE_SIZE;
}

export const mfnOf = (address: Hpa): Mfn => frameOf(address) as Mfn;
export const gfnOf = (address: Gpa): Gfn => frameOf(address) as Gfn;
export const hpaOf = (frame: Mfn, offset = 0): Hpa => (frame * PAGE_SIZE + offset) as Hpa;
export const gpaOf = (frame: Gfn, offset = 0): Gpa => (frame * PAGE_SIZE + offset) as Gpa;

/** A 64-bit value as two unsigned 32-bit halves (no BigInt on hot paths). */
export interface U64 {
  lo: number;
  hi: number;
}

export const u64 = (lo = 0, hi = 0): U64 => ({ lo: lo >>> 0, hi: hi >>> 0 });

/** Join two halves into a number; exact while the value is below 2^53 (hi < 2^21). */
export function joinU64(lo: number, hi: number): number {
  return (hi >>> 0) * 0x1_0000_0000 + (lo >>> 0);
}

/** Split a non-negative integer below 2^53 into its halves. */
export function splitU64(value: number, out: U64 = { lo: 0, hi: 0 }): U64 {
  out.lo = value >>> 0;
  out.hi = Math.floor(value / 0x1_0000_0000) >>> 0;
  return out;
}
