//! What a run tells its user: `jsonl` writes one line per URL, `histogram` holds latencies, `summary`
//! merges the workers' counters and prints text or JSON, `html` draws `bench --report`, `merge` combines runs.

pub mod fail_if;
pub mod histogram;
pub mod html;
pub mod jsonl;
pub mod merge;
pub mod resume;
pub mod summary;
