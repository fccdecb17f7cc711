//! What a completion says about its operation: the `user_data` every SQE carries packs the operation's
//! kind, its slot and the slot's generation, so the driver dispatches a completion without a table of
//! operations in flight, and a late completion is never credited to the next connection on its slot.
//!
//! Layout (64 bits): kind in the top byte, the generation's low 24 bits below it, the slot in the low
//! 32 bits. 24 bits of generation tell a late completion apart unless its slot was reused 2^24 times
//! while it was in flight.

/// Operation kinds, in the top byte (0 is none of them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub(super) enum Op {
    /// The connect chain's Connect, its last link.
    Connect = 1,
    /// A link of the connect chain before Connect (posts only if it fails).
    Chain,
    Recv,
    Send,
    Close,
    Cancel,
    Shutdown,
    /// A listener's multishot accept: the "slot" is the listener's index.
    Accept,
    SockOpt,
    /// `bench --hold`'s look at a held connection at the end (`Ring::peek_held`).
    Peek,
}

impl Op {
    #[cfg(test)]
    const ALL: [Op; 10] = [
        Op::Connect,
        Op::Chain,
        Op::Recv,
        Op::Send,
        Op::Close,
        Op::Cancel,
        Op::Shutdown,
        Op::Accept,
        Op::SockOpt,
        Op::Peek,
    ];

    #[inline]
    fn from_tag(tag: u8) -> Option<Op> {
        Some(match tag {
            1 => Op::Connect,
            2 => Op::Chain,
            3 => Op::Recv,
            4 => Op::Send,
            5 => Op::Close,
            6 => Op::Cancel,
            7 => Op::Shutdown,
            8 => Op::Accept,
            9 => Op::SockOpt,
            10 => Op::Peek,
            _ => return None,
        })
    }
}

/// The generation bits a `user_data` keeps.
pub(super) const GEN_MASK: u32 = 0xFF_FFFF;

#[inline]
pub(super) fn user_data(op: Op, slot: u32, gen: u32) -> u64 {
    (op as u64) << 56 | u64::from(gen & GEN_MASK) << 32 | u64::from(slot)
}

/// Whether a completion tagged `tagged` (from `split`) belongs to the connection now on a slot whose
/// generation is `slot_gen`.
#[inline]
pub(super) fn current(slot_gen: u32, tagged: u32) -> bool {
    slot_gen & GEN_MASK == tagged
}

/// (kind, generation, slot); no kind if the top byte names none (no SQE of ours carries such a tag).
#[inline]
pub(super) fn split(ud: u64) -> (Option<Op>, u32, u32) {
    let op = Op::from_tag((ud >> 56) as u8);
    (op, (ud >> 32) as u32 & GEN_MASK, ud as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_at_the_edges() {
        for kind in Op::ALL {
            for slot in [0, 1, u32::MAX] {
                for gen in [0, 1, GEN_MASK - 1, GEN_MASK] {
                    assert_eq!(split(user_data(kind, slot, gen)), (Some(kind), gen, slot));
                }
            }
        }
    }

    #[test]
    fn a_generation_past_the_mask_wraps() {
        // A slot's generation is a u32 that wraps; the user_data keeps its low 24 bits.
        assert_eq!(
            split(user_data(Op::Recv, 7, GEN_MASK + 1)),
            (Some(Op::Recv), 0, 7)
        );
        assert_eq!(
            split(user_data(Op::Recv, 7, u32::MAX)),
            (Some(Op::Recv), GEN_MASK, 7)
        );
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
        for a in Op::ALL {
            for b in Op::ALL.into_iter().filter(|&b| b != a) {
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
            let (_, then, _) = split(user_data(Op::Recv, 9, gen));
            assert!(current(gen, then));
            // The slot was freed (its generation bumped) before this completion came.
            assert!(!current(gen.wrapping_add(1), then));
        }
        // Across the wrap of the full counter too.
        let (_, then, _) = split(user_data(Op::Send, 9, u32::MAX));
        assert!(!current(0, then));
    }

    #[test]
    fn a_tag_of_none_of_ours_is_no_kind() {
        assert_eq!(split(0), (None, 0, 0));
        assert_eq!(split(u64::MAX).0, None);
        assert_eq!(split(11 << 56).0, None);
    }
}
