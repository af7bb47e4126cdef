//! How far a network's confidence can be trusted, and how closely a student follows its
//! teacher: the expected calibration error over equal-width confidence bins (Guo et al.
//! 2017), its reliability diagram's bins, top-1 agreement and the mean KL divergence.
//! All of it from logits read back to the host, in f64.

/// Confidence bins of the reports: 15, as Guo et al.
pub const BINS: usize = 15;

/// One confidence bin: the examples whose top probability falls in it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bin {
    /// Examples in the bin.
    pub count: usize,
    /// The sum of their top probabilities.
    pub confidence_sum: f64,
    /// How many of them the top class got right.
    pub correct: usize,
}

/// Equal-width bins over `(0, 1]`: bin `i` holds confidences in `(i / n, (i + 1) / n]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reliability {
    /// The bins, lowest confidence first.
    pub bins: Vec<Bin>,
}

impl Reliability {
    /// `bins` empty bins.
    pub fn new(bins: usize) -> Reliability {
        Reliability {
            bins: vec![Bin::default(); bins.max(1)],
        }
    }

    /// Bins the predictions of `logits` (`labels.len()` rows of `classes`) against
    /// `labels`.
    pub fn from_logits(logits: &[f32], classes: usize, labels: &[u8], bins: usize) -> Reliability {
        let mut r = Reliability::new(bins);
        for (row, &label) in logits.chunks_exact(classes).zip(labels) {
            let p = softmax(row);
            let (top, confidence) = argmax(&p);
            r.add(confidence, top == label as usize);
        }
        r
    }

    /// Adds one prediction of top probability `confidence` in `[0, 1]`.
    pub fn add(&mut self, confidence: f64, correct: bool) {
        let n = self.bins.len();
        let i = ((confidence * n as f64).ceil() as usize).clamp(1, n) - 1;
        let bin = &mut self.bins[i];
        bin.count += 1;
        bin.confidence_sum += confidence;
        bin.correct += usize::from(correct);
    }

    /// Adds the predictions of `other` (binned alike): pools seeds.
    pub fn merge(&mut self, other: &Reliability) {
        for (a, b) in self.bins.iter_mut().zip(&other.bins) {
            a.count += b.count;
            a.confidence_sum += b.confidence_sum;
            a.correct += b.correct;
        }
    }

    /// Predictions binned.
    pub fn total(&self) -> usize {
        self.bins.iter().map(|b| b.count).sum()
    }

    /// The expected calibration error: `Σ_b |B_b| / n · |accuracy(B_b) − confidence(B_b)|`.
    pub fn ece(&self) -> f64 {
        let n = self.total().max(1) as f64;
        self.bins
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| (b.correct as f64 - b.confidence_sum).abs() / n)
            .sum()
    }
}

/// How closely a student's predictions follow its teacher's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fidelity {
    /// The fraction of images on which their top classes agree, in `[0, 1]`.
    pub agreement: f64,
    /// The mean over images of `KL(softmax(teacher) ‖ softmax(student))` at T = 1, in nats.
    pub mean_kl: f64,
}

/// The fidelity of `student` to `teacher`: two sets of logits for the same images, rows
/// of `classes`.
pub fn fidelity(teacher: &[f32], student: &[f32], classes: usize) -> Fidelity {
    let (mut agree, mut kl, mut n) = (0usize, 0.0f64, 0usize);
    for (t, s) in teacher
        .chunks_exact(classes)
        .zip(student.chunks_exact(classes))
    {
        let (pt, ps) = (softmax(t), softmax(s));
        agree += usize::from(argmax(&pt).0 == argmax(&ps).0);
        let ls = log_softmax(s);
        let lt = log_softmax(t);
        kl += pt
            .iter()
            .zip(lt.iter().zip(&ls))
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, (lt, ls))| p * (lt - ls))
            .sum::<f64>();
        n += 1;
    }
    let n = n.max(1) as f64;
    Fidelity {
        agreement: agree as f64 / n,
        mean_kl: kl / n,
    }
}

/// `log softmax(row)` in f64.
pub(crate) fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let lse = max
        + row
            .iter()
            .map(|&x| (x as f64 - max).exp())
            .sum::<f64>()
            .ln();
    row.iter().map(|&x| x as f64 - lse).collect()
}

fn softmax(row: &[f32]) -> Vec<f64> {
    log_softmax(row).into_iter().map(f64::exp).collect()
}

/// The first index of the largest value, and that value.
fn argmax(p: &[f64]) -> (usize, f64) {
    p.iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_of_a_hand_computed_case() {
        // Four predictions in 10 bins: confidences 0.95 (right), 0.95 (wrong) in bin 9:
        // accuracy 0.5, confidence 0.95, gap 0.45, weight 2/4; 0.55 (right) in bin 5:
        // gap 0.45, weight 1/4; 0.35 (wrong) in bin 3: gap 0.35, weight 1/4.
        // ECE = 0.5·0.45 + 0.25·0.45 + 0.25·0.35 = 0.425.
        let mut r = Reliability::new(10);
        r.add(0.95, true);
        r.add(0.95, false);
        r.add(0.55, true);
        r.add(0.35, false);
        assert!((r.ece() - 0.425).abs() < 1e-12, "{}", r.ece());
        assert_eq!(
            [r.bins[9].count, r.bins[5].count, r.bins[3].count],
            [2, 1, 1]
        );
        // A bin's upper edge belongs to it: 0.3 is in bin 2, 1.0 in the last.
        r.add(0.3, true);
        r.add(1.0, true);
        assert_eq!([r.bins[2].count, r.bins[9].count], [1, 3]);
    }

    #[test]
    fn logits_are_binned_by_their_top_probability() {
        // Row 1: logits (ln 3, 0): p = (0.75, 0.25), label 0, right, bin 11 of 15
        // ((0.7333, 0.8]). Row 2: equal logits, p = 0.5, label 1: the first index wins,
        // wrong, bin 7 ((0.4667, 0.5333]).
        let logits = [3f32.ln(), 0.0, 0.0, 0.0];
        let r = Reliability::from_logits(&logits, 2, &[0, 1], BINS);
        let b = r.bins[11];
        assert_eq!((b.count, b.correct), (1, 1));
        // ln 3 rounded to f32: 0.75 to 1e-8.
        assert!((b.confidence_sum - 0.75).abs() < 1e-7, "{b:?}");
        assert_eq!(r.bins[7].count, 1);
        assert_eq!(r.bins[7].correct, 0);
        // (|1 - 0.75| + |0 - 0.5|) / 2
        assert!((r.ece() - 0.375).abs() < 1e-6);
        let mut pooled = r.clone();
        pooled.merge(&r);
        assert_eq!(pooled.total(), 4);
        assert!((pooled.ece() - r.ece()).abs() < 1e-12);
    }

    #[test]
    fn fidelity_of_a_hand_computed_pair() {
        // Teacher p = (0.75, 0.25), student p = (0.5, 0.5): they agree (index 0 first).
        // KL = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812.
        // Second image: identical logits, KL 0, they agree.
        let teacher = [3f32.ln(), 0.0, 1.0, 2.0];
        let student = [0.0, 0.0, 1.0, 2.0];
        let f = fidelity(&teacher, &student, 2);
        assert_eq!(f.agreement, 1.0);
        assert!((f.mean_kl - 0.130_812 / 2.0).abs() < 1e-6, "{}", f.mean_kl);
        let swapped = fidelity(&[1.0, 0.0], &[0.0, 1.0], 2);
        assert_eq!(swapped.agreement, 0.0);
    }
}
