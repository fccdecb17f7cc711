//! Parsers for the units people type on command lines: durations (`10s`, `500ms`, `1.5`), counts
//! (`100k`, `1M`), byte sizes (`64k`, `10M`) and shards (`K/N`). Each error repeats the input and shows
//! the expected form, because the user has to fix exactly that argument.

use std::time::Duration;

use crate::net::direct::PoolSize;

/// `1.5` (seconds), `500ms`, `10s`, `2m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| {
        format!("'{text}' is not a duration; expected e.g. 30, 1.5, 500ms, 10s, 2m")
    })?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "'{text}' is not a duration; it must be a positive number"
        ));
    }
    match Duration::try_from_secs_f64(value * scale) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        _ => Err(format!(
            "'{text}' is too long a duration; at most 365 days (e.g. 30d is written 720h)"
        )),
    }
}

/// The longest duration any flag takes: longer than any run or timeout, and far from the point where
/// adding it to the current time overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A count with an optional decimal suffix: `1000`, `10k`, `1M`, `2G`.
pub fn count(text: &str) -> Result<u64, String> {
    scaled(text, 1000, "a count; expected e.g. 1000, 10k, 1M")
}

/// A byte size with an optional binary suffix: `1024`, `64k` (65536), `10M`, `1G`.
pub fn bytes(text: &str) -> Result<u64, String> {
    scaled(text, 1024, "a size in bytes; expected e.g. 1024, 64k, 10M")
}

fn scaled(text: &str, base: u64, expected: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, multiplier) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], base),
        Some((i, 'm' | 'M')) => (&t[..i], base * base),
        Some((i, 'g' | 'G')) => (&t[..i], base * base * base),
        Some((i, 'b' | 'B')) if base == 1024 => (&t[..i], 1),
        _ => (t, 1),
    };
    let value: u64 = number
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("'{text}' is not {expected}"))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// `K/N` with 0 <= K < N.
pub fn shard(text: &str) -> Result<(u64, u64), String> {
    if text.trim() == "auto" {
        return shard_from_env(
            std::env::var("JOB_COMPLETION_INDEX").ok(),
            std::env::var("RINGFETCH_SHARDS").ok(),
        );
    }
    let bad =
        || format!("'{text}' is not a shard; expected K/N with 0 <= K < N, e.g. 0/4, or auto");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || k >= n {
        return Err(bad());
    }
    Ok((k, n))
}

/// `--shard auto` in a Kubernetes Indexed Job: K is the pod's JOB_COMPLETION_INDEX (set by
/// Kubernetes), N the Job's completions, which Kubernetes does not expose, so the manifest passes it
/// as RINGFETCH_SHARDS (docs/DISTRIBUTED.md).
fn shard_from_env(index: Option<String>, shards: Option<String>) -> Result<(u64, u64), String> {
    let (Some(k), Some(n)) = (index, shards) else {
        return Err(
            "--shard auto needs JOB_COMPLETION_INDEX (set by a Kubernetes Indexed Job) and RINGFETCH_SHARDS \
             (the Job's completions); see docs/DISTRIBUTED.md, or give --shard K/N"
                .into(),
        );
    };
    shard(&format!("{k}/{n}"))
        .map_err(|e| format!("--shard auto: JOB_COMPLETION_INDEX={k}, RINGFETCH_SHARDS={n}: {e}"))
}

/// A request rate: a positive number, fractions allowed, with an optional k/M suffix (`2000`, `1.5k`).
pub fn rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let (num, mult) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1e3),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v * mult >= 0.001 && v * mult <= 1e9 => Ok(v * mult),
        _ => Err(format!(
            "'{text}' is not a request rate; expected requests per second, e.g. 2000 or 1.5k"
        )),
    }
}

/// Percentiles as given (the JSON keys) with their quantiles; one type so clap takes the list as one
/// value.
#[derive(Clone, Debug, PartialEq)]
pub struct Percentiles(pub Vec<(String, f64)>);

/// HTTP status codes, `429,503`; one type so clap takes the list as one value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statuses(pub Vec<u16>);

