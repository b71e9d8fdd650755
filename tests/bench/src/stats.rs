//! Medians, minima and maxima of repeated measurements.

/// Median with min and max of a set of measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    /// The summary of `values`, ignoring NaN; all zero when there are none.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// `median (min-max)` with `digits` decimals, or a dash for no data; the
    /// range is left out for a single value.
    pub fn show(&self, digits: usize) -> String {
        match self.n {
            0 => "-".into(),
            1 => format!("{:.*}", digits, self.median),
            _ => format!(
                "{:.*} ({:.*}-{:.*})",
                digits, self.median, digits, self.min, digits, self.max
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let s = Summary::of([5.0, 1.0, 3.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (3.0, 1.0, 5.0, 3));
        let s = Summary::of([4.0, 1.0, 3.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
    }

    #[test]
    fn nan_is_ignored_and_empty_is_zero() {
        let s = Summary::of([f64::NAN, 2.0]);
        assert_eq!((s.median, s.n), (2.0, 1));
        assert!(Summary::of([]).is_empty());
        assert_eq!(Summary::of([]).show(1), "-");
    }

    #[test]
    fn shown_with_range() {
        assert_eq!(Summary::of([1.0, 2.0, 4.0]).show(1), "2.0 (1.0-4.0)");
        assert_eq!(Summary::of([1.234]).show(2), "1.23");
    }
}
