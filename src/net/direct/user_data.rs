//! What a completion says about its operation: the `user_data` every SQE carries packs the operation's
//! kind, its slot and the slot's generation, so the driver dispatches a completion without a table of
//! operations in flight, and a late completion is never credited to the next connection on its slot.
//!
//! Layout (64 bits): kind in the top byte, the generation's low 24 bits below it, the slot in the low
//! 32 bits. 24 bits of generation tell a late completion apart unless its slot was reused 2^24 times
//! while it was in flight.

/// Operation kinds.
pub(super) const CONNECT: u64 = 1;
pub(super) const CHAIN: u64 = 2;
pub(super) const RECV: u64 = 3;
pub(super) const SEND: u64 = 4;
pub(super) const CLOSE: u64 = 5;
pub(super) const CANCEL: u64 = 6;
pub(super) const SHUTDOWN: u64 = 7;
pub(super) const ACCEPT: u64 = 8;
pub(super) const SOCKOPT: u64 = 9;

/// The generation bits a `user_data` keeps.
pub(super) const GEN_MASK: u32 = 0xFF_FFFF;

#[inline]
pub(super) fn user_data(kind: u64, slot: u32, gen: u32) -> u64 {
    kind << 56 | u64::from(gen & GEN_MASK) << 32 | u64::from(slot)
}

/// Whether a completion tagged `tagged` (from `split`) belongs to the connection now on a slot whose
/// generation is `slot_gen`.
#[inline]
pub(super) fn current(slot_gen: u32, tagged: u32) -> bool {
    slot_gen & GEN_MASK == tagged
}

/// (kind, generation, slot).
#[inline]
pub(super) fn split(ud: u64) -> (u64, u32, u32) {
    (ud >> 56, (ud >> 32) as u32 & GEN_MASK, ud as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [u64; 9] = [
        CONNECT, CHAIN, RECV, SEND, CLOSE, CANCEL, SHUTDOWN, ACCEPT, SOCKOPT,
    ];

    #[test]
    fn every_kind_round_trips_at_the_edges() {
        for kind in KINDS {
            for slot in [0, 1, u32::MAX] {
                for gen in [0, 1, GEN_MASK - 1, GEN_MASK] {
                    assert_eq!(split(user_data(kind, slot, gen)), (kind, gen, slot));
                }
            }
        }
    }

    #[test]
    fn a_generation_past_the_mask_wraps() {
        // A slot's generation is a u32 that wraps; the user_data keeps its low 24 bits.
        assert_eq!(split(user_data(RECV, 7, GEN_MASK + 1)), (RECV, 0, 7));
        assert_eq!(split(user_data(RECV, 7, u32::MAX)), (RECV, GEN_MASK, 7));
    }

    #[test]
    fn distinct_kinds_never_collide() {
        let edges = [
            (0, 0),
            (0, GEN_MASK),
            (u32::MAX, 0),
            (u32::MAX, GEN_MASK),
            (3, 5),
        ];
        for a in KINDS {
            for b in KINDS.into_iter().filter(|&b| b != a) {
                for (slot_a, gen_a) in edges {
                    for (slot_b, gen_b) in edges {
                        assert_ne!(user_data(a, slot_a, gen_a), user_data(b, slot_b, gen_b));
                    }
                }
            }
        }
    }

    #[test]
    fn a_stale_generation_is_told_apart() {
        for gen in [0, 1, GEN_MASK - 1, GEN_MASK, u32::MAX - 1] {
            let (_, then, _) = split(user_data(RECV, 9, gen));
            assert!(current(gen, then));
            // The slot was freed (its generation bumped) before this completion came.
            assert!(!current(gen.wrapping_add(1), then));
        }
        // Across the wrap of the full counter too.
        let (_, then, _) = split(user_data(SEND, 9, u32::MAX));
        assert!(!current(0, then));
    }
}