/// A list of status codes (100 to 599), `429,503`.
pub fn statuses(text: &str) -> Result<Statuses, String> {
    text.split(',')
        .map(|c| match c.trim().parse::<u16>() {
            Ok(code) if (100..=599).contains(&code) => Ok(code),
            _ => Err(format!(
                "'{}' is not an HTTP status code; expected a list such as 429,503",
                c.trim()
            )),
        })
        .collect::<Result<Vec<u16>, String>>()
        .map(Statuses)
}

/// A list of percentiles, `50,99,99.99`: each kept with its text (the JSON key) and as a quantile.
pub fn percentiles(text: &str) -> Result<Percentiles, String> {
    text.split(',')
        .map(|p| {
            let p = p.trim();
            match p.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 100.0 => Ok((p.to_string(), v / 100.0)),
                _ => Err(format!(
                    "'{p}' is not a percentile; expected numbers above 0 and up to 100, e.g. 50,99,99.9"
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Percentiles)
}

/// `--source-addrs`: `A-B` (inclusive), `A/N` (every address of the block) or one address, at most
/// 65536 addresses, all of one family.
pub fn address_range(text: &str) -> Result<AddressRange, String> {
    use std::net::IpAddr;
    const MAX: u128 = 65536;
    let parse = |t: &str| {
        t.trim().parse::<IpAddr>().map_err(|_| {
            format!("'{t}' is not an IP address (e.g. 127.0.0.2-127.0.0.33 or 127.0.0.0/27)")
        })
    };
    let num = |ip: IpAddr| match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let back = |like: IpAddr, n: u128| match like {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(n)),
    };
    let (first, last) = if let Some((a, b)) = text.split_once('-') {
        let (a, b) = (parse(a)?, parse(b)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("'{text}' mixes IPv4 and IPv6"));
        }
        if num(b) < num(a) {
            return Err(format!("'{text}' ends before it starts"));
        }
        (a, num(b))
    } else if let Some((a, bits)) = text.split_once('/') {
        let a = parse(a)?;
        let width = if a.is_ipv4() { 32 } else { 128 };
        let bits: u32 = bits
            .parse()
            .ok()
            .filter(|b| *b <= width)
            .ok_or_else(|| format!("'{text}': the prefix length must be 0 to {width}"))?;
        let host_bits = width - bits;
        if host_bits >= 17 {
            return Err(format!("'{text}' has more than {MAX} addresses"));
        }
        let mask = (1u128 << host_bits) - 1;
        let base = num(a) & !mask;
        (back(a, base), base | mask)
    } else {
        let a = parse(text)?;
        (a, num(a))
    };
    let count = last - num(first) + 1;
    if count > MAX {
        return Err(format!("'{text}' has more than {MAX} addresses"));
    }
    Ok(AddressRange(
        (0..count).map(|i| back(first, num(first) + i)).collect(),
    ))
}

/// `--ring-buffers COUNTxSIZE[,incremental]`: the direct transport's receive pool, COUNT a power of
/// two from 1 to 32768, SIZE from 64 bytes to 1 MiB.
pub fn ring_buffers(text: &str) -> Result<PoolSize, String> {
    let (pool, incremental) = match text.split_once(',') {
        None => (text, false),
        Some((pool, "incremental")) => (pool, true),
        Some((_, other)) => {
            return Err(format!(
                "'{text}': unknown '{other}' after the pool; expected COUNTxSIZE or COUNTxSIZE,incremental"
            ))
        }
    };
    let (count, size) = pool
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("'{text}': expected COUNTxSIZE, e.g. 1024x16k"))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|c: &u32| c.is_power_of_two() && *c <= 32768)
        .ok_or_else(|| format!("'{text}': COUNT must be a power of two from 1 to 32768"))?;
    let size = bytes(size.trim())?;
    if !(64..=1 << 20).contains(&size) {
        return Err(format!("'{text}': SIZE must be from 64 bytes to 1 MiB"));
    }
    Ok(PoolSize {
        count: count as u16,
        size: size as u32,
        incremental,
    })
}

