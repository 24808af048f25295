//! A log-linear latency histogram in microseconds: exact below 128 µs, then 128 buckets per
//! power of two (under 0.8 % error), so percentiles cost no sorting and little memory.

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Up to 2^41 µs (25 days): far beyond any bench timeout.
const MAX_EXP: u32 = 41;
const BUCKETS: usize = (SUB as usize) * (MAX_EXP - SUB_BITS + 2) as usize;

#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }
}

impl Hist {
    /// Records `n` observations of `micros`.
    pub fn record_n(&mut self, micros: u64, n: u64) {
        let i = index(micros).min(BUCKETS - 1);
        self.counts[i] += n;
        self.total += n;
        self.max = self.max.max(micros);
    }

    /// The value at quantile `q` (0..=1), in µs; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return midpoint(i).min(self.max);
            }
        }
        self.max
    }

    /// `{"p50_us":…, "p90_us":…, "p99_us":…, "p999_us":…, "max_us":…, "count":…}`
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "count": self.total,
            "p50_us": self.quantile(0.50),
            "p90_us": self.quantile(0.90),
            "p99_us": self.quantile(0.99),
            "p999_us": self.quantile(0.999),
            "max_us": self.max,
        })
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let mantissa = (v >> (exp - SUB_BITS)) & (SUB - 1);
    (SUB * u64::from(exp - SUB_BITS + 1) + mantissa) as usize
}

fn midpoint(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let exp = (i / SUB - 1) as u32 + SUB_BITS;
    let mantissa = i % SUB;
    let width = 1u64 << (exp - SUB_BITS);
    let low = (1u64 << exp) + mantissa * width;
    low + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut h = Hist::default();
        for v in 1..=100_000u64 {
            h.record_n(v, 1);
        }
        for (q, want) in [(0.5, 50_000.0), (0.99, 99_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000);
    }
}
