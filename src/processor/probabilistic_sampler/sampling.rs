//! Consistent probability sampling values (OpenTelemetry's OTEP 235), with the exact arithmetic
//! of the Collector's `pkg/sampling` so a decision made here equals the Collector's for the
//! same item (docs/contracts.md, "Processors").
//!
//! Randomness is a 56-bit value; a threshold is a 56-bit rejection bound; an item is kept when
//! `threshold <= randomness`. Both travel as hex: the `rv` (14 digits) and `th` (1–14 digits,
//! trailing zeros dropped) fields of the `ot` tracestate entry, or the `sampling.randomness` and
//! `sampling.threshold` log record attributes.

/// 2^56: one more than the largest randomness value.
const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
/// Hex digits of a full-precision threshold or randomness value.
pub const NUM_HEX_DIGITS: usize = 14;
/// The smallest sampling probability that a threshold can express.
pub const MIN_SAMPLING_PROBABILITY: f64 = 1.0 / MAX_ADJUSTED_COUNT as f64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("t-value is empty or longer than 14 hex digits")]
    ThresholdSize,
    #[error("r-value must have 14 hex digits")]
    RandomnessSize,
    #[error("not a hex number")]
    Syntax,
    #[error("sampling probability out of the range [2^-56, 1]")]
    ProbabilityRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Randomness(u64);

fn parse_hex(s: &str) -> Result<u64, ValueError> {
    // from_str_radix would take a leading '+'; the Collector's parser does not.
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ValueError::Syntax);
    }
    u64::from_str_radix(s, 16).map_err(|_| ValueError::Syntax)
}

impl Threshold {
    pub const ALWAYS: Threshold = Threshold(0);
    pub const NEVER: Threshold = Threshold(MAX_ADJUSTED_COUNT);

    /// Parses a `th` value: 1–14 hex digits, the missing low digits being zeros.
    pub fn from_tvalue(s: &str) -> Result<Self, ValueError> {
        if s.is_empty() || s.len() > NUM_HEX_DIGITS {
            return Err(ValueError::ThresholdSize);
        }
        let unsigned = parse_hex(s)?;
        Ok(Threshold(unsigned << (4 * (NUM_HEX_DIGITS - s.len()))))
    }

    pub fn from_unsigned(unsigned: u64) -> Option<Self> {
        (unsigned < MAX_ADJUSTED_COUNT).then_some(Threshold(unsigned))
    }

    /// The `th` encoding: "0" for always, "" for never, else the digits without trailing zeros.
    pub fn tvalue(self) -> String {
        match self {
            Threshold::ALWAYS => "0".to_owned(),
            Threshold::NEVER => String::new(),
            Threshold(unsigned) => Randomness(unsigned)
                .rvalue()
                .trim_end_matches('0')
                .to_owned(),
        }
    }

    pub fn should_sample(self, rnd: Randomness) -> bool {
        self.0 <= rnd.0
    }

    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// The threshold that keeps `fraction` of items, rounded to `precision` hex digits (0 means
    /// all 14); more digits are kept where the probability is close to 0 or 1, as the
    /// Collector does.
    pub fn from_probability(fraction: f64, precision: usize) -> Result<Self, ValueError> {
        let precision = if precision == 0 {
            NUM_HEX_DIGITS
        } else {
            precision
        } as i32;
        if !(MIN_SAMPLING_PROBABILITY..=1.0).contains(&fraction) {
            return Err(ValueError::ProbabilityRange);
        }
        if fraction == 1.0 {
            return Ok(Threshold::ALWAYS);
        }
        // Integer division truncating towards zero, as Go's.
        let precision = (precision + frexp_exponent(fraction) / -4)
            .max(precision + frexp_exponent(1.0 - fraction) / -4)
            .min(NUM_HEX_DIGITS as i32) as u32;
        let scaled = (fraction * MAX_ADJUSTED_COUNT as f64).round() as u64;
        let mut threshold = MAX_ADJUSTED_COUNT - scaled;
        let shift = 4 * (NUM_HEX_DIGITS as u32 - precision);
        if shift != 0 {
            threshold += 1u64 << (shift - 1);
            threshold >>= shift;
            threshold <<= shift;
        }
        Ok(Threshold(threshold))
    }
}

/// The exponent `e` of `x = m·2^e` with `m` in [0.5, 1), for positive finite `x` (C's frexp).
fn frexp_exponent(x: f64) -> i32 {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range first.
        return frexp_exponent(x * (1u64 << 54) as f64) - 54;
    }
    biased - 1022
}

impl Randomness {
    /// Randomness used when an item has none: every threshold but "never" keeps it.
    pub const ALL: Randomness = Randomness(MAX_ADJUSTED_COUNT - 1);

    /// The W3C trace context level 2 rule: the trace id's last 56 bits.
    pub fn from_trace_id(id: &[u8; 16]) -> Self {
        let mut low = [0u8; 8];
        low.copy_from_slice(&id[8..]);
        Randomness(u64::from_be_bytes(low) & (MAX_ADJUSTED_COUNT - 1))
    }

