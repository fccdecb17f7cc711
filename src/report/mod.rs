//! What a run tells its user: `jsonl` writes one line per URL, `histogram` holds latencies, `summary`
//! merges the workers' counters and prints text or JSON.

pub mod histogram;
pub mod jsonl;
pub mod summary;