/// The addresses of `--source-addrs`, in order (a newtype, so clap takes the list as one value).
#[derive(Clone, Debug)]
pub struct AddressRange(pub Vec<std::net::IpAddr>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_from_the_indexed_job_environment() {
        assert_eq!(
            shard_from_env(Some("2".into()), Some("5".into())),
            Ok((2, 5))
        );
        assert!(shard_from_env(Some("5".into()), Some("5".into())).is_err());
        let missing = shard_from_env(None, Some("5".into())).unwrap_err();
        assert!(missing.contains("JOB_COMPLETION_INDEX"), "{missing}");
    }

    #[test]
    fn percentile_lists() {
        let p = percentiles("50, 99.99,100").unwrap().0;
        assert_eq!(p[0], ("50".to_string(), 0.5));
        assert_eq!(p[1].0, "99.99");
        assert!((p[1].1 - 0.9999).abs() < 1e-12);
        for bad in ["", "0", "101", "50,x"] {
            assert!(percentiles(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rates() {
        assert_eq!(rate("2000"), Ok(2000.0));
        assert_eq!(rate("1.5k"), Ok(1500.0));
        assert_eq!(rate("0.5"), Ok(0.5));
        for bad in ["", "0", "-5", "fast", "inf", "1e12"] {
            assert!(rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        let err = duration("soon").unwrap_err();
        assert!(err.contains("'soon'") && err.contains("500ms"), "{err}");
        assert!(duration("-1").is_err());
        // Past a year it is refused, not left to overflow `Instant + Duration` later.
        assert_eq!(duration("8760h").unwrap(), MAX_DURATION);
        for long in ["1e19", "1e10", "8761h"] {
            assert!(
                duration(long).unwrap_err().contains("at most 365 days"),
                "{long}"
            );
        }
    }

    #[test]
    fn counts_and_sizes() {
        assert_eq!(count("1000").unwrap(), 1000);
        assert_eq!(count("10k").unwrap(), 10_000);
        assert_eq!(count("1M").unwrap(), 1_000_000);
        assert_eq!(bytes("64k").unwrap(), 65_536);
        assert_eq!(bytes("10M").unwrap(), 10 * 1024 * 1024);
        assert_eq!(bytes("512b").unwrap(), 512);
        assert!(count("ten").unwrap_err().contains("'ten'"));
        assert!(count("99999999999999999999G").is_err());
    }

    #[test]
    fn shards() {
        assert_eq!(shard("0/4").unwrap(), (0, 4));
        assert_eq!(shard("3/4").unwrap(), (3, 4));
        assert!(shard("4/4").is_err());
        assert!(shard("5/2").is_err());
        assert!(shard("1/0").is_err());
        assert!(shard("1").unwrap_err().contains("K/N"));
    }

    #[test]
    fn ring_buffer_sizes() {
        let pool = |count, size, incremental| PoolSize {
            count,
            size,
            incremental,
        };
        assert_eq!(
            ring_buffers("1024x16k").unwrap(),
            pool(1024, 16 * 1024, false)
        );
        assert_eq!(ring_buffers("4x512").unwrap(), pool(4, 512, false));
        assert_eq!(
            ring_buffers("4x512,incremental").unwrap(),
            pool(4, 512, true)
        );
        assert!(ring_buffers("4x512,inc")
            .unwrap_err()
            .contains("COUNTxSIZE,incremental"));
        assert!(ring_buffers("3x512,incremental").is_err());
        assert!(ring_buffers("3x512").is_err());
        assert!(ring_buffers("65536x1k").is_err());
        assert!(ring_buffers("4x8").is_err());
        assert!(ring_buffers("1024").is_err());
    }

    #[test]
    fn address_ranges() {
        let r = address_range("127.0.0.2-127.0.0.33").unwrap().0;
        assert_eq!(r.len(), 32);
        assert_eq!(r[31].to_string(), "127.0.0.33");
        let c = address_range("127.0.0.0/30").unwrap().0;
        assert_eq!(
            c.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            ["127.0.0.0", "127.0.0.1", "127.0.0.2", "127.0.0.3"]
        );
        assert_eq!(address_range("::1").unwrap().0.len(), 1);
        assert!(address_range("127.0.0.9-127.0.0.2").is_err());
        assert!(address_range("10.0.0.0/8").is_err());
        assert!(address_range("127.0.0.1-::1").is_err());
        assert!(address_range("nope").is_err());
    }
}