    /// Parses an `rv` value: exactly 14 hex digits.
    pub fn from_rvalue(s: &str) -> Result<Self, ValueError> {
        if s.len() != NUM_HEX_DIGITS {
            return Err(ValueError::RandomnessSize);
        }
        parse_hex(s).map(Randomness)
    }

    pub fn rvalue(self) -> String {
        format!("{:014x}", self.0)
    }

    /// The Collector's `hash_seed` mode: FNV-1a (32-bit) over the seed (little endian) and the
    /// bytes, of which 14 bits decide. They are laid out as a 56-bit randomness whose top 14
    /// bits give the same decision against [`hash_seed_threshold`] as the Collector's original
    /// `hash < percentage × 163.84` test.
    pub fn from_hashed_bytes(bytes: &[u8], seed: u32) -> Self {
        let hashed32 = fnv1a32(seed, bytes);
        let hashed = u64::from(hashed32 & BIT_MASK_HASH_BUCKETS);
        let rprime14 = NUM_HASH_BUCKETS - 1 - hashed;
        let unused = u64::from(hashed32 >> (32 - NUM_HASH_BUCKETS_LG2));
        let mixed28 = unused ^ (unused << 10);
        Randomness((rprime14 << 42) | (mixed28 << 14) | hashed)
    }
}

const NUM_HASH_BUCKETS_LG2: u32 = 14;
const NUM_HASH_BUCKETS: u64 = 1 << NUM_HASH_BUCKETS_LG2;
const BIT_MASK_HASH_BUCKETS: u32 = (1 << NUM_HASH_BUCKETS_LG2) - 1;

fn fnv1a32(seed: u32, bytes: &[u8]) -> u32 {
    const OFFSET: u32 = 2_166_136_261;
    const PRIME: u32 = 16_777_619;
    seed.to_le_bytes()
        .iter()
        .chain(bytes)
        .fold(OFFSET, |hash, &b| (hash ^ u32::from(b)).wrapping_mul(PRIME))
}

/// The rejection threshold of `hash_seed` mode for a percentage, or `None` when it samples
/// nothing. The Collector multiplies in 32-bit floating point and truncates; so does this.
pub fn hash_seed_threshold(percentage: f32) -> Option<Threshold> {
    let scaled = (percentage * (NUM_HASH_BUCKETS as f32 / 100.0)) as u64;
    if scaled == 0 {
        return None;
    }
    Threshold::from_unsigned((NUM_HASH_BUCKETS - scaled) << 42)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // FNV-1a 32 of "" is the offset basis; of "a" is 0xe40c292c. A zero seed adds four
        // zero bytes first, so check the plain function through a helper-free fold.
        let plain = |b: &[u8]| {
            b.iter().fold(2_166_136_261u32, |h, &x| {
                (h ^ u32::from(x)).wrapping_mul(16_777_619)
            })
        };
        assert_eq!(plain(b"a"), 0xe40c_292c);
        assert_eq!(plain(b"foobar"), 0xbf9c_f968);
        assert_eq!(fnv1a32(0, b"a"), plain(&[0, 0, 0, 0, b'a']));
    }

    #[test]
    fn thresholds_encode_as_the_collector_does() {
        assert_eq!(Threshold::ALWAYS.tvalue(), "0");
        assert_eq!(Threshold::NEVER.tvalue(), "");
        assert_eq!(Threshold::from_probability(0.5, 4).unwrap().tvalue(), "8");
        assert_eq!(Threshold::from_probability(0.25, 4).unwrap().tvalue(), "c");
        assert_eq!(
            Threshold::from_probability(0.1, 4).unwrap().tvalue(),
            "e666"
        );
        assert_eq!(
            Threshold::from_probability(1.0 / 3.0, 4).unwrap().tvalue(),
            "aaab"
        );
        assert_eq!(
            Threshold::from_probability(0.01, 4).unwrap().tvalue(),
            "fd70a"
        );
        assert_eq!(
            Threshold::from_probability(2.0, 4),
            Err(ValueError::ProbabilityRange)
        );
        assert_eq!(Threshold::from_tvalue("8").unwrap().tvalue(), "8");
        assert!(Threshold::from_tvalue("+8").is_err());
        assert!(Threshold::from_tvalue("123456789abcdef").is_err());
        assert_eq!(Randomness::from_rvalue("00000000000001"), Ok(Randomness(1)));
        assert!(Randomness::from_rvalue("0001").is_err());
    }

    #[test]
    fn trace_id_randomness_is_its_last_56_bits() {
        let id = [
            0xff, 0, 0, 0, 0, 0, 0, 0, 0xaa, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde,
        ];
        assert_eq!(Randomness::from_trace_id(&id).rvalue(), "123456789abcde");
    }

    #[test]
    fn hash_seed_threshold_truncates_in_single_precision() {
        // 33.3 × 163.84 = 5455.87 in f32: 5455 buckets kept.
        let th = hash_seed_threshold(33.3).expect("samples");
        assert_eq!(th, Threshold((16384 - 5455) << 42));
        assert_eq!(hash_seed_threshold(0.001), None);
    }
}
